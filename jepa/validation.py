"""Config validation: every key and type against the base config, the combinations a type check
cannot see, then the method's own (``Method.validate``). Runs before anything is traced or
compiled; every error names the offending key and what would be valid."""

from __future__ import annotations

import difflib
import warnings

import ml_collections

from jepa import latent, methods
from jepa.config import (
    DTYPES,
    ENERGIES,
    REGULARIZE_ON,
    TARGET_ENCODERS,
    base_config,
    batch_statistic_terms,
    latent_spec,
    mesh_shape,
)
from jepa.evaluate import protocols
from jepa.methods import REGISTRY
from jepa.models.layers import REMAT_POLICIES
from jepa.models.vit import VIDEO_MODES

MASK_KINDS = ("multiblock", "tube")


def _validate_video(config) -> None:
    m = config.model
    if m.video_mode not in VIDEO_MODES:
        raise ValueError(f"model.video_mode={m.video_mode!r}; valid: {VIDEO_MODES}")
    if m.num_frames < 0 or m.tubelet_size < 1:
        raise ValueError(
            f"model.num_frames={m.num_frames}, model.tubelet_size={m.tubelet_size}; valid: "
            "num_frames >= 0 (0: images), tubelet_size >= 1"
        )
    if m.num_frames and m.video_mode == "tubelet" and m.num_frames % m.tubelet_size:
        raise ValueError(
            f"model.num_frames={m.num_frames} is not divisible by model.tubelet_size="
            f"{m.tubelet_size}"
        )
    if config.mask.kind not in MASK_KINDS:
        raise ValueError(f"mask.kind={config.mask.kind!r}; valid: {MASK_KINDS}")


# Keys read by some methods only (``Method.reads``), at their base values: any other value on a
# method that does not read the key stops the run instead of being silently ignored.
METHOD_KEYS = {
    "mask.kind": "multiblock",
    "latent.kind": "none",
    "latent.reference": False,
    "loss.future_target_grid": 0,
}


def _validate_method_keys(config) -> None:
    """No key set that only other methods read."""
    for path, default in METHOD_KEYS.items():
        group, leaf = path.split(".")
        value = config[group][leaf]
        if value == default or path in methods.get(config.objective).reads:
            continue
        readers = " or ".join(f'objective="{m.name}"' for m in REGISTRY.values() if path in m.reads)
        raise ValueError(
            f"{path}={value!r} is read by {readers}, not by objective={config.objective!r}: "
            f"valid: {readers}, or {path}={default!r}"
        )


def _validate_accumulation(config) -> None:
    steps = config.optim.grad_accum_steps
    if steps < 1 or config.batch_size % steps:
        raise ValueError(
            f"optim.grad_accum_steps={steps}; valid: an integer >= 1 that divides "
            f"batch_size={config.batch_size}"
        )
    terms = batch_statistic_terms(config)
    if steps > 1 and terms:
        warnings.warn(
            f"optim.grad_accum_steps={steps} with batch statistics {terms}: each is computed "
            f"on a micro-batch of {config.batch_size // steps} samples and averaged, not on the "
            f"batch of {config.batch_size}",
            stacklevel=3,
        )


# (low, high) pairs: a single number from the command line (``--config.mask.target_scale=0.2``)
# arrives as a 1-tuple.
PAIR_KEYS = (
    "mask.target_scale",
    "mask.target_aspect",
    "mask.context_scale",
    "mask.context_aspect",
    "data.crop_scale",
    "data.local_crop_scale",
    "optim.ema_momentum",
)
# String keys with a fixed set of values that validate() does not check elsewhere (the models
# would only fail when traced).
CHOICES = {
    "model.patch_embed_init": ("reference", "fan_in"),
    "model.attention_impl": ("", "xla", "cudnn"),
    "model.stem": ("patch", "conv"),
}


def _validate_stem(m) -> None:
    if m.stem != "conv":
        return
    p = m.patch_size
    if p < 2 or p & (p - 1):
        raise ValueError(
            f"model.stem='conv' halves the resolution log2(patch) times: model.patch_size={p} "
            "must be a power of 2 (>= 2)"
        )
    if m.num_frames and m.video_mode == "tubelet":
        raise ValueError(
            "model.stem='conv' is for images and model.video_mode='framewise'; tubelets take "
            "model.stem='patch'"
        )


def _expected_type(default) -> tuple[type, ...] | None:
    """The types a value may have where ``base_config`` has ``default`` (None: anything)."""
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, int):
        return (int,)
    if isinstance(default, float):
        return (int, float)
    if isinstance(default, str):
        return (str,)
    if isinstance(default, (tuple, list)):
        return (tuple, list)
    return None


def _check_node(node, defaults, prefix: str) -> None:
    for key in node.keys():
        path = prefix + key
        if key not in defaults:
            valid = sorted(defaults.keys())
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {prefix}{close[0]}? " if close else ""
            where = f"under {prefix[:-1]}" if prefix else "at the top level"
            raise ValueError(f"unknown config key {path}; {hint}valid keys {where}: {valid}")
        value, default = node[key], defaults[key]
        if isinstance(default, ml_collections.ConfigDict):
            if not isinstance(value, (ml_collections.ConfigDict, dict)):
                raise ValueError(
                    f"{path}={value!r} is a {type(value).__name__}; valid: a group of keys "
                    f"{sorted(default.keys())}"
                )
            _check_node(ml_collections.ConfigDict(value), default, path + ".")
            continue
        kinds = _expected_type(default)
        ok = kinds is None or (
            isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        )
        if not ok:
            raise ValueError(
                f"{path}={value!r} is a {type(value).__name__}; valid: "
                f"{' or '.join(k.__name__ for k in kinds)} (like the default {default!r})"
            )


def check_keys_and_types(config) -> None:
    """Every key is one of ``base_config``'s, with a value of its type; pairs have two numbers
    and keys with a fixed set of values have one of them. Catches what the locked config cannot:
    keys misspelled before an experiment locks it, and values set to None or to a dict of
    strings."""
    _check_node(config, base_config(), "")
    for path in PAIR_KEYS:
        *parents, leaf = path.split(".")
        node = config
        for p in parents:
            node = node[p]
        value = node[leaf]
        if len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
            raise ValueError(f"{path}={tuple(value)!r}; valid: a pair of numbers (low, high)")
    # latent.penalty before LatentSpec.validate(), which tries it on JAX arrays.
    choices = {**CHOICES, "latent.kind": latent.KINDS, "latent.penalty": latent.PENALTIES}
    for path, valid in choices.items():
        group, leaf = path.split(".")
        if config[group][leaf] not in valid:
            raise ValueError(f"{path}={config[group][leaf]!r}; valid: {valid}")


def validate(config, device_count: int | None = None) -> None:
    """Raise ``ValueError`` naming the key for any impossible setting (before compilation)."""
    check_keys_and_types(config)
    m = config.model
    if m.image_size % m.patch_size:
        raise ValueError(
            f"model.image_size={m.image_size} is not divisible by model.patch_size={m.patch_size}"
            f"; valid: a patch size that divides {m.image_size}"
        )
    if m.width % m.num_heads:
        raise ValueError(f"model.width={m.width} is not divisible by model.num_heads={m.num_heads}")
    if m.width % 4:
        raise ValueError(f"model.width={m.width} must be divisible by 4 (2D sin-cos embedding)")
    p = m.predictor
    if p.width % p.num_heads or p.width % 4:
        raise ValueError(
            f"model.predictor.width={p.width} must be divisible by 4 and by "
            f"model.predictor.num_heads={p.num_heads}"
        )
    if m.dtype not in (*DTYPES, "auto"):
        raise ValueError(f"model.dtype={m.dtype!r}; valid: {(*DTYPES, 'auto')}")
    if m.remat not in REMAT_POLICIES:
        raise ValueError(f"model.remat={m.remat!r}; valid: {tuple(REMAT_POLICIES)}")
    if config.loss.energy not in ENERGIES:
        raise ValueError(f"loss.energy={config.loss.energy!r}; valid: {ENERGIES}")
    if config.loss.target_encoder not in TARGET_ENCODERS:
        raise ValueError(
            f"loss.target_encoder={config.loss.target_encoder!r}; valid: {TARGET_ENCODERS}"
        )
    if config.loss.regularize not in REGULARIZE_ON:
        raise ValueError(f"loss.regularize={config.loss.regularize!r}; valid: {REGULARIZE_ON}")
    method = methods.of(config)  # raises naming objective and the valid names
    latent_spec(config).validate()
    protocols.validate_eval(config)
    if config.batch_size <= 0:
        raise ValueError(f"batch_size={config.batch_size} must be positive")
    if config.total_steps < 0 or (not config.total_steps and config.epochs <= 0):
        raise ValueError(
            f"total_steps={config.total_steps}, epochs={config.epochs}: valid: total_steps > 0, "
            "or total_steps=0 and epochs > 0 (steps derived from the dataset size)"
        )
    if config.optim.schedule_scale < 1:
        raise ValueError(f"optim.schedule_scale={config.optim.schedule_scale} must be >= 1")
    _validate_video(config)
    _validate_method_keys(config)
    method.validate(config)
    if config.model.patch_blur < 0:
        raise ValueError(f"model.patch_blur={config.model.patch_blur} must be >= 0 (0 = off)")
    _validate_stem(config.model)
    _validate_accumulation(config)
    if device_count is not None:
        data, fsdp, _ = mesh_shape(config, device_count)
        if config.batch_size % (data * fsdp):
            raise ValueError(
                f"batch_size={config.batch_size} is not divisible by the batch-parallel size "
                f"mesh.data × mesh.fsdp = {data * fsdp}; valid: a multiple of {data * fsdp}"
            )
        per_shard = config.batch_size // (data * fsdp)
        if per_shard % config.optim.grad_accum_steps:
            raise ValueError(
                f"optim.grad_accum_steps={config.optim.grad_accum_steps} does not divide the "
                f"per-device batch batch_size / (mesh.data × mesh.fsdp) = {per_shard} (every "
                f"micro-batch is split over the same devices); valid: a divisor of {per_shard}"
            )
