"""Energies D(s_y, ŝ_y) between target and predicted representations, target normalization,
and the anti-collapse terms every method can add (VICReg, SIGReg) with the way they
are sampled and weighted from ``config.method.loss``.

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
        raise ValueError(f"method.loss.energy={name!r}; valid: {sorted(ENERGY_FNS)}")
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


# --- Anti-collapse regularizers on embeddings [samples, dim] -----------------------------------
#
# All statistics are over the sample axis of the *global* batch: under ``jit`` with the batch
# sharded over the mesh, ``mean(axis=0)`` is a cross-device reduction that XLA inserts itself,
# so the value is the single-device value whatever the mesh (tested on 8 simulated devices).


def region_means(tokens: jax.Array, grid: int, regions: int) -> jax.Array:
    """[..., grid², dim] raster tokens → [..., regions², dim]: the tokens averaged over each of
    regions × regions equal squares of the grid (``regions`` must divide ``grid``)."""
    *lead, n, d = tokens.shape
    s = grid // regions
    squares = tokens.reshape(*lead, regions, s, regions, s, d).mean((-4, -2))
    return squares.reshape(*lead, regions * regions, d)


def vicreg_variance(z: jax.Array, gamma: float = 1.0, eps: float = 1e-4) -> jax.Array:
    """VICReg variance hinge: mean over dims of ``relu(γ − sqrt(Var(z_d) + ε))`` (unbiased Var,
    as in Bardes et al. 2022). Zero when every dimension has std ≥ γ across samples."""
    std = jnp.sqrt(jnp.var(z, axis=0, ddof=1) + eps)
    return jax.nn.relu(gamma - std).mean()


def vicreg_covariance(z: jax.Array) -> jax.Array:
    """VICReg covariance penalty: squared off-diagonal covariances summed, divided by dim."""
    n, d = z.shape
    zc = z - z.mean(axis=0, keepdims=True)
    cov = (zc.T @ zc) / (n - 1)
    off_diagonal = cov - jnp.diag(jnp.diag(cov))
    return jnp.square(off_diagonal).sum() / d


def epps_pulley(projections: jax.Array, t_max: float = 5.0, num_points: int = 17) -> jax.Array:
    """Epps–Pulley statistic of each column of ``projections`` [n, m] against N(0, 1).

    ``n ∫ |φ̂(t) − e^{−t²/2}|² e^{−t²/2} dt``, with φ̂ the empirical characteristic function,
    integrated by the trapezoid rule on ``num_points`` points in [−t_max, t_max] (LeJEPA's
    SIGReg). Returns one value per column; 0 for a perfect Gaussian, large for a collapsed one.
    """
    n = projections.shape[0]
    t = jnp.linspace(-t_max, t_max, num_points)
    gauss = jnp.exp(-0.5 * t * t)
    xt = projections[..., None] * t  # [n, m, T]
    ecf_real, ecf_imag = jnp.cos(xt).mean(0), jnp.sin(xt).mean(0)  # [m, T]
    err = (jnp.square(ecf_real - gauss) + jnp.square(ecf_imag)) * gauss
    return jnp.trapezoid(err, t, axis=-1) * n


def sigreg(z: jax.Array, key: jax.Array, num_slices: int = 256) -> jax.Array:
    """SIGReg (Balestriero & LeCun, LeJEPA 2025): the mean Epps–Pulley statistic of ``z`` [n, d]
    projected on ``num_slices`` random unit directions. Pass a key derived from the step so
    that the directions are re-drawn every step and identical on every device."""
    directions = jax.random.normal(key, (z.shape[-1], num_slices), jnp.float32)
    directions = directions / jnp.linalg.norm(directions, axis=0, keepdims=True)
    return epps_pulley(z @ directions).mean()


# --- The information terms as ``config.method.loss`` enables and weights them -----------------


def feature_std(features: jax.Array) -> jax.Array:
    """Mean over feature dims of the std across samples; [batch, dim] → scalar.

    Falls towards 0 when the representation collapses to a constant."""
    return jnp.std(features.astype(jnp.float32), axis=0).mean()


def information_terms(z: jax.Array, loss_config, key: jax.Array) -> dict:
    """The enabled anti-collapse terms on embeddings ``z`` [samples, dim], unweighted, keyed by
    the name of their weight in ``config.method.loss``."""
    terms = {}
    if loss_config.vicreg_var:
        terms["vicreg_var"] = vicreg_variance(z, loss_config.vicreg_gamma)
    if loss_config.vicreg_cov:
        terms["vicreg_cov"] = vicreg_covariance(z)
    if loss_config.sigreg:
        terms["sigreg"] = sigreg(z, key, loss_config.sigreg_slices)
    return terms


def mean_terms(per_group: list[dict]) -> dict:
    """{name: mean over the groups} of several ``information_terms`` results (views, masks)."""
    return {name: jnp.mean(jnp.stack([t[name] for t in per_group])) for name in per_group[0]}


def weighted_sum(terms: dict, loss_config):
    """Σ weight · term, each term weighted by the ``config.method.loss`` key it is named after."""
    return sum(loss_config[name] * value for name, value in terms.items())


def regularizer_terms(embeddings: jax.Array, loss_config, key: jax.Array):
    """The information terms on ``embeddings`` [batch, tokens, dim]: (their weighted sum,
    {name: value}). ``method.loss.regularize`` picks the samples they see: ``pooled``, one mean
    embedding per image (information about the image as a whole), or ``tokens``, every token."""
    pooled = loss_config.regularize == "pooled"
    samples = embeddings.mean(axis=1) if pooled else embeddings.reshape(-1, embeddings.shape[-1])
    terms = information_terms(samples, loss_config, key)
    return weighted_sum(terms, loss_config), terms
