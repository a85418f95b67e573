"""Checkpoints: one Orbax ``CheckpointManager`` per workdir, four items per step.

Items: ``state`` (the whole TrainState), ``data`` (the grain iterator's position, so a resumed run
reads exactly the batches it would have read), ``config`` (JSON) and ``metadata`` (jepa version,
model signature). Saving is asynchronous; restoring takes abstract arrays that carry the
*current* mesh's shardings, so a checkpoint written on one topology loads on another. Restores
are strict: a differing tree or shape is an error listing the paths.

Faults: a step that fails to read (truncated file, missing item) is reported and the next older
step is tried; once one restores, the unreadable newer steps are moved aside to
``checkpoints/corrupt/STEP`` (never deleted), so the resumed run can save those step numbers
again and Orbax's ``max_to_keep`` counts only readable steps. A save interrupted by ``kill -9``
is left in ``STEP.orbax-checkpoint-tmp``, which Orbax never lists as a step and replaces when it
saves that step again.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jepa.version import __version__

ITEMS = ("state", "data", "config", "metadata")


# Fields added to TrainState after checkpoints were first written, with the value a checkpoint
# that predates them restores as (so such a run still resumes).
ADDED_STATE_FIELDS = {"nonfinite_skipped": 0}
CORRUPT_DIR = "corrupt"
# Orbax's name for a step directory still being written (or left behind by a killed save).
_PARTIAL_STEP = re.compile(r"^(\d+)\.orbax-checkpoint-tmp")


class CheckpointMismatchError(ValueError):
    """The checkpoint's tree does not match the model being restored into."""


class CheckpointCorruptError(RuntimeError):
    """There are checkpoints, and none of them can be read."""


def model_signature(config) -> dict:
    """What must agree between a checkpoint and the code restoring it, by config key: the
    encoder, the objective and the sizes of the parts its method adds (where it has them)."""
    keys = ("image_size", "channels", "patch_size", "width", "depth", "num_heads", "mlp_ratio")
    signature = {f"model.{k}": config.model[k] for k in (*keys, "stem")}
    signature["objective"] = config.objective
    for part in ("predictor", "projector"):
        if part in config.method:
            signature[f"method.{part}"] = dict(config.method[part])
    return signature


def _paths_and_shapes(tree) -> dict[str, tuple]:
    """'opt_state/0/mu/encoder/...' → shape; dataclass fields, dict keys and tuple indices are
    spelled the same way, so a saved tree (dicts) compares with a live one (dataclasses)."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): tuple(getattr(x, "shape", ()))
        for path, x in flat
        if x is not None
    }


def check_tree_matches(saved, expected, what: str = "checkpoint") -> None:
    """Raise ``CheckpointMismatchError`` listing missing, unexpected and reshaped paths."""
    got, want = _paths_and_shapes(saved), _paths_and_shapes(expected)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    reshaped = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    if missing or extra or reshaped:
        lines = [f"{what} does not match the model being restored:"]
        lines += [f"  missing in {what}: {k} {want[k]}" for k in missing[:20]]
        lines += [f"  not in the model: {k} {got[k]}" for k in extra[:20]]
        lines += [f"  shape {got[k]} in {what}, {want[k]} in the model: {k}" for k in reshaped[:20]]
        raise CheckpointMismatchError("\n".join(lines))


def with_shardings(abstract, shardings):
    """ShapeDtypeStructs that carry the target shardings (what Orbax restores into)."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )


@functools.cache
def _save_replicated_arrays_whole_on_cpu() -> None:
    """Orbax's replica-parallel save slices every replicated array into one piece per replica,
    each slice a separately compiled ``jit(slice)``: on accelerators that spreads device→host
    copies over devices, on CPU it only costs compiles (144 of them, ~10 s, for the first save
    of a tiny model on 8 simulated devices). On CPU, replica 0 writes each array whole."""
    if jax.default_backend() == "cpu":
        # Orbax warns that the override replaces its handler, which is the point: the warning
        # would reach the terminal of any script that opens a checkpoint.
        absl_logger = logging.getLogger("absl")
        level = absl_logger.level
        absl_logger.setLevel(logging.ERROR)
        try:
            ocp.type_handlers.register_type_handler(
                jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True
            )
        finally:
            absl_logger.setLevel(level)


class Checkpointer:
    """Save/restore of (train state, data iterator, config, metadata) under ``workdir``."""

    def __init__(self, workdir: str, every: int = 1000, keep: int = 3, async_save: bool = True):
        _save_replicated_arrays_whole_on_cpu()
        if "://" not in str(workdir):  # Orbax wants absolute local paths (gs://… is absolute)
            workdir = os.path.abspath(workdir)
        self.directory = epath.Path(workdir) / "checkpoints"
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=every,
            max_to_keep=keep,
            enable_async_checkpointing=async_save,
            create=True,
        )
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "data": grain.checkpoint.CheckpointHandler(),
            "config": ocp.JsonCheckpointHandler(),
            "metadata": ocp.JsonCheckpointHandler(),
        }
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=ITEMS, item_handlers=handlers
        )

    # ----------------------------------------------------------------------------------- save
    def save(self, step: int, state, data_iterator, config, force: bool = False) -> bool:
        """Save if ``step`` is on the interval (or ``force``); returns whether it saved."""
        args = {
            "state": ocp.args.StandardSave(state),
            "config": ocp.args.JsonSave(json.loads(config.to_json())),
            "metadata": ocp.args.JsonSave(
                {"jepa_version": __version__, "model": model_signature(config), "step": step}
            ),
        }
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        return self.manager.save(step, args=ocp.args.Composite(**args), force=force)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    # -------------------------------------------------------------------------------- restore
    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def read_config(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        args = ocp.args.Composite(config=ocp.args.JsonRestore())
        return self.manager.restore(step, args=args)["config"]

    def restore_state(self, step: int, abstract_state, data_iterator=None):
        """Restore ``step`` into ``abstract_state`` (ShapeDtypeStructs with shardings); the data
        iterator, when given, is set to the saved position in place."""
        saved_tree = self.manager.item_metadata(step)["state"]
        if saved_tree is None:
            raise FileNotFoundError(f"checkpoint step {step} has no readable 'state' item")
        absent = [
            k for k in ADDED_STATE_FIELDS if hasattr(abstract_state, k) and k not in saved_tree
        ]
        target = abstract_state
        if absent:  # an older checkpoint: restore the fields it has, as a dict
            target = {
                f.name: getattr(abstract_state, f.name)
                for f in dataclasses.fields(abstract_state)
                if f.name not in absent
            }
        check_tree_matches(saved_tree, target, f"checkpoint step {step}")
        args = {"state": ocp.args.StandardRestore(target)}
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**args))["state"]
        if absent:
            filled = {
                k: _full_like(getattr(abstract_state, k), ADDED_STATE_FIELDS[k]) for k in absent
            }
            restored = abstract_state.replace(**restored, **filled)
        return restored

    def restore_latest_good(self, abstract_state, data_iterator=None):
        """(state, step) from the newest step that restores; (None, None) when there are no
        checkpoints.

        Each unreadable step is logged with its reason; once an older one restores, those newer
        steps are moved to ``checkpoints/corrupt/`` (see the module docstring). When none
        restores, ``CheckpointCorruptError`` lists them all and nothing is moved: starting
        afresh over them would be wrong, and a failure common to every step (memory, a
        changed data pipeline) is no evidence of corruption. A mismatched model is not
        "corrupt" either: it is raised at once."""
        for step, name in self.partial_steps():
            logging.warning(
                "checkpoint step %d in %s was never completed (%s, a save that was interrupted); "
                "ignored: it is replaced if that step is saved again",
                step,
                self.directory,
                name,
            )
        step, state, failed = newest_readable(
            self.all_steps(),
            lambda s: self.restore_state(s, abstract_state, data_iterator),
            self.directory,
        )
        if step is not None:
            for bad, reason in failed:
                self.quarantine(bad, reason)
            return state, step
        if failed:
            listing = "\n".join(f"  step {s}: {r}" for s, r in failed)
            raise CheckpointCorruptError(
                f"no checkpoint in {self.directory} can be restored (nothing was moved or "
                f"deleted):\n{listing}\nFix or move the step directories aside to start over."
            )
        return None, None

    def partial_steps(self) -> list[tuple[int, str]]:
        """(step, directory name) of the step directories Orbax has not finalized."""
        if not self.directory.exists():
            return []
        matches = ((_PARTIAL_STEP.match(p.name), p.name) for p in self.directory.iterdir())
        return sorted((int(m.group(1)), name) for m, name in matches if m)

    def quarantine(self, step: int, reason: str) -> None:
        """Move step ``step`` to ``checkpoints/corrupt/STEP`` (``STEP.1``, … if taken). Process 0
        moves, every process then sees the step gone."""
        corrupt = self.directory / CORRUPT_DIR
        dest = corrupt / str(step)
        n = 0
        while dest.exists():
            n += 1
            dest = corrupt / f"{step}.{n}"
        if jax.process_index() == 0:
            corrupt.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(dest)
        if jax.process_count() > 1:
            ocp.multihost.sync_global_processes(f"jepa_quarantine_{step}")
        self.manager.reload()  # forget the step: it can be saved again, and is not kept/counted
        logging.warning(
            "checkpoint step %d moved to %s (unreadable: %s); resuming from an older step",
            step,
            dest,
            reason,
        )

    # ----------------------------------------------------------------------------- preemption
    def reached_preemption(self, step: int) -> bool:
        """True at the step all hosts agreed to save at after one of them was told it will be
        preempted (JAX's preemption service, multi-host runs; always False in one process)."""
        return self.manager.reached_preemption(step)


def newest_readable(steps, read, directory):
    """``(step, read(step), failed)`` for the newest of ``steps`` that reads, ``failed`` the
    (step, reason) of the newer ones, each logged; ``(None, None, failed)`` when none reads. A
    mismatched model is no read failure: it is raised at once."""
    failed = []
    for step in sorted(steps, reverse=True):
        try:
            return step, read(step), failed
        except CheckpointMismatchError:
            raise
        except Exception as e:  # noqa: BLE001 - any read failure means "try an older one"
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            logging.warning("checkpoint step %d in %s is unreadable (%s)", step, directory, reason)
            failed.append((step, reason))
    return None, None, failed


def _full_like(abstract, value):
    """An array shaped, typed and placed like ``abstract`` (a ShapeDtypeStruct with sharding)."""
    return jax.device_put(np.full(abstract.shape, value, abstract.dtype), abstract.sharding)


def has_checkpoints(workdir: str) -> bool:
    path = os.path.join(workdir, "checkpoints")
    return os.path.isdir(path) and any(name.isdigit() for name in os.listdir(path))
