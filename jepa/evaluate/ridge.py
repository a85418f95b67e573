"""Closed-form ridge regression over a grid of strengths, from one SVD.

With an unpenalized intercept, ridge on (x, y) is ridge without one on the centered
xc = x − x̄, yc = y − ȳ: w = (xcᵀxc + λI)⁻¹ xcᵀyc, b = ȳ − x̄ w. With xc = U S Vᵀ this is
w = V diag(s / (s² + λ)) Uᵀyc, so one SVD serves every λ. Leave-one-out predictions come for
free: the hat matrix is H = U diag(s²/(s²+λ)) Uᵀ + 11ᵀ/n, and the prediction for sample i fitted
without it is (ŷᵢ − hᵢᵢ yᵢ)/(1 − hᵢᵢ).

λ = alpha × a scale of the features, so a grid means the same thing whatever their size:
``spectrum`` (the mean squared singular value of xc; the few-shot probe) or ``gram`` (the mean
diagonal entry of [x 1]ᵀ[x 1]; the hierarchy's regressions). Everything here runs on numpy
arrays (float64 as given) or, under ``jax.jit``, on jax arrays.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

SCALES = ("spectrum", "gram")


def ridge_path(x, y, alphas, scale: str = "spectrum", loo: bool = True):
    """Ridge fits of y [n, k] on x [n, f] for every alpha: (weights [a, f, k], bias [a, k],
    leave-one-out predictions [a, n, k], or None without ``loo``)."""
    xp = jnp if isinstance(x, jax.Array) else np
    einsum = functools.partial(xp.einsum, optimize=True)
    n, f = x.shape
    mu_x, mu_y = x.mean(0), y.mean(0)
    xc, yc = x - mu_x, y - mu_y
    u, s, vt = xp.linalg.svd(xc, full_matrices=False)
    if scale == "spectrum":
        unit = xp.mean(s**2)
    elif scale == "gram":
        unit = (xp.sum(x**2) + n) / (f + 1)
    else:
        raise ValueError(f"ridge scale={scale!r}; valid: {SCALES}")
    lams = xp.asarray(alphas, s.dtype) * unit
    shrink = s[None] ** 2 / (s[None] ** 2 + lams[:, None])  # [a, r]
    uty = u.T @ yc  # [r, k]
    weights = einsum("rf,ar,rk->afk", vt, shrink / xp.where(s > 0, s, 1.0)[None], uty)
    bias = mu_y[None] - einsum("f,afk->ak", mu_x, weights)
    if not loo:
        return weights, bias, None
    fitted = einsum("nr,ar,rk->ank", u, shrink, uty) + mu_y
    leverage = einsum("nr,ar->an", u**2, shrink) + 1.0 / n
    held_out = (fitted - leverage[..., None] * y[None]) / xp.maximum(1 - leverage[..., None], 1e-6)
    return weights, bias, held_out


_ridge_path_jit = jax.jit(ridge_path, static_argnames=("scale", "loo"))


def ridge_classifier(x, y, num_classes: int, alphas) -> dict:
    """One-hot ridge for every alpha (``spectrum`` scale, on the device), keeping the one with
    the best leave-one-out accuracy: {w, b, alpha, loo_top1}."""
    y1 = jax.nn.one_hot(jnp.asarray(y), num_classes)
    w, b, loo = _ridge_path_jit(jnp.asarray(x, jnp.float32), y1, jnp.asarray(alphas, jnp.float32))
    loo_acc = np.asarray((loo.argmax(-1) == jnp.asarray(y)[None]).mean(-1))
    best = int(np.argmax(loo_acc))
    return {"w": w[best], "b": b[best], "alpha": float(alphas[best]), "loo_top1": loo_acc[best]}


def r2(pred, y) -> float:
    """1 − SSE/SST, pooled over the outputs."""
    return float(1.0 - ((pred - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def _standardizer(train_x):
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    return lambda x: (np.asarray(x, np.float64) - mu) / sd


def ridge_r2(train_x, train_y, test_x, test_y, alphas=(1e-3, 1e-2, 1e-1, 1.0, 10.0)) -> dict:
    """Ridge regression of standardized features onto ``y`` [n, outputs] (``gram`` scale),
    alpha chosen by R² on the last 10% of the train rows, refitted on all of them: the test
    R² and the alpha."""
    z = _standardizer(train_x)
    xs, ts = z(train_x), z(test_x)
    train_y = np.asarray(train_y, np.float64)
    n_val = max(len(xs) // 10, 1)
    w, b, _ = ridge_path(xs[:-n_val], train_y[:-n_val], alphas, "gram", loo=False)
    val = [r2(xs[-n_val:] @ w[a] + b[a], train_y[-n_val:]) for a in range(len(alphas))]
    alpha = alphas[int(np.argmax(val))]
    w, b, _ = ridge_path(xs, train_y, [alpha], "gram", loo=False)
    return {"r2": r2(ts @ w[0] + b[0], test_y), "alpha": alpha}


def ridge_map(train_x, train_y, alpha: float = 1e-2):
    """A fitted ridge map x → y (standardized x, ``gram`` scale), as a function."""
    z = _standardizer(train_x)
    w, b, _ = ridge_path(z(train_x), np.asarray(train_y, np.float64), [alpha], "gram", False)
    return lambda x: z(x) @ w[0] + b[0]
