"""The upper levels of a hierarchical JEPA: a causal transformer over a sequence of embeddings,
and the small predictor that maps its state at time t to the state ``horizon`` steps later.

Level k+1 of an H-JEPA reads level k's embeddings, one vector per time step (or per window of
steps), and must only see the past: its state at step t is a summary of steps ≤ t, so
"context = the past, target = the future" holds by construction and one pass gives a
prediction from every t at once. Positions are fixed 1-D sin-cos embeddings over time.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jepa.models import layers


class CausalBlock(nn.Module):
    """Pre-norm block whose attention only looks back in time (step t sees steps ≤ t)."""

    num_heads: int
    mlp_ratio: float = 4.0
    layer_id: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, length, width = x.shape
        head_dim = width // self.num_heads
        scale = 1.0 / math.sqrt(2.0 * self.layer_id)  # the same depth rescale as the ViT
        h = layers.layer_norm("norm1", self.dtype)(x)
        qkv = layers.dense(3 * width, ("embed", "mlp"), self.dtype, "qkv")(h)
        q, k, v = jnp.split(qkv.reshape(b, length, 3 * self.num_heads, head_dim), 3, axis=2)
        out = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        proj_init = layers.trunc_normal_init(layers.INIT_STD * scale)
        proj = layers.dense(width, ("mlp", "embed"), self.dtype, "proj", proj_init)
        x = x + proj(out.reshape(b, length, width))
        mlp = layers.Mlp(int(width * self.mlp_ratio), scale, self.dtype, name="mlp")
        x = x + mlp(layers.layer_norm("norm2", self.dtype)(x))
        return layers.constrain(x, ("act_batch", "act_length", "act_embed"))


class SequenceEncoder(nn.Module):
    """[batch, steps, in_width] → [batch, steps, width]: input projection, 1-D sin-cos time
    positions, ``depth`` causal blocks, final LayerNorm."""

    width: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        steps = x.shape[1]
        # The input is another network's embedding, with its own scale: normalize it first.
        x = layers.layer_norm("input_norm", self.dtype)(x.astype(self.dtype))
        x = layers.dense(self.width, ("mlp", "embed"), self.dtype, "embed")(x)
        pos = layers.sincos_1d(self.width, np.arange(steps))
        x = x + jnp.asarray(pos, self.dtype)[None]
        x = layers.constrain(x, ("act_batch", "act_length", "act_embed"))
        for i in range(self.depth):
            x = CausalBlock(self.num_heads, self.mlp_ratio, i + 1, self.dtype, name=f"block_{i}")(x)
        return layers.layer_norm("norm", self.dtype)(x)


class StepPredictor(nn.Module):
    """ŝ(t + h) = MLP(s(t) + horizon embedding) for every step t at once.

    ``horizons`` are the steps ahead this level predicts; each has a learned embedding, so one
    network serves all of them."""

    out_width: int
    horizons: tuple[int, ...]
    hidden: int = 256
    depth: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, s: jax.Array) -> jax.Array:
        """s [batch, steps, width] → [batch, len(horizons), steps, out_width]."""
        h = layers.dense(self.hidden, ("embed", "mlp"), self.dtype, "embed")(s.astype(self.dtype))
        horizon = self.param(
            "horizon_embedding",
            nn.with_logical_partitioning(layers.trunc_normal_init(), (None, "mlp")),
            (len(self.horizons), self.hidden),
        )
        h = h[:, None] + horizon.astype(self.dtype)[None, :, None]
        for i in range(self.depth):
            fc = layers.dense(self.hidden, ("embed", "mlp"), self.dtype, f"fc_{i}")
            h = h + fc(nn.gelu(layers.layer_norm(f"norm_{i}", self.dtype)(h), approximate=False))
        h = layers.layer_norm("norm", self.dtype)(h)
        return layers.dense(self.out_width, ("mlp", "embed"), self.dtype, "proj")(h)
