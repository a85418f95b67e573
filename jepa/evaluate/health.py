"""Representation health: effective rank (RankMe), per-dimension std, mean pairwise cosine.

Collapse shows up as a per-dimension std falling to 0 (complete collapse) or as an effective
rank far below the width (dimensional collapse); both are computed on pooled embeddings
[samples, dim] of a fixed batch during pretraining and raise an alarm below their floors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rankme(embeddings: jax.Array, eps: float = 1e-7) -> jax.Array:
    """exp(entropy of the normalized singular values) (Garrido et al., 2023). [n, d] → scalar."""
    s = jnp.linalg.svd(embeddings.astype(jnp.float32), compute_uv=False)
    p = s / (s.sum() + eps) + eps
    return jnp.exp(-(p * jnp.log(p)).sum())


def per_dim_std(embeddings: jax.Array) -> jax.Array:
    """Std across samples of each dimension, averaged over dimensions. [n, d] → scalar."""
    return jnp.std(embeddings.astype(jnp.float32), axis=0).mean()


def mean_cosine(embeddings: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Mean cosine similarity over distinct pairs; near 1 when all samples look alike."""
    x = embeddings.astype(jnp.float32)
    x = x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + eps)
    n = x.shape[0]
    total = jnp.square(x.sum(0)).sum()  # sum over all ordered pairs incl. i == j
    return (total - n) / (n * (n - 1))


def health_metrics(embeddings: jax.Array) -> dict[str, jax.Array]:
    return {
        "rankme": rankme(embeddings),
        "feature_std": per_dim_std(embeddings),
        "mean_cosine": mean_cosine(embeddings),
    }


def collapse_alarms(metrics: dict, min_std: float, min_rank: float) -> list[str]:
    """Human-readable alarms for the metrics below their floors (empty when healthy)."""
    alarms = []
    if float(metrics["feature_std"]) < min_std:
        alarms.append(f"feature std {float(metrics['feature_std']):.4g} < {min_std}")
    if float(metrics["rankme"]) < min_rank:
        alarms.append(f"effective rank {float(metrics['rankme']):.2f} < {min_rank}")
    return alarms
