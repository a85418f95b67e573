"""Reuse a pretrained encoder in your own code.

  enc = jepa.load_encoder("/path/to/workdir")           # newest good step, the probes' encoder
  tokens, pooled = enc(images_uint8_nhwc)                 # [b, patches, width], [b, width]
  x = enc.normalize(images_uint8_nhwc)                    # the inputs training fed the model
  tokens, blocks = enc.module.apply({"params": enc.params}, x)  # in your own jitted code

  export_encoder(workdir, "/path/to/export")            # params-only copy (scripts/export.py)
  enc = jepa.load_encoder("/path/to/export")             # the same encoder, from the export
  enc = jepa.from_ijepa_torch("IN1K-vit.h.14-300e.pth.tar")  # official I-JEPA weights

Only the encoder's parameters are read (no optimizer state), onto whatever devices this process
has. Loading is strict: a checkpoint whose parameters differ from the config's model raises
with the differing paths and shapes, never a silent partial load. A training run starts from
parts of another run or export the same way (``config.init``, ``initial_state``: jepa-train's
one load order).
"""

from __future__ import annotations

import functools
import json
import logging
import operator
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jepa import checkpointing, methods
from jepa import config as config_lib
from jepa import state as state_lib
from jepa.data import augment
from jepa.models import build_encoder
from jepa.state import init_boxed_params

WEIGHTS = {"target": ("target_params",), "context": ("params", "encoder")}


def abstract_params(config):
    """The unboxed ShapeDtypeStructs of every module's parameters under ``config``."""
    boxed = jax.eval_shape(functools.partial(init_boxed_params, config), jax.random.PRNGKey(0))
    return nn.unbox(boxed)


def _read_tree(directory, saved, keys, expected, what: str):
    """Read the part at ``keys`` (e.g. ``("params", "encoder")``) of the PyTree checkpoint in
    ``directory`` (its metadata tree: ``saved``) into the structure ``expected``
    (ShapeDtypeStructs), on this process's first device; only those arrays leave the disk.
    Strict: a missing part, or a structure or shape mismatch, raises naming paths."""
    for i, k in enumerate(keys):
        if k not in saved:
            raise checkpointing.CheckpointMismatchError(
                f"{what}: the checkpoint has no {'/'.join(keys[: i + 1])}; valid under "
                f"{'/'.join(keys[:i]) or 'its state'}: {sorted(saved)}"
            )
        saved = saved[k]
    checkpointing.check_tree_matches(saved, expected, what)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    leaves = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), expected
    )
    item = functools.reduce(lambda tree, k: {k: tree}, reversed(keys), leaves)
    restore_args = ocp.checkpoint_utils.construct_restore_args(item)
    args = ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True)
    with ocp.PyTreeCheckpointer() as reader:
        restored = reader.restore(directory, args=args)
    return functools.reduce(operator.getitem, keys, restored)


def restore_subtree(ckpt: checkpointing.Checkpointer, step: int, keys, expected, what: str):
    """The part at ``keys`` of a train-state checkpoint's step (``_read_tree``)."""
    saved = ckpt.manager.item_metadata(step)["state"]
    return _read_tree(ckpt.directory / str(step) / "state", saved, keys, expected, what)


def open_run(path: str) -> checkpointing.Checkpointer:
    """The checkpoints of the run at ``path`` (a workdir or its ``checkpoints/`` folder), for
    reading. A path that holds no checkpoint steps raises, and nothing is created on it."""
    workdir = str(path).rstrip("/").removesuffix("/checkpoints")
    if "://" not in workdir and not checkpointing.has_checkpoints(workdir):
        what = "does not exist" if not os.path.exists(workdir) else "holds no checkpoints"
        raise FileNotFoundError(
            f"{workdir} {what}: it is not a run; valid: a jepa-train --workdir with "
            "checkpoints/STEP folders (or that checkpoints/ folder), or a directory written by "
            "export_encoder"
        )
    return checkpointing.Checkpointer(workdir, async_save=False)


def read_good_step(ckpt: checkpointing.Checkpointer, step: int | None, read):
    """``(step, read(step))`` for ``step``, or with ``step`` None for the newest step that
    reads: a newer unreadable one is skipped with a one-line warning (as training does, but
    nothing is moved: evaluation only reads). A mismatched model is raised at once."""
    steps = ckpt.all_steps()
    if not steps:
        raise FileNotFoundError(f"no checkpoints under {ckpt.directory}")
    if step is not None and step not in steps:
        raise FileNotFoundError(f"step {step} not in {ckpt.directory}; valid: one of {steps}")
    candidates = steps if step is None else [step]
    found, value, failed = checkpointing.newest_readable(candidates, read, ckpt.directory)
    if found is not None:
        return found, value
    if step is not None:
        others = [s for s in steps if s != step]
        raise checkpointing.CheckpointCorruptError(
            f"checkpoint step {step} in {ckpt.directory} is unreadable ({failed[0][1]}); "
            f"valid: another step {others}, or no step for the newest one that reads"
        )
    listing = "; ".join(f"step {s}: {r}" for s, r in failed)
    raise checkpointing.CheckpointCorruptError(
        f"no checkpoint in {ckpt.directory} can be read ({listing})"
    )


def initial_state(config, ckpt, data_iter, tx, mesh, abstract, shardings):
    """(state, first step) of a run, in the one order every run follows: the newest good
    checkpoint of its own workdir (``ckpt``: a resume, with ``data_iter``'s position); else a
    fresh init into which the parts ``config.init.take`` of the run (or encoder export) at
    ``config.init.path`` are copied; else a fresh init. ``abstract`` and ``shardings`` are the
    state's (``jepa.state.state_shardings``)."""
    state, start = ckpt.restore_latest_good(
        checkpointing.with_shardings(abstract, shardings), data_iter
    )
    if state is not None:
        logging.info("resumed from step %d in %s", start, ckpt.directory)
        return state, start
    state, _ = state_lib.create_train_state(config, tx, mesh)
    if config.init.path:
        state = jax.device_put(take_init_parts(config, state), shardings)
    return state, 0


def take_init_parts(config, state):
    """``state`` with each part ``config.init.take`` names read from ``config.init.path``: a
    workdir (its newest readable step) or an ``export_encoder`` directory (its one encoder, for
    "params/encoder" and "target_params"). Strict and whole: a part missing on either side or
    of other shapes raises naming its paths before anything is replaced."""
    path, parts = config.init.path, config_lib.init_parts(config.init.take)
    what = f"init.path={path!r}"
    # New containers, the same arrays: the parts read are put in place below.
    trees = jax.tree.map(
        lambda a: a, {"params": state.params, "target_params": state.target_params}
    )
    try:
        expected = {keys: functools.reduce(operator.getitem, keys, trees) for keys in parts}
    except (KeyError, TypeError, IndexError):
        raise ValueError(
            f"init.take={tuple(config.init.take)}: this run has no such part"
        ) from None
    expected = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), expected)
    if _is_export(path):
        encoder = [("params", "encoder"), ("target_params",)]
        if any(keys not in encoder for keys in parts):
            raise ValueError(
                f"{what} is an encoder export; valid init.take entries: 'params/encoder', "
                f"'target_params', not {tuple(config.init.take)}"
            )
        params = _read_export_params(path, next(iter(expected.values())))
        loaded = {keys: params for keys in parts}
    else:
        try:
            ckpt = open_run(path)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{what}: {e}") from None

        def read(s):
            return {
                keys: restore_subtree(
                    ckpt, s, keys, expected[keys], f"{what} step {s} ({'/'.join(keys)})"
                )
                for keys in parts
            }

        step, loaded = read_good_step(ckpt, None, read)
        logging.info("initialized %s from %s step %d", list(config.init.take), path, step)
    for keys, value in loaded.items():
        functools.reduce(operator.getitem, keys[:-1], trees)[keys[-1]] = value
    return state.replace(**trees)


def load_model_params(workdir: str, step: int | None = None):
    """(config, step, params, target_params) of a run: every trained module (encoder,
    predictor, latent, …) without the optimizer state, for evaluators that need more than the
    encoder."""
    ckpt = open_run(workdir)

    def read(s):
        config = methods.from_stored(ckpt.read_config(s))
        expected, what = abstract_params(config), f"checkpoint step {s}"
        params = restore_subtree(ckpt, s, ("params",), expected, what)
        target = restore_subtree(ckpt, s, ("target_params",), expected["encoder"], what)
        return config, params, target

    step, (config, params, target) = read_good_step(ckpt, step, read)
    return config, step, params, target


class PretrainedEncoder:
    """A frozen encoder: ``__call__(images) -> (tokens, pooled)``.

    images: [batch, H, W, C], uint8 in [0, 255] or float in [0, 1]; normalized here exactly as
    in training. tokens: [batch, patches, width] (final-norm output); pooled: [batch, width].

    Beyond the call: ``config`` (the run's config), ``step``, ``params`` (the encoder's
    parameter tree), ``module`` (the Flax module) and ``normalize(images)`` (pixels as the
    model saw them in training), so that in your own jitted code
    ``enc.module.apply({"params": enc.params}, enc.normalize(images))`` returns
    ``(tokens, per-block outputs)``, and gradients can flow through ``enc.params``.
    """

    def __init__(self, config, params, step=None, pos_embed=None, weights: str | None = None):
        self.config, self.params, self.step = config, params, step
        self.weights = weights  # "target" or "context" (None: not known, e.g. an import)
        # A [patches, width] position table replacing the sin-cos one (imported checkpoints
        # evaluated at another resolution carry their own, resampled).
        self.pos_embed = None if pos_embed is None else jnp.asarray(pos_embed, jnp.float32)
        self.module = build_encoder(config)
        self._mean, self._std = augment.resolve_mean_std(
            tuple(config.data.mean) or None, tuple(config.data.std) or None, config.model.channels
        )
        self._apply = jax.jit(self._forward)

    def normalize(self, images):
        """uint8 [0, 255] or float [0, 1] pixels → the float32 inputs of training (per-channel
        mean/std of ``config.data``); numpy or jax arrays, also inside ``jax.jit``."""
        return augment.normalize_images(images, self._mean, self._std)

    def _forward(self, params, images):
        x = self.normalize(images)
        tokens, aux = self.module.apply({"params": params}, x, pos_embed=self.pos_embed)
        return tokens, tokens.mean(axis=1), aux

    def __call__(self, images):
        tokens, pooled, _ = self._apply(self.params, jnp.asarray(images))
        return tokens, pooled


EXPORT_CONFIG, EXPORT_PARAMS, EXPORT_INFO = "config.json", "params", "export.json"


def _is_export(path: str) -> bool:
    return os.path.exists(os.path.join(path, EXPORT_CONFIG)) and os.path.isdir(
        os.path.join(path, EXPORT_PARAMS)
    )


def export_encoder(
    workdir: str, out_dir: str, step: int | None = None, weights: str | None = None
) -> dict:
    """Write one encoder's parameters (no optimizer state, no predictor) and its config to
    ``out_dir``: ``config.json``, ``params/`` (an Orbax PyTree checkpoint) and ``export.json``
    (source, step, weights; ``weights`` None: the one the run's probes read, as in
    ``load_encoder``). ``load_encoder(out_dir)`` reads it back."""
    enc = load_encoder(workdir, step, weights)
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new directory")
    os.makedirs(out_dir, exist_ok=True)
    with ocp.PyTreeCheckpointer() as writer:
        writer.save(os.path.join(out_dir, EXPORT_PARAMS), enc.params)
    with open(os.path.join(out_dir, EXPORT_CONFIG), "w") as f:
        f.write(enc.config.to_json(indent=1))
    info = {"source": os.path.abspath(workdir), "step": enc.step, "weights": enc.weights}
    with open(os.path.join(out_dir, EXPORT_INFO), "w") as f:
        json.dump(info, f, indent=1)
    return info


def _read_export_params(path: str, expected):
    """An export's encoder params, read into the structure ``expected`` (strict)."""
    params_dir = os.path.join(path, EXPORT_PARAMS)
    with ocp.PyTreeCheckpointer() as reader:
        saved = reader.metadata(params_dir)
    saved = getattr(saved, "item_metadata", saved).tree
    return _read_tree(params_dir, saved, (), expected, f"export {path}")


def _load_export(path: str) -> PretrainedEncoder:
    with open(os.path.join(path, EXPORT_CONFIG)) as f:
        config = methods.from_stored(json.load(f))
    with open(os.path.join(path, EXPORT_INFO)) as f:
        info = json.load(f)
    params = _read_export_params(path, abstract_params(config)["encoder"])
    return PretrainedEncoder(config, params, info.get("step"), weights=info.get("weights"))


def load_encoder(path_or_workdir: str, step: int | None = None, weights: str | None = None):
    """Load the encoder of a run directory (or its ``checkpoints/`` folder) at ``step``, or of
    a params-only export (``export_encoder``; ``step`` and ``weights`` were fixed when it was
    written).

    ``step`` None: the newest step that reads (a corrupt newer one is skipped with a warning).
    ``weights``: "target" (EMA) or "context"; None: the encoder the run's probes read
    (``jepa.methods.eval_weights``: its ``eval.weights``, else the method's own — "context" for the
    multiview objective, "target" for the EMA-target ones), so that ``jepa-eval`` and this
    return the same features."""
    workdir = str(path_or_workdir).rstrip("/")
    if _is_export(workdir):
        return _load_export(workdir)
    if weights is not None and weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r}; valid: {sorted(WEIGHTS)} or None")
    ckpt = open_run(workdir)

    def read(s):
        config = methods.from_stored(ckpt.read_config(s))
        chosen = weights or methods.eval_weights(config)
        expected, what = abstract_params(config)["encoder"], f"checkpoint step {s} ({chosen})"
        return config, chosen, restore_subtree(ckpt, s, WEIGHTS[chosen], expected, what)

    step, (config, chosen, params) = read_good_step(ckpt, step, read)
    return PretrainedEncoder(config, params, step, weights=chosen)
