"""The multiview objective's projector: pooled encoder output → the space where views meet.

As in LeJEPA (and SimCLR/VICReg before it), the views are compared and regularized after a
small MLP rather than on the encoder's output directly, so the invariance and Gaussianity the
loss imposes land on the projection while the encoder keeps the information the probe reads.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jepa.models import layers


class Projector(nn.Module):
    """``depth`` × (Dense(hidden) → LayerNorm → GELU), then Dense(out)."""

    hidden: int = 512
    depth: int = 2
    out: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # Small and replicated (no sharded axes); flax's default (LeCun normal) init, as the
        # reference ViT init is not defined for it.
        def dense(features, name):
            init = nn.initializers.lecun_normal()
            return layers.dense(features, (None, None), self.dtype, name, init)

        x = x.astype(self.dtype)
        for i in range(self.depth):
            x = dense(self.hidden, f"fc{i}")(x)
            x = layers.layer_norm(f"norm{i}", self.dtype, axis=None)(x)
            x = nn.gelu(x, approximate=False)
        return dense(self.out, "out")(x)
