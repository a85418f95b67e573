"""Linear probes on frozen features: a whole LR × WD grid trained at once in one program.

Protocol: features standardized with the fitting set's statistics (a BatchNorm without affine,
as the MAE/I-JEPA linear probes use; ``batchnorm=False`` skips it); multinomial logistic
regression trained with Adam plus an L2 penalty on the weights (the weight decay of the grid) on
minibatches with a cosine LR; selection on a held-out part of train (``grid.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jepa.evaluate import grid


def standardize(train: np.ndarray, *others: np.ndarray, eps: float = 1e-6):
    """BatchNorm without affine, statistics from ``train`` only."""
    mean = train.mean(0, keepdims=True)
    std = train.std(0, keepdims=True) + eps
    return [(x - mean) / std for x in (train, *others)]


def _linear(num_classes: int, feature_shape: tuple):
    (f,) = feature_shape
    # Zeros: the convex problem has one optimum, and the grid members stay comparable.
    init = lambda key: {"w": jnp.zeros((f, num_classes)), "b": jnp.zeros((num_classes,))}
    apply = lambda p, x: x @ p["w"] + p["b"]
    return init, apply


def _adam_l2(lr, wd, total):
    # L2 on the weights only (added to the gradient before Adam's scaling), as a penalty
    # 0.5·wd·|W|² in the loss would; the bias is not decayed.
    return optax.chain(
        optax.add_decayed_weights(wd, mask={"w": True, "b": False}),
        optax.scale_by_adam(),
        optax.scale_by_learning_rate(optax.cosine_decay_schedule(lr, total)),
    )


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    lrs=(1e-3, 3e-3, 1e-2),
    wds=(0.0, 1e-3, 1e-2, 1e-1),
    epochs: int = 30,
    batchnorm: bool = True,
    **options,
) -> dict:
    """Logistic regression on flattened features; ``options`` (``batch_size``, ``val_fraction``,
    ``seed``) and the returned dict are ``grid.select_and_evaluate``'s."""
    return grid.select_and_evaluate(
        train_x.reshape(len(train_x), -1).astype(np.float32),
        train_y,
        test_x.reshape(len(test_x), -1).astype(np.float32),
        test_y,
        make_probe=_linear,
        make_tx=_adam_l2,
        lrs=lrs,
        wds=wds,
        epochs=epochs,
        normalize=standardize if batchnorm else None,
        **options,
    )


@functools.partial(jax.jit, static_argnames=("num_classes", "iterations"))
def _lbfgs_logistic(x, y, l2, num_classes: int, iterations: int):
    """Multinomial logistic regression, 0.5·l2·|W|² on the weights (not the bias), solved by
    full-batch L-BFGS: the convex optimum, whatever the features' conditioning."""

    def objective(p):
        logits = x @ p["w"] + p["b"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce + 0.5 * l2 * jnp.sum(jnp.square(p["w"]))

    params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry, _):
        p, state = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = solver.update(grad, state, p, value=value, grad=grad, value_fn=objective)
        return (optax.apply_updates(p, updates), state), value

    (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), length=iterations)
    return params


def whiten(train: np.ndarray, *others: np.ndarray, eps: float = 1e-4):
    """PCA whitening with ``train``'s covariance (eigenvalues floored at ``eps`` × their mean):
    an invertible linear map, so the linear classifiers on top are the same family, but the
    logistic problem becomes well conditioned and L-BFGS reaches its optimum in a few hundred
    iterations instead of thousands."""
    mean = train.mean(0, keepdims=True)
    cov = np.cov(train - mean, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    scale = 1.0 / np.sqrt(np.maximum(values, eps * values.mean()))
    proj = (vectors * scale).astype(np.float32)
    return [(x - mean) @ proj for x in (train, *others)]


def held_out_groups(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """[n] bool: the rows of a random ``fraction`` of the groups (at least one group)."""
    names = np.unique(groups)
    held = np.random.default_rng(seed).permutation(names)[: max(1, round(fraction * len(names)))]
    return np.isin(groups, held)


def converged_linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    l2s=(1e-5, 1e-4, 1e-3, 1e-2),
    val_fraction: float = 0.1,
    groups: np.ndarray | None = None,
    iterations: int = 500,
    seed: int = 0,
) -> dict:
    """Linear top-1 by logistic regression solved to convergence (full-batch L-BFGS) over an
    L2 grid, for features on which the SGD grid above stops short of the optimum (strongly
    correlated features: a wide random encoder's, for one). Features standardized with the
    fitting set's statistics and whitened (``whiten``); the L2 with the best top-1 on a
    held-out ``val_fraction`` of train is refitted on all of train and reported on test.
    ``groups`` [n] keeps rows of one group (e.g. frames of one sequence) on the same side of
    the held-out split, so validation never sees a training row's near-duplicate. Returns
    ``top1`` / ``val_top1`` in [0, 1], ``l2`` and the ``grid`` of validation accuracies."""
    train_x = train_x.reshape(len(train_x), -1).astype(np.float32)
    test_x = test_x.reshape(len(test_x), -1).astype(np.float32)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    groups = np.arange(len(train_x)) if groups is None else np.asarray(groups)
    is_val = held_out_groups(groups, val_fraction, seed)

    def fit_and_score(fit_x, fit_y, eval_x, eval_y, l2):
        fit_x, eval_x = whiten(*standardize(fit_x, eval_x))
        p = _lbfgs_logistic(fit_x, fit_y, l2, num_classes=num_classes, iterations=iterations)
        pred = np.asarray(jnp.asarray(eval_x) @ p["w"] + p["b"]).argmax(-1)
        return float((pred == eval_y).mean())

    val = [
        fit_and_score(train_x[~is_val], train_y[~is_val], train_x[is_val], train_y[is_val], l2)
        for l2 in l2s
    ]
    best = int(np.argmax(val))
    return {
        "top1": fit_and_score(train_x, train_y, test_x, test_y, l2s[best]),
        "val_top1": val[best],
        "l2": float(l2s[best]),
        "grid": [{"l2": float(l2), "val_top1": a} for l2, a in zip(l2s, val, strict=True)],
    }
