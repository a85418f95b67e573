"""Model construction from a config: one place that turns ``config.model`` into modules."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jepa import hardware
from jepa.models.predictor import Predictor
from jepa.models.projector import Projector
from jepa.models.vit import VisionTransformer


def compute_dtype(name: str):
    """``model.dtype`` (one of ``jepa.config.DTYPES``) as a jnp dtype; ``auto``: the one chosen for
    this backend (a run stores the resolved name, see ``jepa.hardware.resolve_auto_dtype``)."""
    if name == "auto":
        name = hardware.auto_compute_dtype(jax.default_backend())[0]
    return jnp.dtype(name)


# config.model keys that are VisionTransformer fields of the same name.
ENCODER_KEYS = (
    "patch_size width depth num_heads patch_embed_init patch_blur stem num_frames tubelet_size"
).split()


def _block_kwargs(m) -> dict:
    """What the encoder's and the predictor's transformer blocks take from ``config.model``."""
    return dict(
        mlp_ratio=m.mlp_ratio,
        dtype=compute_dtype(m.dtype),
        remat=m.remat,
        attention_impl=m.attention_impl or None,
    )


def build_encoder(config) -> VisionTransformer:
    m = config.model
    fields = {k: m[k] for k in ENCODER_KEYS}
    return VisionTransformer(image_size=(m.image_size, m.image_size), **fields, **_block_kwargs(m))


def build_predictor(config, grid: tuple[int, ...]) -> Predictor:
    """The predictor of ``config.method.predictor`` on the token ``grid`` its positions index:
    (h, w) for images, (time, h, w) for clips; each method says which (``predictor_grid``)."""
    m = config.model  # the predictor section's keys are Predictor's width, depth, num_heads
    return Predictor(grid, out_width=m.width, **config.method.predictor, **_block_kwargs(m))


def build_projector(config) -> Projector:
    """The MLP of ``config.method.projector`` (its keys are Projector's fields) from a pooled
    embedding [batch, model.width]."""
    return Projector(**config.method.projector, dtype=compute_dtype(config.model.dtype))
