"""I-JEPA's narrow transformer predictor.

Context tokens are projected to the predictor width and given their position embeddings; for
each target block, one shared learned mask token plus the embedding of each target position is
appended; after the blocks and a norm, the target slots are projected back to encoder width.
Each target block is predicted in its own sequence (the context repeated per block), exactly as
the reference does, so blocks cannot see each other's queries.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jepa.models import layers


class Predictor(nn.Module):
    grid: tuple[int, ...]  # (h, w) for images; (t, h, w) for video
    out_width: int  # encoder width
    width: int = 384
    depth: int = 6
    num_heads: int = 6
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32
    remat: str = "none"
    attention_impl: str | None = None

    @nn.compact
    def __call__(
        self,
        context: jax.Array,
        context_indices: jax.Array,
        target_indices: jax.Array,
        z_embedding: jax.Array | None = None,
    ) -> jax.Array:
        """context [batch, n_ctx, out_width] (the context encoder's output) at grid positions
        context_indices [batch, n_ctx] → predictions [batch, n_blocks, n_tgt, out_width] at the
        grid positions target_indices [batch, n_blocks, n_tgt]. z_embedding [batch, n_blocks,
        width], if given, is added to every mask token of a block (the latent variable z of an
        energy-based JEPA)."""
        b, n_blocks, n_tgt = target_indices.shape
        make_pos = layers.sincos_2d if len(self.grid) == 2 else layers.sincos_3d
        pos = jnp.asarray(make_pos(self.width, *self.grid), self.dtype)  # [n_grid, width]

        embed = layers.dense(self.width, ("embed", "mlp"), self.dtype, "embed")
        x = embed(context.astype(self.dtype)) + pos[context_indices]
        # One sequence per target block: [batch * n_blocks, n_ctx, width].
        x = jnp.repeat(x, n_blocks, axis=0)

        # [1, 1, width] like the reference, so it gets weight decay like the reference's 3-D token.
        mask_token = self.param(
            "mask_token",
            nn.with_logical_partitioning(layers.trunc_normal_init(), (None, None, "embed")),
            (1, 1, self.width),
        )
        queries = mask_token.astype(self.dtype) + pos[target_indices]  # [b, blocks, tgt, width]
        if z_embedding is not None:
            queries = queries + z_embedding[:, :, None, :].astype(self.dtype)
        queries = queries.reshape(b * n_blocks, n_tgt, self.width)

        x = jnp.concatenate([x, queries], axis=1)
        x = layers.constrain(x, ("act_batch", "act_length", "act_embed"))
        x = layers.stack_blocks(
            x,
            self.depth,
            self.num_heads,
            self.mlp_ratio,
            self.dtype,
            self.remat,
            self.attention_impl,
            # Only the mask tokens' outputs are read: the last block skips the context's
            # queries and MLP (5% of an S/16 step's FLOPs; identical predictions).
            last_block_outputs=n_tgt,
        )
        # depth 0 is the trivial predictor: the mask tokens never see the context, so a
        # prediction can only depend on position (and z) — the ablation that lets an encoder
        # without an EMA target collapse (tests/test_train.py).
        x = x[:, -n_tgt:]
        x = layers.layer_norm("norm", self.dtype)(x)
        x = layers.dense(self.out_width, ("mlp", "embed"), self.dtype, "proj")(x)
        return x.reshape(b, n_blocks, n_tgt, self.out_width)
