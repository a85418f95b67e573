"""Slow, obvious NumPy restatements of the method's formulas, written from their definitions
(I-JEPA's ``F.layer_norm`` + ``smooth_l1_loss``; VICReg, Bardes et al. 2022; LeJEPA's SIGReg)
with explicit loops, for tests to recompute the step's numbers without the package's code."""

import math

import numpy as np


def layer_norm(x, eps: float = 1e-5) -> np.ndarray:
    """LayerNorm without affine over the last axis, one vector at a time (float64)."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    for idx in np.ndindex(*x.shape[:-1]):
        v = x[idx]
        mean = sum(v) / len(v)
        var = sum((e - mean) ** 2 for e in v) / len(v)
        out[idx] = (v - mean) / math.sqrt(var + eps)
    return out


def smooth_l1(pred, target, beta: float = 1.0) -> float:
    """PyTorch's ``smooth_l1_loss`` (mean reduction) over every element."""
    d = np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64)).ravel()
    return float(np.mean([0.5 * e * e / beta if e < beta else e - 0.5 * beta for e in d]))


def squared_error(pred, target) -> float:
    d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return float(np.mean(d * d))


def vicreg_variance(z, gamma: float = 1.0, eps: float = 1e-4) -> float:
    """mean over dims of max(0, γ − sqrt(unbiased variance + ε))."""
    z = np.asarray(z, np.float64)
    n, d = z.shape
    hinges = []
    for j in range(d):
        col = z[:, j]
        mean = col.sum() / n
        var = ((col - mean) ** 2).sum() / (n - 1)
        hinges.append(max(0.0, gamma - math.sqrt(var + eps)))
    return float(np.mean(hinges))


def vicreg_covariance(z) -> float:
    """Σ_{i≠j} Cov(z_i, z_j)² / dim, unbiased covariances."""
    z = np.asarray(z, np.float64)
    n, d = z.shape
    mean = z.mean(0)
    total = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                cov = ((z[:, i] - mean[i]) * (z[:, j] - mean[j])).sum() / (n - 1)
                total += cov * cov
    return total / d


def epps_pulley(x, t_max: float = 5.0, num_points: int = 17) -> float:
    """n ∫ |φ̂(t) − e^{−t²/2}|² e^{−t²/2} dt for one sample x [n], trapezoid rule on
    ``num_points`` equally spaced t in [−t_max, t_max]."""
    x = np.asarray(x, np.float64)
    ts = [-t_max + 2 * t_max * i / (num_points - 1) for i in range(num_points)]
    values = []
    for t in ts:
        re = sum(math.cos(t * e) for e in x) / len(x)
        im = sum(math.sin(t * e) for e in x) / len(x)
        g = math.exp(-0.5 * t * t)
        values.append(((re - g) ** 2 + im**2) * g)
    h = ts[1] - ts[0]
    integral = h * (sum(values) - 0.5 * (values[0] + values[-1]))
    return len(x) * integral


def sigreg(z, directions) -> float:
    """The mean Epps–Pulley statistic of z [n, d] projected on each column of ``directions``
    [d, m], every column scaled to unit length first."""
    z, directions = np.asarray(z, np.float64), np.asarray(directions, np.float64)
    stats = []
    for j in range(directions.shape[1]):
        u = directions[:, j] / np.sqrt((directions[:, j] ** 2).sum())
        stats.append(epps_pulley(z @ u))
    return float(np.mean(stats))
