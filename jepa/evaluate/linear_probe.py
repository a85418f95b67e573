"""Linear probes on frozen features: a whole LR × WD grid trained at once in one program.

Protocol: features standardized with the fitting set's statistics (a BatchNorm without affine,
as the MAE/I-JEPA linear probes use; ``batchnorm=False`` skips it); multinomial logistic
regression trained with Adam plus an L2 penalty on the weights (the weight decay of the grid) on
minibatches with a cosine LR; selection on a held-out part of train (``grid.py``).
"""

from __future__ import annotations

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

    def init(key):
        del key  # zeros: the convex problem has one optimum, and the grid members stay comparable
        return {"w": jnp.zeros((f, num_classes)), "b": jnp.zeros((num_classes,))}

    def apply(p, x):
        return x @ p["w"] + p["b"]

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
    batch_size: int = 256,
    val_fraction: float = 0.1,
    seed: int = 0,
    batchnorm: bool = True,
) -> dict:
    """Logistic regression on flattened features; returns ``grid.select_and_evaluate``'s dict."""
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
        batch_size=batch_size,
        val_fraction=val_fraction,
        seed=seed,
        normalize=standardize if batchnorm else None,
    )
