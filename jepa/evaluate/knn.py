"""Weighted k-nearest-neighbour classification of frozen features (the DINO protocol).

Features are L2-normalized; a test sample's k most cosine-similar training samples vote for
their labels with weight exp(similarity / temperature) (k = 20, T = 0.07 in DINO). The feature
bank is sharded over every device of a 1-D mesh: each device finds the top k of its own rows,
the k × devices candidates are all-gathered, and the global top k is taken from them, so no
device ever holds the similarity matrix against the whole bank.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jepa.evaluate.features import batched


def _normalize(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1).astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnames=("k", "num_classes", "mesh"))
def _vote(bank, bank_labels, queries, *, k, temperature, num_classes, mesh):
    """Class scores [queries, num_classes] from the k nearest rows of the sharded bank."""

    def local_top_k(bank_shard, labels_shard, queries):
        sims = queries @ bank_shard.T  # [q, rows on this device]
        sims = jnp.where(labels_shard[None] >= 0, sims, -jnp.inf)  # padding rows never win
        kk = min(k, bank_shard.shape[0])
        top_sims, idx = jax.lax.top_k(sims, kk)
        top_labels = labels_shard[idx]
        # every device's candidates, side by side: [q, kk × devices]
        top_sims = jax.lax.all_gather(top_sims, "bank", axis=1, tiled=True)
        top_labels = jax.lax.all_gather(top_labels, "bank", axis=1, tiled=True)
        return top_sims, top_labels

    sims, labels = jax.shard_map(
        local_top_k,
        mesh=mesh,
        in_specs=(P("bank"), P("bank"), P()),
        out_specs=(P(), P()),
        check_vma=False,
    )(bank, bank_labels, queries)
    sims, pick = jax.lax.top_k(sims, k)
    labels = jnp.take_along_axis(labels, pick, axis=1)
    weights = jnp.where(jnp.isfinite(sims), jnp.exp(sims / temperature), 0.0)
    return jnp.einsum("qk,qkc->qc", weights, jax.nn.one_hot(labels, num_classes))


def knn_predict(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    *,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    devices=None,
    query_batch: int = 1024,
) -> np.ndarray:
    """Predicted labels of ``test_x`` (any trailing shape; flattened), the bank sharded over
    ``devices`` (default: all)."""
    devices = jax.devices() if devices is None else devices
    mesh = Mesh(np.array(devices), ("bank",))
    n = len(devices)
    num_classes = int(train_y.max()) + 1 if num_classes is None else num_classes
    if k > len(train_x):
        raise ValueError(f"k={k} is larger than the {len(train_x)} training samples")
    bank = _normalize(train_x)
    labels = np.asarray(train_y, np.int32)
    pad = -len(bank) % n  # equal shards; padded rows carry label -1 and never win
    bank = np.concatenate([bank, np.zeros((pad, bank.shape[1]), np.float32)])
    labels = np.concatenate([labels, -np.ones(pad, np.int32)])
    bank, labels = jax.device_put((bank, labels), NamedSharding(mesh, P("bank")))
    vote = functools.partial(
        _vote, bank, labels, k=k, temperature=temperature, num_classes=num_classes, mesh=mesh
    )
    return batched(lambda q: vote(q).argmax(-1), _normalize(test_x), size=query_batch)


def knn_probe(train_x, train_y, test_x, test_y, *, k: int = 20, temperature: float = 0.07):
    """Top-1 of the weighted kNN classifier on the test set: ``{"top1" (in [0, 1]), "k",
    "temperature"}``."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    pred = knn_predict(
        train_x, train_y, test_x, k=k, temperature=temperature, num_classes=num_classes
    )
    return {"top1": float((pred == np.asarray(test_y)).mean()), "k": k, "temperature": temperature}
