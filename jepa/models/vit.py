"""ViT encoder (I-JEPA's ``vision_transformer.py`` architecture, written as a pure Linen module).

No class token, fixed sin-cos position embeddings (constants, not parameters), pre-norm blocks
with a qkv bias, exact GELU, LayerNorm eps 1e-6 and a final norm. The context encoder passes
``token_indices`` so that only the context patches enter the transformer.

Video (clips [batch, T, H, W, C], V-JEPA): a 3D patch embedding over tubelets of
``tubelet_size`` frames × p × p pixels (V-JEPA's ``PatchEmbed3D``: a Conv3d with kernel =
stride), tokens over the (T/tubelet, H/p, W/p) grid in time-major raster order with V-JEPA's 3D
sin-cos positions (``layers.sincos_3d_uniform``), and one transformer over all of them:
attention is joint over space and time, and ``token_indices`` index that 3D grid.
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
STEMS = ("patch", "conv")


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
    """[batch, H, W, C] → [batch, (H/p)·(W/p), p·p·C] in raster order of patches (the tubelets
    of one-frame clips)."""
    return patchify_tubelets(images[:, None], 1, patch_size)


def patchify_tubelets(clips: jax.Array, tubelet_size: int, patch_size: int) -> jax.Array:
    """[batch, T, H, W, C] → [batch, (T/s)·(H/p)·(W/p), s·p·p·C]: tubelets in (t, h, w) raster
    order (time-major), each flattened as (frame, row, column, channel), the layout of a Conv3d
    kernel [out, C, s, p, p] transposed to (s, p, p, C, out)."""
    b, t, h, w, c = clips.shape
    s, p = tubelet_size, patch_size
    x = clips.reshape(b, t // s, s, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(b, (t // s) * (h // p) * (w // p), s * p * p * c)


def gather_tokens(x: jax.Array, indices: jax.Array) -> jax.Array:
    """x [batch, tokens, d], indices [batch, k] → [batch, k, d] (I-JEPA's ``apply_masks``)."""
    return jnp.take_along_axis(x, indices[..., None], axis=1)


class VisionTransformer(nn.Module):
    """Images or clips → patch tokens. Returns ``(tokens [batch, n, width], aux)``; ``aux``
    holds every block's output (``block_i``) so evaluators can pick intermediate layers by
    name."""

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
    # targets can be predicted from position alone — the collapse seen on MNIST). Tubelets use
    # the same rule with their s·p·p·C inputs (V-JEPA initializes its Conv3d like the 2D one).
    patch_embed_init: str = "reference"
    # Std in pixels of a fixed Gaussian low-pass applied before cutting patches (0 = off). Cutting
    # p-px patches samples the image at stride p; without a low-pass, a thin stroke's share of
    # each patch — and so every token — changes completely when it moves a few pixels (the
    # anti-aliasing argument of Zhang 2019, "Making Convolutional Networks Shift-Invariant
    # Again"). No parameters.
    patch_blur: float = 0.0
    # "patch": one linear map of each p × p patch (ViT). "conv": a convolutional stem of
    # log2(p) 3 × 3 stride-2 convolutions (channels doubling up to ``width``, each followed by
    # LayerNorm and GELU; Xiao et al. 2021, "Early Convolutions Help Transformers See Better")
    # whose output at each grid cell is that cell's token input. Its features move with the
    # image instead of being re-cut by a fixed patch grid; with warped views it is what let
    # level 1 learn the shape of moving digits (docs/results/hjepa.md). Images only.
    stem: str = "patch"
    # Video: frames per clip (0: an image model) and frames per tubelet (module doc).
    num_frames: int = 0
    tubelet_size: int = 2

    @nn.compact
    def __call__(
        self,
        images: jax.Array,
        token_indices: jax.Array | None = None,
        pos_embed: jax.Array | None = None,
    ):
        """images [batch, H, W, C] (or clips [batch, T, H, W, C]) normalized floats;
        token_indices [batch, k] or None (all).

        H and W may differ from ``image_size`` (multi-crop's small local views), and T from
        ``num_frames``: the sin-cos position embedding is then that of the input's own grid.
        ``pos_embed`` [tokens, width] (raster order) replaces the sin-cos table, e.g. a converted
        checkpoint's table resampled to a new resolution (``jepa.ijepa_import``).

        Clips: tokens [batch, (T/s)·h·w, width]; token_indices and pos_embed refer to the
        (T/s, h, w) grid."""
        if self.stem not in STEMS:
            raise ValueError(f"model.stem={self.stem!r}; valid: {STEMS}")
        if images.ndim not in (4, 5):
            raise ValueError(
                f"input of shape {images.shape}; valid: images [batch, H, W, C] or clips "
                "[batch, T, H, W, C]"
            )
        if images.ndim == 4 and self.num_frames:
            raise ValueError(
                f"images of shape {images.shape}: a tubelet encoder (model.num_frames="
                f"{self.num_frames}) takes clips [batch, T, H, W, C]"
            )
        x, pos = self._tokens(images.astype(self.dtype), pos_embed)
        return self._encode(x, pos, token_indices)

    def _tokens(self, images, pos_embed):
        """Images → (patches [batch, h·w, p·p·C], positions [h·w, width]); clips → (tubelets
        [batch, t·h·w, s·p·p·C], positions [t·h·w, width]). The positions are the sin-cos table
        of the input's grid, or the caller's ``pos_embed`` checked against its shape."""
        h, w = images.shape[-3:-1]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"images have spatial shape {(h, w)}, not divisible by model.patch_size="
                f"{self.patch_size}"
            )
        grid = (h // self.patch_size, w // self.patch_size)
        if self.patch_blur:
            images = layers.gaussian_blur(images, self.patch_blur)
        if images.ndim == 4:
            conv = self.stem == "conv"
            x = self._conv_stem(images) if conv else patchify(images, self.patch_size)
            sincos, what = layers.sincos_2d(self.width, *grid), f"images of spatial shape {(h, w)}"
        else:
            frames = images.shape[1]
            if self.tubelet_size < 1 or frames % self.tubelet_size:
                raise ValueError(
                    f"clips have {frames} frames, not divisible by model.tubelet_size="
                    f"{self.tubelet_size}"
                )
            if self.stem != "patch":
                raise ValueError(
                    f"model.stem={self.stem!r} is for images; tubelets (model.num_frames > 0) "
                    "take stem='patch'"
                )
            grid = (frames // self.tubelet_size, *grid)
            x = patchify_tubelets(images, self.tubelet_size, self.patch_size)
            sincos = layers.sincos_3d_uniform(self.width, *grid)
            what = f"clips of shape {(frames, h, w)} (a {grid} tubelet grid)"
        if pos_embed is not None and pos_embed.shape != sincos.shape:
            raise ValueError(f"pos_embed has shape {pos_embed.shape}; {what} need {sincos.shape}")
        return x, jnp.asarray(sincos if pos_embed is None else pos_embed, self.dtype)

    def _conv_stem(self, images):
        """Images [b, H, W, C] → [b, (H/p)·(W/p), width]: log2(p) stride-2 3 × 3 convs."""
        steps = self.patch_size.bit_length() - 1
        if self.patch_size < 2 or 2**steps != self.patch_size:
            raise ValueError(
                f"model.stem='conv' needs model.patch_size a power of 2 (>= 2), got "
                f"{self.patch_size}"
            )
        x = images
        for i in range(steps):
            # channels double at every stride: width / 2^(steps-1), …, width
            x = nn.Conv(
                max(self.width >> (steps - 1 - i), 1),
                (3, 3),
                strides=2,
                padding="SAME",
                dtype=self.dtype,
                kernel_init=nn.with_logical_partitioning(
                    nn.initializers.lecun_normal(), (None, None, None, None)
                ),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
                name=f"stem_conv{i}",
            )(x)
            x = layers.layer_norm(f"stem_norm{i}", self.dtype, axis=None)(x)
            x = nn.gelu(x, approximate=False)
        return x.reshape(x.shape[0], -1, x.shape[-1])

    def _encode(self, x, pos, token_indices):
        """patches [batch, n, d_in] → embed, add positions, keep ``token_indices``, blocks,
        final norm."""
        stds = {"reference": layers.INIT_STD, "fan_in": 1.0 / float(x.shape[-1]) ** 0.5}
        if self.patch_embed_init not in stds:
            valid = ", ".join(stds)
            raise ValueError(f"model.patch_embed_init={self.patch_embed_init!r}; valid: {valid}")
        std = stds[self.patch_embed_init]
        init = layers.trunc_normal_init(std, bound=2 * max(std, 1.0))
        embed = layers.dense(self.width, ("patch", "embed"), self.dtype, "patch_embed", init)
        x = embed(x) + pos[None]
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
