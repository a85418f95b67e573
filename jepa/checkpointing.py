"""Checkpoints: one Orbax ``CheckpointManager`` per workdir, four items per step.

Items: ``state`` (the whole TrainState), ``data`` (the grain iterator's position, so a resumed run
reads exactly the batches it would have read), ``config`` (JSON) and ``metadata`` (jepa version,
model signature). Saving is asynchronous; restoring takes abstract arrays that carry the
*current* mesh's shardings, so a checkpoint written on one topology loads on another. Restores
are strict: a differing tree or shape is an error listing the paths. A step that fails to read
(truncated file, missing item) is reported and the next older step is tried.
"""

from __future__ import annotations

import json
import logging
import os

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

import jepa

ITEMS = ("state", "data", "config", "metadata")


class CheckpointMismatchError(ValueError):
    """The checkpoint's tree does not match the model being restored into."""


def model_signature(config) -> dict:
    """What must agree between a checkpoint and the code restoring it."""
    m = config.model
    return {
        "image_size": m.image_size,
        "channels": m.channels,
        "patch_size": m.patch_size,
        "width": m.width,
        "depth": m.depth,
        "num_heads": m.num_heads,
        "mlp_ratio": m.mlp_ratio,
        "objective": config.objective,
        "predictor": dict(m.predictor),
        "projector": dict(m.projector),
    }


def _key_name(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _paths_and_shapes(tree) -> dict[str, tuple]:
    """'opt_state/0/mu/encoder/...' → shape; dataclass fields, dict keys and tuple indices are
    spelled the same way, so a saved tree (dicts) compares with a live one (dataclasses)."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
    return {
        "/".join(_key_name(k) for k in path): tuple(getattr(x, "shape", ()))
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


_whole_array_handler_registered = False


def _save_replicated_arrays_whole_on_cpu() -> None:
    """Orbax's replica-parallel save slices every replicated array into one piece per replica,
    each slice a separately compiled ``jit(slice)``: on accelerators that spreads device→host
    copies over devices, on CPU it only costs compiles (144 of them, ~10 s, for the first save
    of a tiny model on 8 simulated devices). On CPU, replica 0 writes each array whole."""
    global _whole_array_handler_registered
    if jax.default_backend() == "cpu" and not _whole_array_handler_registered:
        _whole_array_handler_registered = True  # once: Orbax logs a warning per registration
        ocp.type_handlers.register_type_handler(
            jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True
        )


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
                {"jepa_version": jepa.__version__, "model": model_signature(config), "step": step}
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
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))[
            "config"
        ]

    def restore_state(self, step: int, abstract_state, data_iterator=None):
        """Restore ``step`` into ``abstract_state`` (ShapeDtypeStructs with shardings); the data
        iterator, when given, is set to the saved position in place."""
        saved_tree = self.manager.item_metadata(step)["state"]
        if saved_tree is None:
            raise FileNotFoundError(f"checkpoint step {step} has no readable 'state' item")
        check_tree_matches(saved_tree, abstract_state, f"checkpoint step {step}")
        args = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        return restored["state"]

    def restore_latest_good(self, abstract_state, data_iterator=None):
        """(state, step) from the newest step that restores; (None, None) when there is none.

        A mismatched model is not "corrupt": it is raised at once rather than skipped."""
        for step in reversed(self.all_steps()):
            try:
                return self.restore_state(step, abstract_state, data_iterator), step
            except CheckpointMismatchError:
                raise
            except Exception as e:  # noqa: BLE001 - any read failure means "try an older one"
                logging.warning(
                    "checkpoint step %d in %s is unreadable (%s: %s); trying the previous one",
                    step,
                    self.directory,
                    type(e).__name__,
                    str(e).splitlines()[0] if str(e) else "",
                )
        return None, None


def has_checkpoints(workdir: str) -> bool:
    path = os.path.join(workdir, "checkpoints")
    return os.path.isdir(path) and any(name.isdigit() for name in os.listdir(path))
