"""Frozen features for probes: layer choice, pooling, on-disk cache.

Layers: ``last`` (the encoder's final-norm output) or ``last4`` (the last four blocks'
outputs concatenated along features, as in the I-JEPA paper's low-shot probes).
Pooling: ``avg`` (mean over tokens → [n, width]), ``flatten`` (all tokens in raster order →
[n, patches · width], keeps the spatial layout a small image's class depends on), ``none``
(tokens, for attentive probes). The BatchNorm without affine that linear and few-shot probes
put on the features is in ``linear_probe.standardize`` (statistics of the probe's training set).
Compute dtype: ``eval.dtype`` (e.g. bfloat16); features are stored float32.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jepa import sharding
from jepa.data import pipeline
from jepa.models.vit import patchify

POOLINGS = ("avg", "flatten", "none")
LAYERS = ("last", "last4")


def select_and_pool(tokens, aux, depth: int, layers: str, pooling: str):
    """tokens [b, n, d] and per-block outputs → features per ``layers``/``pooling``."""
    if layers == "last":
        x = tokens
    elif layers == "last4":
        x = jnp.concatenate([aux[f"block_{i}"] for i in range(max(0, depth - 4), depth)], -1)
    else:
        raise ValueError(f"eval.layers={layers!r}; valid: {LAYERS}")
    x = x.astype(jnp.float32)
    if pooling == "avg":
        return x.mean(axis=1)
    if pooling == "flatten":
        return x.reshape(x.shape[0], -1)
    if pooling == "none":
        return x
    raise ValueError(f"eval.pooling={pooling!r}; valid: {POOLINGS}")


def feature_mesh(batch_size: int) -> Mesh:
    """A 1-D ``data`` mesh over as many devices as divide the eval batch."""
    devices = jax.devices()
    n = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
    return Mesh(np.array(devices[:n]), ("data",))


def make_feature_fn(module, depth: int, layers: str, pooling: str, mesh: Mesh):
    """Jitted (params, normalized images) → features, the batch sharded over ``mesh``'s
    ``data`` axis and the (frozen, small next to activations) params replicated."""
    data = NamedSharding(mesh, P("data"))

    @functools.partial(jax.jit, in_shardings=(sharding.replicated(mesh), data), out_shardings=data)
    def fn(params, images):
        tokens, aux = module.apply({"params": params}, images)
        return select_and_pool(tokens, aux, depth, layers, pooling)

    return fn


def batched(fn, *arrays, size: int = 256):
    """``fn`` over ``arrays`` in chunks of ``size`` rows; its outputs (a pytree of arrays, one
    row per input row) concatenated as numpy: bounded memory for any number of rows."""
    outs = [fn(*(a[i : i + size] for a in arrays)) for i in range(0, len(arrays[0]), size)]
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *outs)


def _cache_path(cache_dir, cache_key, data_cfg, split, **settings):
    key = dict(cache_key, dataset=data_cfg.dataset, split=split, **settings)
    key["image_size"] = data_cfg.image_size
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"{data_cfg.dataset}_{split}_{digest}.npz".replace("/", "_"))


def _gather(local: np.ndarray) -> np.ndarray:
    """Every host's rows, in process order (a no-op on one host)."""
    if jax.process_count() == 1:
        return local
    return np.asarray(multihost_utils.process_allgather(local, tiled=True))


def extract_features(
    module,
    params,
    data_cfg,
    split: str,
    *,
    depth: int,
    layers: str = "last",
    pooling: str = "avg",
    batch_size: int = 256,
    cache_dir: str | None = None,
    cache_key: dict | None = None,
):
    """(features [n, ...] float32, labels [n] int32) over a whole split, in order.

    The batch is sharded over the devices (``feature_mesh``); ``module``'s dtype is the compute
    dtype (``eval.dtype``). With ``cache_dir`` and ``cache_key`` (checkpoint step, weights,
    dtype), results are stored as ``.npz`` per (checkpoint, dataset, split, layers, pooling)
    and re-read, so a grid of probes, or a second protocol, extracts each split once."""
    path = None
    if cache_dir and cache_key is not None:
        path = _cache_path(cache_dir, cache_key, data_cfg, split, layers=layers, pooling=pooling)
        if os.path.exists(path):
            with np.load(path) as f:
                return f["features"], f["labels"]
    mesh = feature_mesh(batch_size)
    fn = make_feature_fn(module, depth, layers, pooling, mesh)
    params = jax.device_put(params, sharding.replicated(mesh))
    data = NamedSharding(mesh, P("data"))
    feats, labels = [], []
    for batch in pipeline.make_eval_batches(data_cfg, split, batch_size):
        images = jax.make_array_from_process_local_data(data, np.asarray(batch["image"]))
        keep = _gather(np.asarray(batch["mask"], bool))
        out = fn(params, images)
        if jax.process_count() > 1:
            out = multihost_utils.process_allgather(out)
        out = np.asarray(out)
        feats.append(out[keep])
        labels.append(_gather(np.asarray(batch["label"]))[keep])
    features, labels = np.concatenate(feats), np.concatenate(labels).astype(np.int32)
    if path and jax.process_index() == 0:
        os.makedirs(cache_dir, exist_ok=True)
        np.savez(path + ".tmp.npz", features=features, labels=labels)
        os.replace(path + ".tmp.npz", path)  # a killed eval never leaves a half-written cache
    return features, labels


def pixel_features(data_cfg, split: str, batch_size: int = 256, patch_size: int | None = None):
    """Normalized raw pixels, the input-space baseline: flattened, or with ``patch_size`` as
    patch tokens [n, patches, p·p·C] for probes that read tokens."""
    feats, labels = [], []
    for batch in pipeline.make_eval_batches(data_cfg, split, batch_size):
        keep = np.asarray(batch["mask"], bool)
        images = np.asarray(batch["image"], np.float32)
        if patch_size:
            x = np.asarray(patchify(jnp.asarray(images), patch_size))
        else:
            x = images.reshape(len(images), -1)
        feats.append(x[keep])
        labels.append(np.asarray(batch["label"])[keep])
    return np.concatenate(feats), np.concatenate(labels).astype(np.int32)
