"""Official I-JEPA weights (facebookresearch/ijepa PyTorch checkpoints) as our encoder.

  enc = from_ijepa_torch("IN1K-vit.h.14-300e.pth.tar", variant="H/14", res=224)
  tokens, pooled = enc(images_uint8_nhwc)                 # [b, 256, 1280], [b, 1280]

The checkpoint is a dict with the state dicts ``encoder``, ``target_encoder`` and ``predictor``
(keys prefixed ``module.`` when saved from DistributedDataParallel); only one encoder is read.
The conversion is strict: depth and width must be the variant's, and a missing, unexpected or
reshaped key raises naming it, never a partial load. Images are normalized with the ImageNet
mean/std the official models were trained with.

Position embeddings: the checkpoint holds the fixed 2D sin-cos table of its own patch grid. At
that grid it must equal ours (``layers.sincos_2d``), which the encoder then computes itself; at
another resolution the checkpoint's table is resampled to the new grid with PyTorch's bicubic
``interpolate`` (``resample_pos_embed``, reimplemented here in NumPy) and handed to the encoder.
"""

from __future__ import annotations

import math
import os
import types
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jepa import checkpointing, hub, masking, methods
from jepa import config as config_lib
from jepa.data import augment
from jepa.methods import masked
from jepa.models import layers
from jepa.models.vit import VARIANTS, parse_variant

WEIGHTS = {"target": "target_encoder", "context": "encoder"}
DDP_PREFIX = "module."
SINCOS_ATOL = 1e-4


# -------------------------------------------------------------------------- Reading the checkpoint


def _load_torch(path) -> Mapping:
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "reading a PyTorch checkpoint needs torch: pip install 'jepa[torch]' "
            "(or pass an already-loaded dict of arrays)"
        ) from e
    # weights_only: the file is untrusted input, so only tensors and plain containers are
    # rebuilt, never arbitrary pickled objects.
    return torch.load(os.fspath(path), map_location="cpu", weights_only=True)


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; .float() because numpy has no bfloat16
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, np.float32)


def select_state_dict(checkpoint: Mapping, weights: str) -> dict[str, np.ndarray]:
    """The chosen encoder's state dict as numpy arrays, ``module.`` prefixes removed.

    ``checkpoint`` is a whole training checkpoint (holding ``encoder``/``target_encoder``) or
    already one encoder's state dict (then ``weights`` has nothing to pick)."""
    if any(isinstance(checkpoint.get(k), Mapping) for k in WEIGHTS.values()):
        key = WEIGHTS[weights]
        if not isinstance(checkpoint.get(key), Mapping):
            raise ValueError(
                f"weights={weights!r} reads the checkpoint's {key!r} state dict, which it lacks "
                f"(it has {sorted(checkpoint)})"
            )
        checkpoint = checkpoint[key]
    return {k.removeprefix(DDP_PREFIX): _to_numpy(v) for k, v in checkpoint.items()}


# ----------------------------------------------------------------- Checking it against the variant


def official_shapes(hp: dict, channels: int = 3) -> dict[str, tuple[int, ...]]:
    """Key → shape of an I-JEPA ViT state dict (``pos_embed`` excluded: its grid is free)."""
    d, p, hidden = hp["width"], hp["patch_size"], int(hp["width"] * hp["mlp_ratio"])
    # Every layer has a weight and a bias [out]: a Linear's weight is [out, in], a norm's [out].
    layers = {"patch_embed.proj": (d, channels, p, p), "norm": (d,)}
    block = {"norm1": (d,), "attn.qkv": (3 * d, d), "attn.proj": (d, d), "norm2": (d,)}
    block |= {"mlp.fc1": (hidden, d), "mlp.fc2": (d, hidden)}
    for i in range(hp["depth"]):
        layers |= {f"blocks.{i}.{name}": weight for name, weight in block.items()}
    shapes = {f"{name}.weight": weight for name, weight in layers.items()}
    return shapes | {f"{name}.bias": weight[:1] for name, weight in layers.items()}


def _square_grid(shape: tuple, width: int) -> int:
    """g for a [1, g², width] position table, else 0."""
    if len(shape) != 3 or shape[0] != 1 or shape[2] != width:
        return 0
    g = math.isqrt(shape[1])
    return g if g > 0 and g * g == shape[1] else 0


def check_state_dict(state: Mapping[str, np.ndarray], hp: dict, variant: str) -> int:
    """Raise ``ValueError`` naming a depth or width other than the variant's, else every missing,
    unexpected or reshaped key; return the side of the checkpoint's (square) position grid."""
    # The checkpoint's depth (its blocks.i entries) and width (its final norm's); 0 if absent.
    indices = {k.split(".")[1] for k in state if k.startswith("blocks.")}
    depth = 1 + max((int(i) for i in indices if i.isdigit()), default=-1)
    width = int(state["norm.weight"].shape[0]) if "norm.weight" in state else 0
    if (depth, width) != (hp["depth"], hp["width"]):
        fits = [n for n, v in VARIANTS.items() if v[:2] == (width, depth)]
        raise ValueError(
            f"I-JEPA state dict does not match ViT-{variant}: the checkpoint has depth {depth} and "
            f"width {width}, variant {variant!r} has depth {hp['depth']} and width {hp['width']}"
            + (f" (variant {fits[0]!r} has this shape)" if fits else "")
        )
    table = tuple(state["pos_embed"].shape) if "pos_embed" in state else ()
    grid = _square_grid(table, hp["width"])
    # The position table may have any square grid (the resolution it was trained at).
    want = official_shapes(hp) | {"pos_embed": table if grid else (1, "n²", hp["width"])}
    # Leaves with a ``.shape``, which is all the comparison reads.
    want = {k: types.SimpleNamespace(shape=shape) for k, shape in want.items()}
    checkpointing.check_tree_matches(state, want, "the I-JEPA checkpoint")
    return grid


# ---------------------- Conversion (torch Linear weights are [out, in]; our kernels are [in, out])


def _dense(state, name: str) -> dict:
    return {"kernel": state[f"{name}.weight"].T, "bias": state[f"{name}.bias"]}


def _norm(state, name: str) -> dict:
    return {"scale": state[f"{name}.weight"], "bias": state[f"{name}.bias"]}


def _attention(state, name: str, num_heads: int) -> dict:
    # torch's qkv output index is (which of q/k/v, head, channel-in-head), the order timm
    # reshapes it in; our kernel keeps those three as separate axes: [width, 3, heads, hd].
    qkv = state[f"{name}.qkv.weight"]
    width = qkv.shape[1]
    split = (3, num_heads, width // num_heads)
    return {
        "qkv_kernel": qkv.T.reshape(width, *split),
        "qkv_bias": state[f"{name}.qkv.bias"].reshape(split),
        # The projection's input is the heads concatenated, head-major.
        "proj_kernel": state[f"{name}.proj.weight"].T.reshape(*split[1:], width),
        "proj_bias": state[f"{name}.proj.bias"],
    }


def _patch_embed(state) -> dict:
    # Conv2d [D, C, p, p] applied with stride p is a Dense on each patch; patchify lays a patch
    # out as (row, column, channel), so the kernel becomes [p, p, C, D] before flattening.
    w = state["patch_embed.proj.weight"]
    kernel = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
    return {"kernel": kernel, "bias": state["patch_embed.proj.bias"]}


def convert_params(state: Mapping[str, np.ndarray], depth: int, num_heads: int) -> dict:
    """An I-JEPA ViT state dict (already checked) → our ``VisionTransformer`` params."""
    params = {"patch_embed": _patch_embed(state), "norm": _norm(state, "norm")}
    for i in range(depth):
        b = f"blocks.{i}"
        params[f"block_{i}"] = {
            "norm1": _norm(state, f"{b}.norm1"),
            "attn": _attention(state, f"{b}.attn", num_heads),
            "norm2": _norm(state, f"{b}.norm2"),
            "mlp": {"fc1": _dense(state, f"{b}.mlp.fc1"), "fc2": _dense(state, f"{b}.mlp.fc2")},
        }
    return params


# ----------------------------------------------------------------------------- Position embeddings


def check_sincos(table: np.ndarray, grid: int) -> None:
    """The encoder computes its own sin-cos table, so a checkpoint table that is something
    else (a learned one, another layout) would be silently replaced: refuse it instead."""
    ours = layers.sincos_2d(table.shape[-1], grid, grid)
    diff = float(np.max(np.abs(table.reshape(ours.shape) - ours)))
    if diff > SINCOS_ATOL:
        raise ValueError(
            f"the checkpoint's pos_embed differs from the fixed 2D sin-cos table of its "
            f"{grid}×{grid} grid by up to {diff:.3g} (tolerance {SINCOS_ATOL}); this importer "
            "only supports I-JEPA's fixed sin-cos position embeddings"
        )


# torch's bicubic: Keys' cubic convolution kernel with A = -0.75 (PIL and jax.image use -0.5).
TORCH_CUBIC_A = -0.75


def _cubic_taps(t: np.ndarray, a: float = TORCH_CUBIC_A) -> np.ndarray:
    """[..., 4] kernel weights of the samples at floor(s) - 1, floor(s), floor(s) + 1 and
    floor(s) + 2 for a source coordinate s with fractional part t (their distances from s are
    1 + t, t, 1 - t and 2 - t); the four sum to 1."""

    def inner(x):  # the kernel for |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def outer(x):  # the kernel for 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([outer(1 + t), inner(t), inner(1 - t), outer(2 - t)], axis=-1)


def torch_bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] float64 matrix of ``F.interpolate(mode="bicubic", align_corners=False)``
    along one axis: output i reads source coordinate (i + 0.5) · n_in / n_out - 0.5 (not
    clamped), weighs the four samples around it with ``_cubic_taps``, and a sample index outside
    [0, n_in) is clamped to the border, so its weight adds onto the edge sample (no
    renormalization, no antialiasing)."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    first = np.floor(src)
    weights = _cubic_taps(src - first)  # [n_out, 4]
    index = np.clip(first.astype(np.int64)[:, None] + np.arange(-1, 3), 0, n_in - 1)
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.arange(n_out)[:, None], index), weights)
    return matrix


def resample_pos_embed(table: np.ndarray, grid: int, new_grid: int) -> np.ndarray:
    """[1, grid², D] raster-order table → [new_grid², D] float32, as torch's
    ``F.interpolate(table as [1, D, grid, grid], size=(new_grid, new_grid), mode="bicubic",
    align_corners=False)`` computes it (bicubic is separable: the same 1-D matrix on rows and
    columns).

    What I-JEPA's ``interpolate_pos_encoding`` (facebookresearch/ijepa, src/models/
    vision_transformer.py) means to do: it passes ``scale_factor=sqrt(npatch / N)`` without
    ``recompute_scale_factor``, so torch makes floor(grid · scale) outputs and maps coordinates
    with 1 / scale_factor, which for the intended factor new_grid / grid is grid / new_grid, the
    in/out ratio used here (equal up to float rounding). As published it cannot be followed
    literally: it treats token 0 as a class token, which I-JEPA's ViTs lack, so for any grid
    change it reshapes grid² - 1 entries into (grid - 1)² and raises. We resample the whole
    table, to exactly ``new_grid`` (the floor of a rounded square root can fall one short, e.g.
    11 → 15)."""
    width = table.shape[-1]
    square = np.asarray(table, np.float64).reshape(grid, grid, width)
    m = torch_bicubic_matrix(grid, new_grid)
    resized = np.einsum("yi,xj,ijd->yxd", m, m, square)
    return resized.reshape(new_grid * new_grid, width).astype(np.float32)


# ------------------------------------------------------------------------------------- The encoder


def imported_config(variant: str, res: int, weights: str):
    """Our config for an official model: ``experiments/ijepa_in1k.py``'s model at ``res``, with
    the ImageNet normalization the official models were trained with."""
    c = methods.with_method(config_lib.base_config(), masked.METHOD.name)
    config_lib.apply_variant(c, variant)
    c.model.image_size = res
    c.model.channels = 3
    c.method.predictor.width = 384
    c.method.predictor.depth = 12 if variant.split("/")[0] in ("H", "g") else 6
    c.method.predictor.num_heads = c.model.num_heads
    grid = res // c.model.patch_size
    c.method.mask.context_tokens, c.method.mask.target_tokens = masking.default_token_counts(
        (grid, grid)
    )
    c.data.mean, c.data.std = augment.IMAGENET_MEAN, augment.IMAGENET_STD
    c.eval.weights = weights
    return config_lib.finalize(c)


def from_ijepa_torch(
    path_or_state_dict,
    variant: str = "H/14",
    res: int = 224,
    weights: str = "target",
    patch_size: int | None = None,
):
    """An official I-JEPA checkpoint as a ``jepa.hub.PretrainedEncoder``.

    path_or_state_dict: a ``.pth.tar`` path (read with ``torch.load(weights_only=True)``), or
      the loaded checkpoint dict, or one encoder's state dict; values are torch tensors or numpy
      arrays.
    variant: ``"NAME/PATCH"`` as in ``experiments/ijepa_in1k.py`` (``H/14``, ``H/16``, ``g/16``);
      ``patch_size`` overrides its patch size.
    res: input resolution; a grid other than the checkpoint's resamples its position table.
    weights: ``"target"`` (the EMA ``target_encoder``, the one I-JEPA evaluates) or
      ``"context"`` (``encoder``).
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r}; valid: {sorted(WEIGHTS)}")
    name, _, patch = variant.partition("/")
    variant = f"{name}/{patch_size or patch}"
    hp = parse_variant(variant)
    if res <= 0 or res % hp["patch_size"]:
        raise ValueError(
            f"res={res} is not a positive multiple of the patch size {hp['patch_size']}"
        )
    checkpoint = path_or_state_dict
    if not isinstance(checkpoint, Mapping):
        checkpoint = _load_torch(checkpoint)
    state = select_state_dict(checkpoint, weights)
    ckpt_grid = check_state_dict(state, hp, variant)

    config = imported_config(variant, res, weights)
    params = convert_params(state, hp["depth"], hp["num_heads"])
    expected = hub.abstract_params(config)["encoder"]
    checkpointing.check_tree_matches(params, expected, "converted I-JEPA weights")
    params = jax.tree.map(jnp.asarray, params)

    grid = res // hp["patch_size"]
    if grid == ckpt_grid:
        check_sincos(state["pos_embed"], grid)
        return hub.PretrainedEncoder(config, params)
    table = resample_pos_embed(state["pos_embed"], ckpt_grid, grid)
    return hub.PretrainedEncoder(config, params, pos_embed=table)
