"""ViT encoder (I-JEPA's ``vision_transformer.py`` architecture, written as a pure Linen module).

No class token, fixed 2D sin-cos position embeddings (constants, not parameters), pre-norm
blocks with a qkv bias, exact GELU, LayerNorm eps 1e-6 and a final norm. The context encoder
passes ``token_indices`` so that only the context patches enter the transformer.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jepa.models import layers

# width, depth, heads, mlp ratio — as in I-JEPA's vit_tiny … vit_giant.
VARIANTS: dict[str, tuple[int, int, int, float]] = {
    "Ti": (192, 12, 3, 4.0),
    "S": (384, 12, 6, 4.0),
    "B": (768, 12, 12, 4.0),
    "L": (1024, 24, 16, 4.0),
    "H": (1280, 32, 16, 4.0),
    "g": (1408, 40, 16, 48 / 11),
}


def parse_variant(variant: str) -> dict[str, Any]:
    """``"H/14"`` → ``{width: 1280, depth: 32, num_heads: 16, mlp_ratio: 4.0, patch_size: 14}``."""
    name, _, patch = variant.partition("/")
    if name not in VARIANTS or not patch.isdigit():
        raise ValueError(
            f"model variant {variant!r} is not NAME/PATCH with NAME in {sorted(VARIANTS)}"
        )
    width, depth, heads, ratio = VARIANTS[name]
    return dict(width=width, depth=depth, num_heads=heads, mlp_ratio=ratio, patch_size=int(patch))


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
    """[batch, H, W, C] → [batch, (H/p)·(W/p), p·p·C] in raster order of patches."""
    b, h, w, c = images.shape
    p = patch_size
    x = images.reshape(b, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def gather_tokens(x: jax.Array, indices: jax.Array) -> jax.Array:
    """x [batch, tokens, d], indices [batch, k] → [batch, k, d] (I-JEPA's ``apply_masks``)."""
    return jnp.take_along_axis(x, indices[..., None], axis=1)


class VisionTransformer(nn.Module):
    """Images → patch tokens. Returns ``(tokens [batch, n, width], aux)``; ``aux`` holds every
    block's output (``block_i``) so evaluators can pick intermediate layers by name."""

    image_size: tuple[int, int]
    patch_size: int
    width: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32
    remat: str = "none"
    attention_impl: str | None = None
    # "reference": truncated normal std 0.02 as in I-JEPA. "fan_in": std 1/sqrt(p·p·C), which
    # keeps patch content on the scale of the sin-cos position embedding when patches are small
    # (a 4×4 grayscale patch has 16 inputs: at std 0.02 the tokens are ~95% position, and the
    # targets can be predicted from position alone — the collapse seen on MNIST).
    patch_embed_init: str = "reference"

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @nn.compact
    def __call__(
        self,
        images: jax.Array,
        token_indices: jax.Array | None = None,
        pos_embed: jax.Array | None = None,
    ):
        """images [batch, H, W, C] normalized floats; token_indices [batch, k] or None (all).

        H and W may differ from ``image_size`` (multi-crop's small local views): the sin-cos
        position embedding is then that of the images' own patch grid. ``pos_embed`` [patches,
        width] (raster order) replaces the sin-cos table, e.g. a converted checkpoint's table
        resampled to a new resolution (``jepa.ijepa_import``)."""
        h, w = images.shape[1:3]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"images have spatial shape {(h, w)}, not divisible by model.patch_size="
                f"{self.patch_size}"
            )
        x = patchify(images.astype(self.dtype), self.patch_size)
        if self.patch_embed_init == "reference":
            std = layers.INIT_STD
        elif self.patch_embed_init == "fan_in":
            std = 1.0 / float(x.shape[-1]) ** 0.5
        else:
            raise ValueError(
                f"model.patch_embed_init={self.patch_embed_init!r}; valid: reference, fan_in"
            )
        x = nn.Dense(
            self.width,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=nn.with_logical_partitioning(
                layers.trunc_normal_init(std, bound=2 * max(std, 1.0)), ("patch", "embed")
            ),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            name="patch_embed",
        )(x)
        grid = (h // self.patch_size, w // self.patch_size)
        if pos_embed is None:
            pos = jnp.asarray(layers.sincos_2d(self.width, *grid), self.dtype)
        elif pos_embed.shape != (grid[0] * grid[1], self.width):
            raise ValueError(
                f"pos_embed has shape {pos_embed.shape}; images of spatial shape {(h, w)} need "
                f"{(grid[0] * grid[1], self.width)}"
            )
        else:
            pos = jnp.asarray(pos_embed, self.dtype)
        x = x + pos[None]
        if token_indices is not None:
            x = gather_tokens(x, token_indices)
        x = layers.constrain(x, ("act_batch", "act_length", "act_embed"))
        aux: dict[str, jax.Array] = {}
        x = layers.stack_blocks(
            x,
            self.depth,
            self.num_heads,
            self.mlp_ratio,
            self.dtype,
            self.remat,
            self.attention_impl,
            collect=aux,
        )
        x = layers.layer_norm("norm", self.dtype)(x)
        return x, aux
