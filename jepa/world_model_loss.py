"""The action-conditioned JEPA objective over trajectory windows (eb_jepa's ``ac_video_jepa``
terms, written for ``jepa.models.world_model.WorldModel``).

A batch is ``observations`` [B, T+1, S, S, C] and ``actions`` [B, T, A], action t taking frame t
to frame t+1. Every frame is encoded (z [B, T+1, D]); the predictor is unrolled open loop from
z_0 over the T actions (ẑ_1 .. ẑ_T, each from the previous prediction, as a planner uses it).

    loss = prediction · mean_t,b,d (ẑ_t − z_t)²            multi-step rollout error
         + variance · mean_d relu(1 − sqrt(Var_n z_d + 1e-4))      anti-collapse (VICReg)
         + covariance · mean_{i≠j} Cov(z)_ij²                decorrelated features (VICReg)
         + time_similarity · mean_t,b,d (z_{t+1} − z_t)²    consecutive frames close
         + inverse_dynamics · mean_t,b,a (IDM(z_t, z_{t+1}) − a_t)²

Variance and covariance pool every frame of the batch as samples (B·(T+1) of them), as
eb_jepa does with ``first_t_only: false``. The prediction target keeps its gradient by default
(eb_jepa's choice: the variance and covariance terms, not a stop-gradient, keep the encoder
from collapsing); ``stop_gradient_target=True`` detaches it. A weight of 0 removes its term
from the loss (the value is still reported).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jepa import objectives


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """eb_jepa's best random-wall coefficients (cov 8, std 16, sim_t 12, idm 1)."""

    prediction: float = 1.0
    variance: float = 16.0
    covariance: float = 8.0
    time_similarity: float = 12.0
    inverse_dynamics: float = 1.0
    stop_gradient_target: bool = False


def variance_loss(z: jax.Array, margin: float = 1.0, eps: float = 1e-4) -> jax.Array:
    """z [..., D], samples pooled over the leading axes: the mean over features of
    relu(margin − std), std the unbiased one with ``eps`` added to the variance."""
    return objectives.vicreg_variance(z.reshape(-1, z.shape[-1]), margin, eps)


def covariance_loss(z: jax.Array) -> jax.Array:
    """z [..., D], samples pooled: the mean of the D·(D−1) squared off-diagonal (unbiased)
    covariances, 0 for one feature. eb_jepa's normalization, so its coefficients carry over:
    ``objectives.vicreg_covariance`` divides their sum by D as VICReg does, this by D − 1 more."""
    d = z.shape[-1]
    return objectives.vicreg_covariance(z.reshape(-1, d)) / max(d - 1, 1)


def unroll(predict, state: jax.Array, actions: jax.Array) -> jax.Array:
    """``predict(s [N, D], a [N, A]) -> s'``, state [N, D], actions [N, T, A] -> the open-loop
    predictions [N, T, D]."""

    def body(s, a):
        s = predict(s, a)
        return s, s

    _, states = jax.lax.scan(body, state, jnp.swapaxes(actions, 0, 1))
    return jnp.swapaxes(states, 0, 1)


def world_model_loss(params, model, observations, actions, weights: LossWeights = LossWeights()):
    """(loss, aux): aux holds every term unweighted, and the rollout error per step
    (``prediction_per_step`` [T])."""
    z = model.apply(params, observations, method="encode")
    target = jax.lax.stop_gradient(z[:, 1:]) if weights.stop_gradient_target else z[:, 1:]
    predicted = unroll(functools.partial(model.apply, params, method="predict"), z[:, 0], actions)
    per_step = jnp.mean((predicted - target) ** 2, axis=(0, 2))
    inverse = model.apply(params, z[:, :-1], z[:, 1:], method="inverse")
    terms = {
        "prediction": jnp.mean(per_step),
        "variance": variance_loss(z),
        "covariance": covariance_loss(z),
        "time_similarity": jnp.mean((z[:, 1:] - z[:, :-1]) ** 2),
        "inverse_dynamics": jnp.mean((inverse - actions) ** 2),
    }
    loss = sum(
        getattr(weights, name) * value for name, value in terms.items() if getattr(weights, name)
    )
    return loss, {**terms, "loss": loss, "prediction_per_step": per_step}
