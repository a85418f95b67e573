"""Linear probes on frozen features: a whole LR × WD grid trained at once in one program.

Protocol: features standardized with train statistics (a BatchNorm without affine, as the
MAE/I-JEPA linear probes use); multinomial logistic regression trained with AdamW-free Adam
plus an L2 penalty (the weight decay of the grid) on minibatches with a cosine LR; every
(lr, wd) pair trains in parallel under ``vmap`` (V-JEPA 2 trains its probe grid in parallel for
the same reason); the pair with the best accuracy on a held-out part of train is retrained on
all of train and reported on test.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def standardize(train: np.ndarray, *others: np.ndarray, eps: float = 1e-6):
    mean = train.mean(0, keepdims=True)
    std = train.std(0, keepdims=True) + eps
    return [(x - mean) / std for x in (train, *others)]


def _train_grid(x, y, lrs, wds, num_classes, epochs, batch_size, seed):
    """Train one logistic regression per (lr, wd) pair; returns (W [g, f, k], b [g, k])."""
    n, f = x.shape
    batch_size = min(batch_size, n)
    steps_per_epoch = max(1, n // batch_size)
    total = epochs * steps_per_epoch
    perms = np.stack([np.random.default_rng([seed, e]).permutation(n) for e in range(epochs)])[
        :, : steps_per_epoch * batch_size
    ].reshape(total, batch_size)
    x, y, perms = jnp.asarray(x), jnp.asarray(y), jnp.asarray(perms)

    def train_one(lr, wd):
        tx = optax.adam(optax.cosine_decay_schedule(lr, total))
        params = (jnp.zeros((f, num_classes)), jnp.zeros((num_classes,)))
        opt = tx.init(params)

        def loss_fn(p, idx):
            logits = x[idx] @ p[0] + p[1]
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()
            return ce + 0.5 * wd * jnp.sum(jnp.square(p[0]))

        def body(carry, idx):
            p, o = carry
            g = jax.grad(loss_fn)(p, idx)
            u, o = tx.update(g, o, p)
            return (optax.apply_updates(p, u), o), None

        (p, _), _ = jax.lax.scan(body, (params, opt), perms)
        return p

    return jax.jit(jax.vmap(train_one))(jnp.asarray(lrs), jnp.asarray(wds))


def _accuracy(w, b, x, y):
    """Top-1 of every grid member: w [g, f, k] → [g]."""
    logits = jnp.einsum("nf,gfk->gnk", jnp.asarray(x), w) + b[:, None]
    return np.asarray((logits.argmax(-1) == jnp.asarray(y)[None]).mean(-1))


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    lrs=(1e-3, 3e-3, 1e-2),
    wds=(0.0, 1e-3, 1e-2, 1e-1),
    epochs: int = 30,
    batch_size: int = 256,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> dict:
    """Select (lr, wd) on a held-out ``val_fraction`` of train, retrain on all of train, and
    report test top-1. Returns a dict with ``top1`` (test, in [0, 1]), ``val_top1``, ``lr``,
    ``wd`` and the whole ``grid`` of validation accuracies."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    train_x = train_x.reshape(len(train_x), -1).astype(np.float32)
    test_x = test_x.reshape(len(test_x), -1).astype(np.float32)
    pairs = list(itertools.product(lrs, wds))
    g_lr = np.array([p[0] for p in pairs], np.float32)
    g_wd = np.array([p[1] for p in pairs], np.float32)

    perm = np.random.default_rng(seed).permutation(len(train_x))
    n_val = max(1, int(round(val_fraction * len(train_x))))
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    fit_x, val_x = standardize(train_x[fit_idx], train_x[val_idx])
    w, b = _train_grid(fit_x, train_y[fit_idx], g_lr, g_wd, num_classes, epochs, batch_size, seed)
    val_acc = _accuracy(w, b, val_x, train_y[val_idx])
    best = int(np.argmax(val_acc))

    all_x, te_x = standardize(train_x, test_x)
    w, b = _train_grid(
        all_x,
        train_y,
        g_lr[best : best + 1],
        g_wd[best : best + 1],
        num_classes,
        epochs,
        batch_size,
        seed,
    )
    top1 = float(_accuracy(w, b, te_x, test_y)[0])
    return {
        "top1": top1,
        "val_top1": float(val_acc[best]),
        "lr": float(g_lr[best]),
        "wd": float(g_wd[best]),
        "grid": [
            {"lr": float(lr), "wd": float(wd), "val_top1": float(a)}
            for lr, wd, a in zip(g_lr, g_wd, val_acc, strict=True)
        ],
    }
