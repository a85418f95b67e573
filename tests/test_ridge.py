"""The one ridge (jepa/evaluate/ridge.py) against the obvious slow solution: per alpha, the
normal equations of [x 1] with the intercept unpenalized, by ``numpy.linalg.solve``."""

import jax.numpy as jnp
import numpy as np
import pytest

from jepa.evaluate import ridge


def solve_reference(x, y, lam):
    """argmin |y − xw − b|² + lam |w|², the intercept b unpenalized: (w, b)."""
    x1 = np.concatenate([x, np.ones((len(x), 1))], 1)
    reg = lam * np.eye(x1.shape[1])
    reg[-1, -1] = 0.0
    wb = np.linalg.solve(x1.T @ x1 + reg, x1.T @ y)
    return wb[:-1], wb[-1]


def random_problem(seed, n=40, f=7, k=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, f)) * rng.uniform(0.1, 3.0, f) + rng.standard_normal(f)
    y = x @ rng.standard_normal((f, k)) + 0.5 * rng.standard_normal((n, k)) + 2.0
    return x, y


@pytest.mark.parametrize("scale", ridge.SCALES)
@pytest.mark.parametrize("shape", [(40, 7), (6, 10)])  # more rows than features, and fewer
def test_every_alpha_equals_solving_the_normal_equations(scale, shape):
    x, y = random_problem(0, *shape)
    n, f = shape
    alphas = np.array([1e-3, 0.1, 1.0, 30.0])
    w, b, loo = ridge.ridge_path(x, y, alphas, scale)
    x1 = np.concatenate([x, np.ones((n, 1))], 1)
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    unit = np.mean(s**2) if scale == "spectrum" else np.trace(x1.T @ x1) / (f + 1)
    for a, alpha in enumerate(alphas):
        wr, br = solve_reference(x, y, alpha * unit)
        np.testing.assert_allclose(w[a], wr, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(b[a], br, rtol=1e-8, atol=1e-10)
        for i in range(n):  # leave-one-out: refit without row i, at the same λ
            keep = np.arange(n) != i
            wi, bi = solve_reference(x[keep], y[keep], alpha * unit)
            np.testing.assert_allclose(loo[a, i], x[i] @ wi + bi, rtol=1e-6, atol=1e-8)
    # The same path on jax arrays (float32, as the few-shot probe runs it).
    wj, bj, _ = ridge.ridge_path(jnp.asarray(x), jnp.asarray(y), jnp.asarray(alphas), scale)
    np.testing.assert_allclose(wj, w, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(bj, b, rtol=2e-3, atol=2e-4)
    with pytest.raises(ValueError, match="valid: \\('spectrum', 'gram'\\)"):
        ridge.ridge_path(x, y, alphas, "trace")


def test_r2_picks_alpha_on_the_last_tenth_and_refits_on_all():
    x, y = random_problem(1, n=200, f=5, k=2)
    te_x, te_y = random_problem(2, n=50, f=5, k=2)
    alphas = (1e-3, 1.0, 100.0)
    out = ridge.ridge_r2(x, y, te_x, te_y, alphas)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs, ts = (x - mu) / sd, (te_x - mu) / sd

    def unit(z):
        return (np.sum(z**2) + len(z)) / (z.shape[1] + 1)

    def r2(pred, t):
        return 1 - ((pred - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()

    val = []
    for alpha in alphas:
        w, b = solve_reference(xs[:180], y[:180], alpha * unit(xs[:180]))
        val.append(r2(xs[180:] @ w + b, y[180:]))
    best = alphas[int(np.argmax(val))]
    w, b = solve_reference(xs, y, best * unit(xs))
    assert out["alpha"] == best
    np.testing.assert_allclose(out["r2"], r2(ts @ w + b, te_y), rtol=1e-10)
    mapped = ridge.ridge_map(x, y, alpha=best)(te_x)
    np.testing.assert_allclose(mapped, ts @ w + b, rtol=1e-8, atol=1e-10)


def test_classifier_keeps_the_alpha_with_the_best_leave_one_out_accuracy():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 30)
    x = np.eye(3)[y] @ rng.standard_normal((3, 6)) + 0.8 * rng.standard_normal((30, 6))
    alphas = (1e-4, 1e-1, 10.0, 1e3)
    out = ridge.ridge_classifier(x, y, 3, alphas)
    _, _, loo = ridge.ridge_path(x, np.eye(3)[y], np.array(alphas))
    acc = (loo.argmax(-1) == y[None]).mean(-1)
    assert out["alpha"] == alphas[int(np.argmax(acc))]
    np.testing.assert_allclose(out["loo_top1"], acc.max())
