"""Frozen features for probes: layer choice, pooling, on-disk cache.

Layers: ``last`` (the encoder's final-norm output) or ``last4`` (the last four blocks'
outputs concatenated along features, as in the I-JEPA paper's low-shot probes).
Pooling: ``avg`` (mean over tokens → [n, width]), ``flatten`` (all tokens in raster order →
[n, patches · width], keeps the spatial layout a small image's class depends on), ``none``
(tokens, for attentive probes).
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jepa.data import pipeline

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


def make_feature_fn(module, depth: int, layers: str, pooling: str):
    """Jitted (params, normalized images) → features."""

    @jax.jit
    def fn(params, images):
        tokens, aux = module.apply({"params": params}, images)
        return select_and_pool(tokens, aux, depth, layers, pooling)

    return fn


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

    With ``cache_dir`` and ``cache_key`` (e.g. checkpoint step and weights), results are stored
    as ``.npz`` and re-read, so a grid of probes extracts each split once."""
    path = None
    if cache_dir and cache_key is not None:
        key = dict(
            cache_key,
            dataset=data_cfg.dataset,
            split=split,
            layers=layers,
            pooling=pooling,
            image_size=data_cfg.image_size,
        )
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = os.path.join(cache_dir, f"{data_cfg.dataset}_{split}_{digest}.npz".replace("/", "_"))
        if os.path.exists(path):
            with np.load(path) as f:
                return f["features"], f["labels"]
    fn = make_feature_fn(module, depth, layers, pooling)
    feats, labels = [], []
    for batch in pipeline.make_eval_batches(data_cfg, split, batch_size):
        keep = np.asarray(batch["mask"], bool)
        out = np.asarray(fn(params, jnp.asarray(batch["image"])))
        feats.append(out[keep])
        labels.append(np.asarray(batch["label"])[keep])
    features, labels = np.concatenate(feats), np.concatenate(labels).astype(np.int32)
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        np.savez(path, features=features, labels=labels)
    return features, labels


def pixel_features(data_cfg, split: str, batch_size: int = 256):
    """Normalized raw pixels, flattened: the input-space baseline for probes."""
    feats, labels = [], []
    for batch in pipeline.make_eval_batches(data_cfg, split, batch_size):
        keep = np.asarray(batch["mask"], bool)
        images = np.asarray(batch["image"], np.float32)
        feats.append(images.reshape(len(images), -1)[keep])
        labels.append(np.asarray(batch["label"])[keep])
    return np.concatenate(feats), np.concatenate(labels).astype(np.int32)
