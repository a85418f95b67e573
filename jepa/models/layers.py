"""Transformer building blocks shared by the encoder, the predictor and the sequence models.

Every parameter carries logical axis names (``embed``, ``mlp``, ``heads``, ``kv``, ``patch``) and
the main activations are constrained with ``act_*`` names; one rules table in the config maps both
to the mesh axes ``('data', 'fsdp', 'tensor')`` (see ``jepa/sharding.py``). Activations use
separate names from parameters because the same feature axis is sharded differently on the two
(FSDP shards parameter ``embed`` axes, never activation ``embed`` axes).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

INIT_STD = 0.02
LAYER_NORM_EPS = 1e-6


def trunc_normal_init(std: float = INIT_STD, bound: float = 2.0):
    """PyTorch's ``trunc_normal_(std=std, a=-bound, b=bound)``: N(0, std²) cut at ±bound absolute.

    With std 0.02 the ±2 bound is 100 standard deviations, so this is a plain normal in practice;
    we keep the exact definition so initial statistics match the reference implementation.
    """

    def init(key, shape, dtype=jnp.float32):
        cut = bound / std
        return (jax.random.truncated_normal(key, -cut, cut, shape, jnp.float32) * std).astype(dtype)

    return init


# Sharding constraint by logical names; a no-op outside a mesh or without rules.
constrain = nn.with_logical_constraint
_param = nn.with_logical_partitioning


def dense(features: int, names: tuple, dtype, name: str, kernel_init=None) -> Dense:
    """``Dense`` whose kernel is sharded by the logical ``names`` (in, out) and its bias by the
    out name; the kernel init defaults to the reference ViT's truncated normal (std 0.02)."""
    return Dense(
        features,
        dtype=dtype,
        kernel_init=_param(kernel_init or trunc_normal_init(), names),
        bias_init=_param(nn.initializers.zeros, names[1:]),
        name=name,
    )


# --- Mixed-precision contractions: low-precision operands, float32 accumulation.

_LOW_PRECISION = (jnp.bfloat16, jnp.float16)


def einsum(
    spec: str, a: jax.Array, b: jax.Array, bias: jax.Array | None = None, dtype: Dtype | None = None
) -> jax.Array:
    """``jnp.einsum`` of two operands computed in ``dtype`` (default: their common dtype), plus
    an optional ``bias`` aligned with the output's trailing axes (size-1 axes broadcast).

    In bfloat16/float16 the operands are rounded to ``dtype``, products accumulate in float32
    (forward and both gradient contractions), the bias is added in float32 before the output is
    rounded to ``dtype``, and each gradient comes back in its input's own dtype: a float32
    kernel gets its float32 gradient straight from the accumulator, never rounded to bf16.

    Why not plain ``jnp.einsum`` on bf16 arrays: XLA:CPU runs a bf16 × bf16 → bf16 dot at the
    float32 rate (it converts), but bf16 × bf16 → f32 on native bf16 kernels (AVX512-BF16, 2×
    the float32 rate on a Zen 4/5 CPU; docs/performance.md); and autodiff of a dot with
    ``preferred_element_type=float32`` feeds float32 cotangents into the backward dots, which
    then take the slow path again. So the gradient is written out: the cotangent is rounded to
    ``dtype``, as PyTorch's autocast does, and both gradient dots accumulate in f32. The bias
    gradient is summed from the bf16 cotangent in f32: left to autodiff, XLA:CPU converts the
    whole cotangent first and sums it with a strided reduce-window (~12% of a transformer
    block's backward).
    Every index must appear in at least two of the three terms (contracted, batch or kept
    axes; no sums over one operand, no ellipsis), which all transformer contractions satisfy.
    """
    dtype = jnp.dtype(dtype or jnp.result_type(a, b))
    inputs, out = spec.replace(" ", "").split("->")
    if bias is not None:
        bias = bias.reshape((1,) * (len(out) - bias.ndim) + bias.shape)
    if dtype not in _LOW_PRECISION:
        y = jnp.einsum(spec, a.astype(dtype), b.astype(dtype))
        return y if bias is None else y + bias.astype(dtype)
    if "." in spec:
        raise ValueError(f"mixed-precision einsum {spec!r}: name every axis (no ellipsis)")
    lhs, rhs = inputs.split(",")
    for index in set(lhs + rhs + out):
        if (index in lhs) + (index in rhs) + (index in out) < 2:
            raise ValueError(
                f"mixed-precision einsum {spec!r}: index {index!r} must appear in at least "
                "two of the three terms"
            )
    return _low_precision_einsum(f"{lhs},{rhs}->{out}", dtype, a, b, bias)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _low_precision_einsum(spec: str, dtype, a, b, bias) -> jax.Array:
    y = jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)
    return (y if bias is None else y + bias.astype(jnp.float32)).astype(dtype)


def _low_precision_einsum_fwd(spec, dtype, a, b, bias):
    # The inputs as given (an activation already in ``dtype``, a float32 kernel that lives on
    # as a parameter anyway): their dtypes are those of the gradients to return.
    return _low_precision_einsum(spec, dtype, a, b, bias), (a, b, bias)


def _low_precision_einsum_bwd(spec, dtype, residuals, grad):
    a, b, bias = residuals
    (lhs, rhs), out = spec.split("->")[0].split(","), spec.split("->")[1]
    grad = grad.astype(dtype)
    low_a, low_b = a.astype(dtype), b.astype(dtype)
    grad_a = jnp.einsum(f"{out},{rhs}->{lhs}", grad, low_b, preferred_element_type=jnp.float32)
    grad_b = jnp.einsum(f"{lhs},{out}->{rhs}", low_a, grad, preferred_element_type=jnp.float32)
    grad_bias = None
    if bias is not None:
        shapes = zip(grad.shape, bias.shape, strict=True)
        axes = tuple(i for i, (n, m) in enumerate(shapes) if m == 1 and n > 1)
        grad_bias = jnp.sum(grad, axis=axes, keepdims=True, dtype=jnp.float32).astype(bias.dtype)
    return grad_a.astype(a.dtype), grad_b.astype(b.dtype), grad_bias


_low_precision_einsum.defvjp(_low_precision_einsum_fwd, _low_precision_einsum_bwd)


class Dense(nn.Module):
    """``nn.Dense`` (same parameters: ``kernel`` [in, out] and ``bias`` [out], float32) whose
    contraction and bias go through the mixed-precision ``einsum`` above."""

    features: int
    dtype: Dtype = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        lead = "abcefghijk"[: x.ndim - 1]  # any letters but the two named below
        return einsum(f"{lead}d,dz->{lead}z", x, kernel, bias, self.dtype)


# --- Fixed sin-cos position embeddings (MAE / I-JEPA layout), computed in numpy as constants.


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """[n] positions → [n, dim] embedding: first half sin, second half cos (MAE convention)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def _sincos_grid(dim: int, grid: tuple[int, ...], widths: tuple[int, ...], axes) -> np.ndarray:
    """[prod(grid), dim] float32 in raster order of ``grid``: the ``sincos_1d`` of the index
    along each of ``axes`` (``widths`` channels each), concatenated and cut to ``dim``."""
    index = np.meshgrid(*(np.arange(n) for n in grid), indexing="ij")
    parts = [sincos_1d(width, index[a]) for width, a in zip(widths, axes, strict=True)]
    return np.concatenate(parts, axis=1)[:, :dim].astype(np.float32)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """[grid_h * grid_w, dim] embedding in raster order; half the width encodes each axis.

    Matches I-JEPA's ``get_2d_sincos_pos_embed``: the first half encodes the column (w) index,
    the second half the row (h) index, so converted PyTorch checkpoints line up exactly.
    """
    if dim % 4:
        raise ValueError(f"2D sin-cos embedding width must be divisible by 4, got {dim}")
    return _sincos_grid(dim, (grid_h, grid_w), (dim // 2, dim // 2), axes=(1, 0))


def sincos_3d(dim: int, grid_t: int, grid_h: int, grid_w: int) -> np.ndarray:
    """[t * h * w, dim] embedding in (t, h, w) raster order, V-JEPA's layout: half the width
    encodes time, a quarter each the row and the column, concatenated as [time, row, column]."""
    if dim % 8:
        raise ValueError(f"3D sin-cos embedding width must be divisible by 8, got {dim}")
    return _sincos_grid(dim, (grid_t, grid_h, grid_w), (dim // 2, dim // 4, dim // 4), (0, 1, 2))


def sincos_3d_uniform(dim: int, grid_t: int, grid_h: int, grid_w: int) -> np.ndarray:
    """[t * h * w, dim] embedding in (t, h, w) raster order with V-JEPA's ``uniform_power``
    split (the one its pretraining configs use): each axis gets the same 2·ceil(dim/6) channels,
    concatenated as [time, row, column] and cut to ``dim`` (for dim=1024 the last two column
    channels are dropped). Time, row and column thus carry equal weight, where ``sincos_3d``
    gives time half the width."""
    part = 2 * math.ceil(dim / 6)
    return _sincos_grid(dim, (grid_t, grid_h, grid_w), (part, part, part), (0, 1, 2))


# --- Input filter, normalization and transformer blocks.


def gaussian_blur(images: jax.Array, sigma: float) -> jax.Array:
    """[..., H, W, C] low-passed by a fixed Gaussian of std ``sigma`` pixels (separable, radius
    ceil(3σ), the border padded by repeating the edge, each channel on its own)."""
    shape = images.shape
    images = images.reshape(-1, *shape[-3:])
    r = max(1, math.ceil(3 * sigma))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k = jnp.asarray(k / k.sum(), images.dtype)
    c = images.shape[-1]
    x = jnp.pad(images, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")
    layout = ("NHWC", "HWIO", "NHWC")
    for kernel in (k[:, None], k[None, :]):  # rows, then columns
        hwio = jnp.tile(kernel[:, :, None, None], (1, 1, 1, c))  # one filter per channel
        x = jax.lax.conv_general_dilated(
            x, hwio, (1, 1), "VALID", dimension_numbers=layout, feature_group_count=c
        )
    return x.reshape(shape)


def layer_norm(
    name: str | None = None, dtype: Dtype = jnp.float32, axis: str | None = "embed"
) -> nn.LayerNorm:
    """LayerNorm (eps 1e-6, float32 scale and bias) over a feature axis named ``axis`` for
    sharding; None: replicated (small layers such as the projector and the conv stem)."""
    return nn.LayerNorm(
        epsilon=LAYER_NORM_EPS,
        dtype=dtype,
        param_dtype=jnp.float32,
        scale_init=_param(nn.initializers.ones, (axis,)),
        bias_init=_param(nn.initializers.zeros, (axis,)),
        name=name,
    )


class Attention(nn.Module):
    """Multi-head self-attention with a qkv bias; ``out_scale`` rescales the output init."""

    num_heads: int
    out_scale: float = 1.0
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None  # None: einsums; "xla"/"cudnn": jax.nn.dot_product_attention

    @nn.compact
    def __call__(self, x: jax.Array, num_queries: int | None = None) -> jax.Array:
        """[batch, length, embed] → [batch, length, embed]; with ``num_queries`` only the last
        ``num_queries`` positions attend (keys and values still come from every position) and
        the output is [batch, num_queries, embed]."""
        width = x.shape[-1]
        if width % self.num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}")
        head_dim = width // self.num_heads
        # Explicit [embed, 3, heads, head_dim] kernels (rather than DenseGeneral) so that the
        # heads axis can be sharded for tensor parallelism and initialized in its final shape.
        qkv_kernel = self.param(
            "qkv_kernel",
            _param(trunc_normal_init(), ("embed", None, "heads", "kv")),
            (width, 3, self.num_heads, head_dim),
        )
        qkv_bias = self.param(
            "qkv_bias",
            _param(nn.initializers.zeros, (None, "heads", "kv")),
            (3, self.num_heads, head_dim),
        )
        x = x.astype(self.dtype)
        proj_kernel = self.param(
            "proj_kernel",
            _param(trunc_normal_init(INIT_STD * self.out_scale), ("heads", "kv", "embed")),
            (self.num_heads, head_dim, width),
        )
        proj_bias = self.param("proj_bias", _param(nn.initializers.zeros, ("embed",)), (width,))
        if self.attention_impl:  # a fused kernel (cuDNN) through jax.nn.dot_product_attention
            qkv = einsum("bld,dthk->blthk", x, qkv_kernel, qkv_bias, self.dtype)
            qkv = constrain(qkv, ("act_batch", "act_length", None, "act_heads", None))
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
            if num_queries is not None:
                q = q[:, -num_queries:]
            out = jax.nn.dot_product_attention(q, k, v, implementation=self.attention_impl)
            out = constrain(out, ("act_batch", "act_length", "act_heads", None))
            out = einsum("blhk,hkd->bld", out, proj_kernel, proj_bias, self.dtype)
        else:
            # Heads-major [3, batch, heads, length, head_dim] straight out of the projection:
            # the two attention matmuls are then plain batched matmuls with no transposes
            # between them. On XLA:CPU the forward is 2.6× faster than the [b, l, h, k] layout
            # of jax.nn.dot_product_attention (predictor shapes, 2-core Zen CPU).
            kernel, bias = qkv_kernel, qkv_bias[:, None, :, None, :]
            if num_queries is None:
                qkv = einsum("bld,dthk->tbhlk", x, kernel, bias, self.dtype)
                qkv = constrain(qkv, (None, "act_batch", "act_heads", "act_length", None))
                q, k, v = qkv[0], qkv[1], qkv[2]
            else:  # project queries only where an output is wanted: fewer FLOPs, same values
                q = einsum("bld,dhk->bhlk", x[:, -num_queries:], kernel[:, 0], bias[0], self.dtype)
                kv = einsum("bld,dthk->tbhlk", x, kernel[:, 1:], bias[1:], self.dtype)
                kv = constrain(kv, (None, "act_batch", "act_heads", "act_length", None))
                k, v = kv[0], kv[1]
            q = q * head_dim**-0.5
            logits = einsum("bhqk,bhsk->bhqs", q, k)
            weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
            out = einsum("bhqs,bhsk->bhqk", weights, v)
            out = constrain(out, ("act_batch", "act_heads", "act_length", None))
            out = einsum("bhlk,hkd->bld", out, proj_kernel, proj_bias, self.dtype)
        return constrain(out, ("act_batch", "act_length", "act_embed"))


class Mlp(nn.Module):
    """Two dense layers with an exact (erf) GELU, as in the reference ViT."""

    hidden: int
    out_scale: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        h = dense(self.hidden, ("embed", "mlp"), self.dtype, "fc1")(x)
        h = constrain(h, ("act_batch", "act_length", "act_mlp"))
        # Exact GELU, x·Φ(x), written with erf: jax.nn.gelu(approximate=False) goes through
        # erfc, whose float32 XLA expansion (exp + selects) is ~1.4× slower on CPU; the two
        # agree to 1e-6.
        h = 0.5 * h * (1.0 + jax.lax.erf(h * (2.0**-0.5)))
        fc2_init = trunc_normal_init(INIT_STD * self.out_scale)
        out = dense(width, ("mlp", "embed"), self.dtype, "fc2", fc2_init)(h)
        return constrain(out, ("act_batch", "act_length", "act_embed"))


class Block(nn.Module):
    """Pre-norm transformer block. ``layer_id`` (1-based) sets the 1/sqrt(2·layer_id) rescale
    of both output projections, which I-JEPA applies after init to keep the residual stream's
    variance from growing with depth."""

    num_heads: int
    mlp_ratio: float = 4.0
    layer_id: int = 1
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, num_queries: int | None = None) -> jax.Array:
        """``num_queries``: compute only the last ``num_queries`` outputs (the values the full
        block would give there), for a final block whose other outputs nobody reads."""
        width = x.shape[-1]
        scale = 1.0 / math.sqrt(2.0 * self.layer_id)
        attn = Attention(self.num_heads, scale, self.dtype, self.attention_impl, name="attn")
        y = attn(layer_norm("norm1", self.dtype)(x), num_queries)
        x = (x if num_queries is None else x[:, -num_queries:]) + y
        mlp = Mlp(int(width * self.mlp_ratio), scale, self.dtype, name="mlp")
        x = x + mlp(layer_norm("norm2", self.dtype)(x))
        return constrain(x, ("act_batch", "act_length", "act_embed"))


REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def stack_blocks(
    x: jax.Array,
    depth: int,
    num_heads: int,
    mlp_ratio: float,
    dtype: Dtype,
    remat: str,
    attention_impl: str | None,
    collect: dict | None = None,
    last_block_outputs: int | None = None,
) -> jax.Array:
    """Apply ``depth`` blocks (names ``block_0`` …), each wrapped in ``nn.remat`` with the named
    policy unless ``remat="none"``; optionally record every block's output.
    ``last_block_outputs=k``: the last block computes (and this returns) only the last k
    positions, e.g. the predictor's mask tokens."""
    if remat not in REMAT_POLICIES:
        raise ValueError(f"model.remat={remat!r}; valid: {sorted(REMAT_POLICIES)}")
    cls = Block
    if remat != "none":
        # num_queries (argument 2, counting self) is a Python int that shapes the block.
        cls = nn.remat(Block, policy=REMAT_POLICIES[remat], static_argnums=(2,))
    for i in range(depth):
        keep = last_block_outputs if i == depth - 1 else None
        x = cls(num_heads, mlp_ratio, i + 1, dtype, attention_impl, name=f"block_{i}")(x, keep)
        if collect is not None:
            collect[f"block_{i}"] = x
    return x
