"""Energies D(s_y, ŝ_y) between target and predicted representations, and target normalization.

Each energy returns one value per token (averaged over the feature axis), so that callers can
average over tokens, or take a minimum over latent samples per token or per block.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def smooth_l1_energy(pred: jax.Array, target: jax.Array, beta: float = 1.0) -> jax.Array:
    """PyTorch's ``smooth_l1_loss`` per token: 0.5·d²/β where |d| < β, else |d| − 0.5·β."""
    d = jnp.abs(pred - target)
    return jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta).mean(-1)


def l1_energy(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.abs(pred - target).mean(-1)


def l2_energy(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.square(pred - target).mean(-1)


def cosine_energy(pred: jax.Array, target: jax.Array, eps: float = 1e-6) -> jax.Array:
    """1 − cos(pred, target) per token."""
    num = (pred * target).sum(-1)
    den = jnp.linalg.norm(pred, axis=-1) * jnp.linalg.norm(target, axis=-1)
    return 1.0 - num / jnp.maximum(den, eps)


ENERGY_FNS = {
    "smooth_l1": smooth_l1_energy,
    "l1": l1_energy,
    "l2": l2_energy,
    "cosine": cosine_energy,
}


def energy_fn(name: str):
    if name not in ENERGY_FNS:
        raise ValueError(f"loss.energy={name!r}; valid: {sorted(ENERGY_FNS)}")
    return ENERGY_FNS[name]


def normalize_targets(features: jax.Array, eps: float = 1e-5) -> jax.Array:
    """LayerNorm without affine over the feature axis (I-JEPA's ``F.layer_norm(h, (D,))``).

    Normalizing each target token removes the trivial way to lower the energy (shrinking all
    target features), and puts every token on the same scale for the smooth-L1 threshold.
    The epsilon is PyTorch's ``F.layer_norm`` default, as in the reference.
    """
    mean = features.mean(-1, keepdims=True)
    var = jnp.square(features - mean).mean(-1, keepdims=True)
    return (features - mean) * jax.lax.rsqrt(var + eps)
