"""``train_and_evaluate(config, workdir)``: the generic pretraining loop, read top to bottom.

Sections: config → mesh → input → state (resumed, else from config.init, else fresh) → jitted
step → loop (progress bar, metrics, health, checkpoints, non-finite guard, stop on
SIGTERM/SIGINT) → final checkpoint and plots.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import signal
import threading
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from jepa import checkpointing, hardware, hub, methods, optim, preflight, sharding, validation
from jepa import config as config_lib
from jepa import state as state_lib
from jepa import step as step_lib
from jepa.data import pipeline, records
from jepa.evaluate import base as evaluators
from jepa.evaluate import health
from jepa.metrics import MetricWriter
from jepa.models import build_encoder
from jepa.plots import plot_training_curves


class NonFiniteLossError(FloatingPointError):
    """The loss or gradient became NaN/inf; the last good checkpoint is left untouched."""


@dataclasses.dataclass
class NonFiniteGuard:
    """Reads each step's ``nonfinite`` flag (set by the jitted step, ``jepa/step.py``) once, in
    step order, and raises at the first non-finite step unless ``skip`` (the step itself then
    left the state unchanged; this only reports it)."""

    skip: bool
    checked: int  # the last step whose flag was read
    ckpt: checkpointing.Checkpointer
    workdir: str
    bar: tqdm

    def check(self, step: int, metrics: dict) -> None:
        if step <= self.checked:
            return
        self.checked = step
        if not bool(metrics["nonfinite"]):
            return
        if self.skip:
            logging.warning(
                "step %d: non-finite loss or gradient; update skipped (%d skipped so far)",
                step,
                int(metrics["nonfinite_skipped"]),
            )
            return
        # The saves in flight (of earlier steps, all checked finite) complete first.
        self.ckpt.wait()
        self.bar.close()
        last = self.ckpt.latest_step()
        kept = (
            f"No checkpoint was saved in {self.workdir} yet"
            if last is None
            else f"The last good checkpoint (step {last}) in {self.workdir} is intact (a rerun "
            "resumes there and meets the same batches)"
        )
        raise NonFiniteLossError(
            f"non-finite loss ({float(metrics['loss'])}) or gradient norm "
            f"({float(metrics['grad_norm'])}) at step {step}; stopped without saving it. {kept}. "
            "Change the recipe (e.g. a lower optim.lr), or set --config.skip_nonfinite=True to "
            "skip and count such updates."
        )


@dataclasses.dataclass
class StopRequest:
    received: str | None = None  # the name of the signal received, if any


@contextlib.contextmanager
def stop_on_signals():
    """Within the block, SIGTERM / SIGINT set ``.received`` instead of ending the process: the
    loop saves a checkpoint at the next step boundary and returns, so the process exits 0 and
    the next launch resumes there. The previous handlers are restored on exit; a second SIGINT
    raises KeyboardInterrupt (Ctrl-C twice: stop now, without saving).

    Only in a single-process run: with several hosts, JAX's preemption service handles SIGTERM
    and makes all hosts save at one agreed step (``Checkpointer.reached_preemption``); a host
    stopping on its own would leave the others waiting in a collective."""
    request = StopRequest()
    if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        del frame
        if request.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request.received = signal.Signals(signum).name
        logging.warning(
            "%s: saving a checkpoint after the current step, then stopping", request.received
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)


def prepare_config(config):
    """Resolve ``model.dtype="auto"`` for this backend and epochs → steps from the dataset
    size, then validate against the device count."""
    config = hardware.resolve_auto_dtype(config)
    validation.validate(config, jax.device_count())
    if not config.total_steps or (config.optim.warmup_epochs and not config.optim.warmup_steps):
        n = config.data.num_train_examples
        if not n:
            n, _, _ = pipeline.dataset_info(config.data.dataset, config.data.data_dir or None)
        config = config_lib.resolve_steps(config, n)
    return config


@dataclasses.dataclass
class Batches:
    """Per-step global batches: images from the data iterator (None: ``data.dataset=""``),
    and what the method draws from (seed, step) on the host (masks, generated trajectories)."""

    iterator: object | None
    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh

    def __post_init__(self):
        step_inputs = methods.of(self.config).step_inputs
        self.draw = None if step_inputs is None else step_inputs(self.config)
        self.local = self.config.batch_size // jax.process_count()

    def get(self, step: int) -> tuple[dict, float]:
        """(global batch, checksum of this host's inputs — logged to prove exact resumes)."""
        record = {} if self.iterator is None else next(self.iterator)
        local = {k: np.asarray(record[k], np.float32) for k in ("image", "local") if k in record}
        if self.draw is not None:
            # Every host draws the *global* batch's masks and keeps its slice, so the masks do
            # not depend on the number of hosts (multi-host == single-host, bit for bit).
            lo = jax.process_index() * self.local
            drawn = self.draw(self.config.seed, step, self.config.batch_size)
            local.update({k: v[lo : lo + self.local] for k, v in drawn.items()})
        checksum = sum(float(v.sum(dtype=np.float64)) for v in local.values())
        return sharding.global_batch(local, self.mesh), checksum


def make_health_fn(config, mesh):
    """Jitted: (encoder params, images) → health metrics of average-pooled features."""
    encoder = build_encoder(config)
    rules = sharding.rules_of(config)

    @functools.partial(jax.jit, out_shardings=sharding.replicated(mesh))
    def fn(target_params, images):
        with nn.logical_axis_rules(rules):
            tokens, _ = encoder.apply({"params": target_params}, images)
        return health.health_metrics(tokens.astype(jnp.float32).mean(axis=1))

    return fn


def train_and_evaluate(config, workdir: str, *, max_steps: int | None = None):
    """Pretrain (or resume) in ``workdir``. ``max_steps`` stops early (tests, preemption drills)
    without changing the schedules. Returns the final train state."""
    # ------------------------------------------------------------------------------- config
    # Paths absolute before the config is stored with the checkpoints: jepa-eval and
    # load_encoder then find the data from any working directory.
    config = config_lib.absolute_paths(prepare_config(config))
    preflight.check(config, workdir)  # workdir, data, an existing checkpoint
    evals = evaluators.TrainingEvals(config)  # config.evals: their names and data, checked now
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0

    # --------------------------------------------------------------------------------- mesh
    mesh = sharding.make_mesh(config)

    # -------------------------------------------------------------------------------- input
    train_iter = None
    if config.data.dataset:
        train_iter = pipeline.make_train_iterator(
            methods.data_config(config), config.batch_size, seed=config.seed
        )
    batches = Batches(train_iter, config, mesh)

    # -------------------------------------------------------------------------------- state
    tx = optim.make_optimizer(config)
    rng = jax.random.PRNGKey(config.seed)
    abstract, shardings = state_lib.state_shardings(config, tx, mesh, rng)
    ckpt = checkpointing.Checkpointer(workdir, config.checkpoint_every, config.keep_checkpoints)
    # A resume, else config.init's parts of another run, else a fresh init.
    state, start = hub.initial_state(config, ckpt, train_iter, tx, mesh, abstract, shardings)

    # ---------------------------------------------------------------------- update function
    train_step = step_lib.jit_train_step(config, tx, mesh, shardings)
    health_fn = make_health_fn(config, mesh)
    watched = methods.eval_weights(config)  # health and evals read the encoder the probes read
    writer = MetricWriter(workdir)
    health_images = None

    # --------------------------------------------------------------------------------- loop
    end = config.total_steps if max_steps is None else min(config.total_steps, max_steps)
    logging.info(
        "%s: steps %d to %d of %d, global batch %d, %d devices, mesh %s",
        config.objective,
        start,
        end,
        config.total_steps,
        config.batch_size,
        jax.device_count(),
        dict(mesh.shape),
    )
    bar = tqdm(
        total=config.total_steps,
        initial=start,
        disable=not is_main,
        dynamic_ncols=True,
        desc="pretrain",
        unit="step",
    )
    t_last, n_last = time.perf_counter(), start
    previous, preempted = None, False
    guard = NonFiniteGuard(config.skip_nonfinite, start, ckpt, workdir, bar)
    with stop_on_signals() as signals:
        for step in range(start, end):
            batch, checksum = batches.get(step)
            if health_images is None and "image" in batch:
                # A fixed batch for comparable health readings (the first view when there are
                # two; whole clips for a video encoder, which takes nothing else).
                images = batch["image"]
                whole = images.ndim == 4 or config.model.num_frames > 0
                health_images = images if whole else images[:, 0]
            with jax.set_mesh(mesh):
                state, metrics = train_step(state, batch)
            done = step + 1
            # Wait for the *previous* step only (reading its non-finite flag): the device stays
            # one step ahead of the host, and the progress bar's rate and ETA reflect real
            # compute instead of dispatch speed. (At the first step there is no previous one.)
            guard.check(done - 1, previous)
            previous = metrics
            last_step = done == end
            # Asked to stop (SIGTERM/SIGINT, or all hosts agreed on a preemption step): save
            # this step whatever the interval, wait for it, return normally.
            preempted = signals.received is not None or ckpt.reached_preemption(done)
            # Evaluators run at their interval, but not when asked to stop: the save comes first.
            evaluate = evals.due(done) and not preempted
            should_log = done % config.log_every == 0 or last_step or preempted or evaluate
            should_save = done % config.checkpoint_every == 0 or last_step or preempted
            # A step about to be logged or saved is checked now: no state past a non-finite
            # step is ever saved.
            if should_log or should_save:
                guard.check(done, metrics)
            if should_log:
                now = time.perf_counter()
                rate = (done - n_last) * config.batch_size / max(now - t_last, 1e-9)
                t_last, n_last = now, done
                values = {k: float(v) for k, v in metrics.items()}
                values["images_per_s"] = rate
                values["data_checksum"] = checksum
                if train_iter is not None:
                    values["bad_records"] = records.bad_records_seen(train_iter)
                if (
                    health_images is not None
                    and config.health_every
                    and (done % config.health_every == 0 or last_step)
                ):
                    with jax.set_mesh(mesh):
                        h = jax.device_get(health_fn(state.encoder(watched), health_images))
                    values.update({k: float(v) for k, v in h.items()})
                    alarms = health.collapse_alarms(h, **config.health)
                    values["collapse_alarms"] = len(alarms)
                    if alarms:
                        logging.warning("step %d: collapse alarm: %s", done, "; ".join(alarms))
                if evaluate:
                    values.update(evals.run(done, state.encoder(watched)))
                    t_last = time.perf_counter()  # evaluating is not training throughput
                writer.write(done, values)
                bar.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{rate:.0f}", refresh=False)
            bar.update(1)
            if should_save:
                ckpt.save(done, state, train_iter, config, force=last_step or preempted)
            if preempted:
                ckpt.wait()
                logging.warning("preempted at step %d; checkpoint saved in %s", done, workdir)
                break
        # Still under the handlers: a signal now must not cut the last (async) save short.
        ckpt.close()

    # -------------------------------------------------------------------------------- final
    bar.close()
    writer.close()
    if is_main and not preempted:
        plot_training_curves(workdir)
        logging.info(
            "step %d; checkpoints, metrics.jsonl and loss.png in %s; evaluate with: "
            "jepa-eval --workdir %s --protocol %s",
            end,
            workdir,
            workdir,
            methods.of(config).protocol,
        )
    return state
