"""Train a whole (learning rate × weight decay) grid of small classifiers in one program.

Probes on frozen features are cheap individually and noisy to tune one at a time, so every
(lr, wd) pair trains side by side under ``vmap`` inside a single ``jit`` (V-JEPA 2 trains its
probe grid in parallel for the same reason): one compile, one pass over the data per step for
the whole grid. The pair with the best accuracy on a held-out part of train is then retrained on
all of train and reported on test.

A probe is described by ``init(key) -> params`` and ``apply(params, x) -> logits`` (pure, over
a minibatch) and ``make_tx(lr, wd, total_steps) -> optax transform``; features stay on device
and minibatches are gathered by index, so the host only ships the epoch permutations.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jepa.evaluate.features import batched


def train_grid(init, apply, make_tx, x, y, lrs, wds, *, epochs, batch_size, seed):
    """Params with a leading grid axis (one member per (lrs[i], wds[i])) and the number of
    compilations this call caused."""
    n = len(x)
    batch_size = min(batch_size, n)
    steps_per_epoch = max(1, n // batch_size)
    perms = np.stack([np.random.default_rng([seed, e]).permutation(n) for e in range(epochs)])
    perms = perms[:, : steps_per_epoch * batch_size].reshape(-1, batch_size)
    traces = []

    @jax.jit
    def fit(x, y, perms, lrs, wds, key):
        traces.append(1)  # once per compilation: how the eval proves the grid is one program

        def train_one(lr, wd):
            tx = make_tx(lr, wd, len(perms))
            params = init(key)

            def loss_fn(p, idx):
                logits = apply(p, x[idx])
                return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

            def body(carry, idx):
                p, o = carry
                g = jax.grad(loss_fn)(p, idx)
                u, o = tx.update(g, o, p)
                return (optax.apply_updates(p, u), o), None

            (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), perms)
            return params

        return jax.vmap(train_one)(lrs, wds)

    params = fit(
        jnp.asarray(x),
        jnp.asarray(y),
        jnp.asarray(perms),
        jnp.asarray(lrs, jnp.float32),
        jnp.asarray(wds, jnp.float32),
        jax.random.PRNGKey(seed),
    )
    return params, len(traces)


def grid_accuracy(apply, params, x, y, batch_size: int = 1024) -> np.ndarray:
    """Top-1 of every grid member on (x, y): [grid]."""
    predict = jax.jit(lambda p, xb: jax.vmap(apply, in_axes=(0, None))(p, xb).argmax(-1).T)
    preds = batched(lambda xb: predict(params, xb), x, size=batch_size)  # [n, grid]
    return (preds == np.asarray(y)[:, None]).mean(0)


def select_and_evaluate(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    make_probe: Callable[[int, tuple], tuple[Callable, Callable]],
    make_tx: Callable,
    lrs,
    wds,
    epochs: int,
    batch_size: int = 256,
    val_fraction: float = 0.1,
    seed: int = 0,
    normalize: Callable | None = None,
) -> dict:
    """The probe protocol: train the grid on train minus a held-out ``val_fraction``, pick the
    (lr, wd) with the best validation top-1, retrain it on all of train, report test top-1.

    ``make_probe(num_classes, feature_shape) -> (init, apply)``; ``normalize(fit, *others)``
    (e.g. BatchNorm statistics of the fitting set) is applied to each stage's inputs.
    Returns ``top1`` (test, in [0, 1]), ``val_top1``, ``lr``, ``wd``, ``compiles`` (of the grid
    program: 1) and the ``grid`` of validation accuracies."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    init, apply = make_probe(num_classes, train_x.shape[1:])
    normalize = normalize or (lambda *xs: list(xs))
    pairs = [(float(lr), float(wd)) for lr, wd in itertools.product(lrs, wds)]
    g_lr, g_wd = np.array(pairs, np.float32).T
    fit = functools.partial(
        train_grid, init, apply, make_tx, epochs=epochs, batch_size=batch_size, seed=seed
    )

    perm = np.random.default_rng(seed).permutation(len(train_x))
    n_val = max(1, int(round(val_fraction * len(train_x))))
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    fit_x, val_x = normalize(train_x[fit_idx], train_x[val_idx])
    params, compiles = fit(fit_x, train_y[fit_idx], g_lr, g_wd)
    val_acc = grid_accuracy(apply, params, val_x, train_y[val_idx])
    best = int(np.argmax(val_acc))

    all_x, te_x = normalize(train_x, test_x)
    params, _ = fit(all_x, train_y, g_lr[best : best + 1], g_wd[best : best + 1])
    top1 = float(grid_accuracy(apply, params, te_x, test_y)[0])
    return {
        "top1": top1,
        "val_top1": float(val_acc[best]),
        "lr": pairs[best][0],
        "wd": pairs[best][1],
        "compiles": compiles,
        "grid": [
            {"lr": lr, "wd": wd, "val_top1": float(a)}
            for (lr, wd), a in zip(pairs, val_acc, strict=True)
        ],
    }
