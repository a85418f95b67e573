"""Config validation: every key and type against the shared core (``base_config``) and, under
``method``, against the defaults of the method ``objective`` names; the combinations of core keys
a type check cannot see; then the method's own (``Method.validate``). Runs before anything is
traced or compiled; every error names the offending key and what would be valid."""

from __future__ import annotations

import difflib
import warnings

import ml_collections

from jepa import methods
from jepa.config import DTYPES, base_config, init_parts, mesh_shape
from jepa.evaluate import protocols
from jepa.methods.base import check_pair, validate_shared
from jepa.models.layers import REMAT_POLICIES
from jepa.models.vit import STEMS


def _validate_accumulation(config) -> None:
    steps = config.optim.grad_accum_steps
    if steps < 1 or config.batch_size % steps:
        raise ValueError(
            f"optim.grad_accum_steps={steps}; valid: an integer >= 1 that divides "
            f"batch_size={config.batch_size}"
        )
    # The enabled loss terms that are statistics over the batch (not means of per-sample values):
    # accumulation computes them per micro-batch.
    loss, lat = config.method.get("loss", {}), config.method.get("latent", {})
    terms = [f"method.loss.{k}" for k in ("vicreg_var", "vicreg_cov", "sigreg") if loss.get(k)]
    if lat.get("kind") == "discrete" and lat.get("usage_weight"):
        terms.append("method.latent.usage_weight")
    if steps > 1 and terms:
        warnings.warn(
            f"optim.grad_accum_steps={steps} with batch statistics {terms}: each is computed "
            f"on a micro-batch of {config.batch_size // steps} samples and averaged, not on the "
            f"batch of {config.batch_size}",
            stacklevel=3,
        )


# String keys with a fixed set of values (a model would only fail on a wrong one when traced).
CHOICES = {
    "model.dtype": (*DTYPES, "auto"),
    "model.remat": tuple(REMAT_POLICIES),
    "model.patch_embed_init": ("reference", "fan_in"),
    "model.attention_impl": ("", "xla", "cudnn"),
    "model.stem": STEMS,
}


# The types a value may have where ``base_config``'s default has the key's type (a type not
# listed here: anything).
EXPECTED_TYPES = {
    bool: (bool,),
    int: (int,),
    float: (int, float),
    str: (str,),
    tuple: (tuple, list),
    list: (tuple, list),
}


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
        kinds = EXPECTED_TYPES.get(type(default))
        ok = kinds is None or (
            isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        )
        if not ok:
            raise ValueError(
                f"{path}={value!r} is a {type(value).__name__}; valid: "
                f"{' or '.join(k.__name__ for k in kinds)} (like the default {default!r})"
            )


def check_keys_and_types(config) -> None:
    """Every key is one of ``base_config``'s or, under ``method``, of the method's defaults,
    with a value of its type; pairs have two numbers and keys with a fixed set of values have
    one of them. Catches what the locked config cannot: keys misspelled before an experiment
    locks it, and values set to None or to a dict of strings."""
    expected = base_config()
    expected.method = methods.of(config).defaults()  # an unknown objective: named here
    _check_node(config, expected, "")
    check_pair(config.data.crop_scale, "data.crop_scale")
    check_pair(config.optim.ema_momentum, "optim.ema_momentum")
    for key, valid in CHOICES.items():
        if config[key] not in valid:
            raise ValueError(f"{key}={config[key]!r}; valid: {valid}")


def _validate_vit(m) -> None:
    """``config.model``'s ViT keys, for the methods that build their encoder from them."""
    if m.image_size % m.patch_size:
        raise ValueError(
            f"model.image_size={m.image_size} is not divisible by model.patch_size={m.patch_size}"
            f"; valid: a patch size that divides {m.image_size}"
        )
    if m.width % m.num_heads:
        raise ValueError(f"model.width={m.width} is not divisible by model.num_heads={m.num_heads}")
    if m.width % 4:
        raise ValueError(f"model.width={m.width} must be divisible by 4 (2D sin-cos embedding)")
    if m.patch_blur < 0:
        raise ValueError(f"model.patch_blur={m.patch_blur} must be >= 0 (0 = off)")
    if m.stem == "conv" and (m.patch_size < 2 or m.patch_size & (m.patch_size - 1)):
        raise ValueError(
            f"model.stem='conv' halves the resolution log2(patch) times: model.patch_size="
            f"{m.patch_size} must be a power of 2 (>= 2)"
        )
    if m.stem == "conv" and m.num_frames:
        raise ValueError("model.stem='conv' is for images; tubelets take model.stem='patch'")


def validate(config, device_count: int | None = None) -> None:
    """Raise ``ValueError`` naming the key for any impossible setting (before compilation)."""
    check_keys_and_types(config)
    m = config.model
    if methods.of(config).vit:
        _validate_vit(m)
    protocols.validate_eval(config)
    if config.batch_size <= 0:
        raise ValueError(f"batch_size={config.batch_size} must be positive")
    if config.total_steps < 0 or (not config.total_steps and config.epochs <= 0):
        raise ValueError(
            f"total_steps={config.total_steps}, epochs={config.epochs}: valid: total_steps > 0, "
            "or total_steps=0 and epochs > 0 (steps derived from the dataset size)"
        )
    if not config.data.dataset and (
        not config.total_steps or (config.optim.warmup_epochs and not config.optim.warmup_steps)
    ):
        raise ValueError(
            f"total_steps={config.total_steps}, optim.warmup_epochs={config.optim.warmup_epochs}"
            " with data.dataset='' (batches generated by the method, no dataset size to count "
            "epochs in); valid: total_steps > 0 and the warmup in optim.warmup_steps"
        )
    if config.optim.schedule_scale < 1:
        raise ValueError(f"optim.schedule_scale={config.optim.schedule_scale} must be >= 1")
    if m.num_frames < 0 or m.tubelet_size < 1 or m.num_frames % m.tubelet_size:
        raise ValueError(
            f"model.num_frames={m.num_frames}, model.tubelet_size={m.tubelet_size}; valid: "
            "num_frames >= 0 (0: images) and a multiple of tubelet_size >= 1"
        )
    init_parts(config.init.take)
    validate_shared(config)
    methods.of(config).validate(config)
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
