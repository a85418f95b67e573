"""Model construction from a config: one place that turns ``config.model`` into modules."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jepa import hardware
from jepa.models.predictor import Predictor
from jepa.models.projector import Projector
from jepa.models.vit import VisionTransformer

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str):
    """``model.dtype`` as a jnp dtype; ``auto``: the one chosen for this backend (a run stores
    the resolved name, see ``jepa.hardware.resolve_auto_dtype``)."""
    if name == "auto":
        name = hardware.auto_compute_dtype(jax.default_backend())[0]
    return DTYPES[name]


def build_encoder(config) -> VisionTransformer:
    m = config.model
    return VisionTransformer(
        image_size=(m.image_size, m.image_size),
        patch_size=m.patch_size,
        width=m.width,
        depth=m.depth,
        num_heads=m.num_heads,
        mlp_ratio=m.mlp_ratio,
        dtype=compute_dtype(m.dtype),
        remat=m.remat,
        attention_impl=m.attention_impl or None,
        patch_embed_init=m.patch_embed_init,
        patch_blur=m.patch_blur,
        stem=m.stem,
        num_frames=m.num_frames,
        tubelet_size=m.tubelet_size,
    )


def build_predictor(config, grid: tuple[int, ...]) -> Predictor:
    """The predictor of ``config.method.predictor`` on the token ``grid`` its positions index:
    (h, w) for images, (time, h, w) for clips; each method says which (``predictor_grid``)."""
    m, p = config.model, config.method.predictor
    return Predictor(
        grid=grid,
        out_width=m.width,
        width=p.width,
        depth=p.depth,
        num_heads=p.num_heads,
        mlp_ratio=m.mlp_ratio,
        dtype=compute_dtype(m.dtype),
        remat=m.remat,
        attention_impl=m.attention_impl or None,
    )


def build_projector(config) -> Projector:
    """The MLP of ``config.method.projector`` from a pooled embedding [batch, model.width]."""
    p = config.method.projector
    return Projector(
        hidden=p.hidden, depth=p.depth, out=p.out, dtype=compute_dtype(config.model.dtype)
    )
