"""``train_and_evaluate(config, workdir)``: the generic pretraining loop, read top to bottom.

Sections: config → mesh → input → state (fresh or restored) → jitted step → loop (progress bar,
metrics, health, checkpoints, non-finite guard) → final checkpoint and plots.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from jepa import checkpointing, masking, optim, sharding
from jepa import config as config_lib
from jepa import state as state_lib
from jepa import step as step_lib
from jepa.data import pipeline
from jepa.evaluate import health
from jepa.metrics import MetricWriter
from jepa.models import build_encoder
from jepa.plots import plot_training_curves


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf; the last good checkpoint is left untouched."""


def data_config(config) -> ml_collections.ConfigDict:
    """``config.data`` plus what the input pipeline needs from ``config.model``."""
    d = config.data
    return ml_collections.ConfigDict(
        dict(
            dataset=d.dataset,
            data_dir=d.data_dir or None,
            train_split=d.train_split,
            test_split=d.test_split,
            image_size=config.model.image_size,
            crop_scale=tuple(d.crop_scale),
            hflip=d.hflip,
            num_views=d.num_views,
            local_views=d.local_views,
            local_size=d.local_size,
            local_crop_scale=tuple(d.local_crop_scale),
            mean=tuple(d.mean) or None,
            std=tuple(d.std) or None,
            worker_count=d.worker_count,
            clip_context_frames=d.clip.context_frames if config.objective == "future" else 0,
            clip_horizon=d.clip.horizon,
        )
    )


def prepare_config(config, num_train_examples: int | None = None):
    """Resolve epochs → steps from the dataset size, then validate against the device count."""
    config_lib.validate(config, jax.device_count())
    if not config.total_steps or (config.optim.warmup_epochs and not config.optim.warmup_steps):
        n = num_train_examples or config.data.num_train_examples
        if not n:
            n, _, _ = pipeline.dataset_info(config.data.dataset, config.data.data_dir or None)
        config = config_lib.resolve_steps(config, n)
    return config


@dataclasses.dataclass
class Batches:
    """Per-step global batches: images from the data iterator, masks from (seed, step)."""

    iterator: object
    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh

    def __post_init__(self):
        self.spec = config_lib.mask_spec(self.config)
        self.local = self.config.batch_size // jax.process_count()

    def get(self, step: int) -> tuple[dict, float]:
        """(global batch, checksum of this host's images — logged to prove exact resumes)."""
        record = next(self.iterator)
        # Every host draws the *global* batch's masks and keeps its slice, so the masks do not
        # depend on the number of hosts (multi-host == single-host, bit for bit).
        local = {"image": np.asarray(record["image"], np.float32)}
        if "local" in record:
            local["local"] = np.asarray(record["local"], np.float32)
        if self.config.objective == "masked":
            seed, batch = self.config.seed, self.config.batch_size
            masks = masking.masks_for_step(seed, step, batch, self.spec)
            lo = jax.process_index() * self.local
            local["context"] = masks.context[lo : lo + self.local]
            local["targets"] = masks.targets[lo : lo + self.local]
        return sharding.global_batch(local, self.mesh), float(local["image"].sum(dtype=np.float64))


def monitored_params(config, state):
    """The encoder the health monitor watches: the one the probes read (``eval.weights``)."""
    return state.target_params if config.eval.weights == "target" else state.params["encoder"]


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
    config = prepare_config(config)
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0

    # --------------------------------------------------------------------------------- mesh
    mesh = sharding.make_mesh(config)

    # -------------------------------------------------------------------------------- input
    train_iter = pipeline.make_train_iterator(
        data_config(config), config.batch_size, seed=config.seed
    )
    batches = Batches(train_iter, config, mesh)

    # -------------------------------------------------------------------------------- state
    tx = optim.make_optimizer(config)
    rng = jax.random.PRNGKey(config.seed)
    abstract, shardings = state_lib.state_shardings(config, tx, mesh, rng)
    ckpt = checkpointing.Checkpointer(workdir, config.checkpoint_every, config.keep_checkpoints)
    state, start = ckpt.restore_latest_good(
        checkpointing.with_shardings(abstract, shardings), train_iter
    )
    if state is None:
        state, _ = state_lib.create_train_state(config, tx, mesh)
        start = 0
    else:
        logging.info("resumed from step %d in %s", start, workdir)

    # ---------------------------------------------------------------------- update function
    train_step = step_lib.jit_train_step(config, tx, mesh, shardings)
    health_fn = make_health_fn(config, mesh)
    writer = MetricWriter(workdir)
    health_images = None

    # --------------------------------------------------------------------------------- loop
    end = config.total_steps if max_steps is None else min(config.total_steps, max_steps)
    bar = tqdm(
        total=config.total_steps,
        initial=start,
        disable=not is_main,
        dynamic_ncols=True,
        desc="pretrain",
        unit="step",
    )
    t_last, n_last = time.perf_counter(), start
    previous = None
    for step in range(start, end):
        batch, checksum = batches.get(step)
        if health_images is None:
            # A fixed batch for comparable health readings (the first view when there are two).
            health_images = batch["image"] if batch["image"].ndim == 4 else batch["image"][:, 0]
        with jax.set_mesh(mesh):
            state, metrics = train_step(state, batch)
        # Wait for the *previous* step only: the device stays one step ahead of the host, and
        # the progress bar's rate and ETA reflect real compute instead of dispatch speed.
        if previous is not None:
            jax.block_until_ready(previous["loss"])
        previous = metrics
        done = step + 1
        last_step = done == end
        should_log = done % config.log_every == 0 or last_step
        should_save = done % config.checkpoint_every == 0 or last_step
        if should_log or should_save:
            loss = float(metrics["loss"])
            if not math.isfinite(loss):
                ckpt.wait()
                bar.close()
                raise NonFiniteLossError(
                    f"loss is {loss} at step {done}; stopping. The last good checkpoint "
                    f"(step {ckpt.latest_step()}) in {workdir} is intact."
                )
        if should_log:
            now = time.perf_counter()
            rate = (done - n_last) * config.batch_size / max(now - t_last, 1e-9)
            t_last, n_last = now, done
            values = {k: float(v) for k, v in metrics.items()}
            values["images_per_s"] = rate
            values["data_checksum"] = checksum
            if config.health_every and (done % config.health_every == 0 or last_step):
                with jax.set_mesh(mesh):
                    h = jax.device_get(health_fn(monitored_params(config, state), health_images))
                values.update({k: float(v) for k, v in h.items()})
                alarms = health.collapse_alarms(h, config.health.min_std, config.health.min_rank)
                values["collapse_alarms"] = len(alarms)
                if alarms and is_main:
                    bar.write(f"[step {done}] COLLAPSE ALARM: " + "; ".join(alarms))
                    logging.warning("step %d: collapse alarm: %s", done, "; ".join(alarms))
            writer.write(done, values)
            bar.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{rate:.0f}", refresh=False)
        bar.update(1)
        if should_save:
            ckpt.save(done, state, train_iter, config, force=last_step)

    # -------------------------------------------------------------------------------- final
    bar.close()
    ckpt.close()
    writer.close()
    if is_main:
        plot_training_curves(workdir)
    return state
