"""Representation health: effective rank (RankMe), per-dimension std, mean pairwise cosine.

Collapse shows up as a per-dimension std falling to 0 (complete collapse) or as an effective
rank far below the width (dimensional collapse); both are computed on pooled embeddings
[samples, dim] of a fixed batch during pretraining and raise an alarm below their floors.

Two effective ranks are reported. ``rankme`` is RankMe as Garrido et al. (2023) define it, on the
embedding matrix itself, comparable with the paper's numbers. The rank alarm reads
``rankme_centered``, RankMe of the embeddings minus their batch mean: on uncentred features a
mean vector shared by every sample is one more singular direction, and when it is large next to
the spread (mean-pooled tokens of a small ViT: the position embeddings and LayerNorm offsets
every image shares) it dominates the singular values, so RankMe reads little more than 1 for a
healthy encoder whose features do vary in many directions (1.3 after 40 steps of a healthy
tiny MNIST run whose centred rank is 6), and about the same for a collapsed one. The mean says
nothing about which image a feature came from; removing it leaves the directions the samples
vary in, which is what dimensional collapse takes away. (Complete collapse leaves only
numerical noise to centre, whose rank can read high: the std alarm is the one for it.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jepa import objectives


def rankme(embeddings: jax.Array, eps: float = 1e-7) -> jax.Array:
    """exp(entropy of the normalized singular values) (Garrido et al., 2023). [n, d] → scalar."""
    s = jnp.linalg.svd(embeddings.astype(jnp.float32), compute_uv=False)
    p = s / (s.sum() + eps) + eps
    return jnp.exp(-(p * jnp.log(p)).sum())


def rankme_centered(embeddings: jax.Array, eps: float = 1e-7) -> jax.Array:
    """RankMe of the embeddings minus their mean over samples: the number of directions the
    samples vary in (the module docstring says why the alarm reads this one). [n, d] → scalar."""
    x = embeddings.astype(jnp.float32)
    return rankme(x - x.mean(0, keepdims=True), eps)


# Std across samples of each dimension, averaged over dimensions: [n, d] → scalar.
per_dim_std = objectives.feature_std


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
        "rankme_centered": rankme_centered(embeddings),
        "feature_std": per_dim_std(embeddings),
        "mean_cosine": mean_cosine(embeddings),
    }


def collapse_alarms(metrics: dict, min_std: float, min_rank: float) -> list[str]:
    """Human-readable alarms for the metrics below their floors (empty when healthy): the
    per-dimension std against ``min_std``, the centred effective rank against ``min_rank``."""
    alarms = []
    if float(metrics["feature_std"]) < min_std:
        alarms.append(f"feature std {float(metrics['feature_std']):.4g} < {min_std}")
    rank = float(metrics["rankme_centered"])
    if rank < min_rank:
        alarms.append(f"effective rank (centred) {rank:.2f} < {min_rank}")
    return alarms
