"""Attentive probe (the V-JEPA protocol): a learned query cross-attends to the frozen tokens.

V-JEPA's ``AttentiveClassifier``: one learned query token; a cross-attention block in which the
query attends to the LayerNorm-ed tokens (keys and values), followed by a pre-norm MLP on the
query, both residual; then a linear head on the query. Trained with AdamW (decoupled weight
decay, warmup then cosine), a whole LR × WD grid at once (``grid.py``). It reads token features
[n, tokens, width] (``eval.pooling = "none"``), so a representation whose class information is
spread over tokens — not linearly in their average — is not under-rated.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jepa.evaluate import grid
from jepa.models import layers


class AttentivePooler(nn.Module):
    num_heads: int
    num_classes: int
    mlp_ratio: float = 4.0

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        """tokens [batch, n, width] → logits [batch, num_classes]."""
        b, _, width = tokens.shape
        if width % self.num_heads:
            raise ValueError(f"feature width {width} is not divisible by {self.num_heads} heads")
        head_dim = width // self.num_heads
        init = layers.trunc_normal_init()
        dense = lambda feats, name: nn.Dense(feats, kernel_init=init, name=name)
        query = self.param("query", init, (1, 1, width))
        q = jnp.broadcast_to(query, (b, 1, width))
        kv = nn.LayerNorm(epsilon=layers.LAYER_NORM_EPS, name="norm1")(tokens)
        split = lambda x: x.reshape(*x.shape[:2], self.num_heads, head_dim)
        qh = split(dense(width, "q")(q)) * head_dim**-0.5
        k, v = jnp.split(dense(2 * width, "kv")(kv), 2, axis=-1)
        weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", qh, split(k)), axis=-1)
        attended = jnp.einsum("bhqk,bkhd->bqhd", weights, split(v)).reshape(b, 1, width)
        q = q + dense(width, "proj")(attended)
        h = nn.LayerNorm(epsilon=layers.LAYER_NORM_EPS, name="norm2")(q)
        h = dense(int(width * self.mlp_ratio), "fc1")(h)
        q = q + dense(width, "fc2")(nn.gelu(h, approximate=False))
        return dense(self.num_classes, "head")(q[:, 0])


def _make_probe(num_heads: int):
    def make(num_classes: int, feature_shape: tuple):
        module = AttentivePooler(num_heads, num_classes)
        dummy = jnp.zeros((1, *feature_shape), jnp.float32)
        init = lambda key: module.init(key, dummy)["params"]
        apply = lambda p, x: module.apply({"params": p}, x)
        return init, apply

    return make


def _adamw(lr, wd, total):
    warmup = max(1, total // 10)
    # lr is traced (one grid member under vmap): scale a unit schedule rather than passing it
    # as optax's peak value, which the schedule inspects in Python.
    unit = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, total)
    return optax.adamw(lambda step: lr * unit(step), weight_decay=wd)


def attentive_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    num_heads: int,
    lrs=(3e-4, 1e-3, 3e-3),
    wds=(0.01, 0.1),
    epochs: int = 20,
    **options,
) -> dict:
    """Token features [n, tokens, width]; ``options`` (``batch_size``, ``val_fraction``,
    ``seed``) and the returned dict are ``grid.select_and_evaluate``'s."""
    if train_x.ndim != 3:
        raise ValueError(
            f"the attentive probe reads token features [n, tokens, width], got shape "
            f"{train_x.shape}: set eval.pooling=none"
        )
    # The encoder's head count divides its width (checked with the config); raw-pixel tokens
    # (p·p·C wide, e.g. 49) get the largest head count that divides theirs.
    width = train_x.shape[-1]
    num_heads = max(h for h in range(1, num_heads + 1) if width % h == 0)
    out = grid.select_and_evaluate(
        train_x.astype(np.float32),
        train_y,
        test_x.astype(np.float32),
        test_y,
        make_probe=_make_probe(num_heads),
        make_tx=_adamw,
        lrs=lrs,
        wds=wds,
        epochs=epochs,
        **options,
    )
    return {**out, "heads": num_heads}
