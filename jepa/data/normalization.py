"""Pixel normalization, shared by the input pipeline, `jepa.load_encoder`, the evaluators and
the scripts that run where grain is not installed (a rented GPU box), so all of them see the
same numbers for the same pixels. numpy only: no grain, no TFDS."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_mean_std(
    mean: Sequence[float] | None, std: Sequence[float] | None, channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std; where the config leaves them None, ImageNet's for 3 channels and
    (0.5,)/(0.5,) for 1."""
    defaults = {1: ((0.5,), (0.5,)), 3: (IMAGENET_MEAN, IMAGENET_STD)}
    if (mean is None or std is None) and channels not in defaults:
        raise ValueError(
            f"no default mean/std for {channels}-channel images (defaults exist for 1 and 3); "
            "set config.data.mean and config.data.std"
        )
    mean = tuple(float(m) for m in (defaults[channels][0] if mean is None else mean))
    std = tuple(float(s) for s in (defaults[channels][1] if std is None else std))
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean {mean} and std {std} must have one value per channel ({channels} channels)"
        )
    return mean, std


def normalize_images(images, mean: Sequence[float] | None, std: Sequence[float] | None):
    """float32 `(x / 255 - mean) / std` per channel of `images` `[..., H, W, C]`: integers in
    [0, 255] or floats already in [0, 1], numpy or jax arrays (also inside `jax.jit`); `mean` /
    `std` as `resolve_mean_std` takes them."""
    mean, std = resolve_mean_std(mean, std, images.shape[-1])
    x = images.astype(np.float32)
    if np.issubdtype(np.dtype(images.dtype), np.integer):
        x = x / np.float32(255.0)
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def normalize_frames(frames, mean, std) -> np.ndarray:
    """uint8 [..., H, W, C] → normalized float32, as every other input of the framework
    (``mean`` / ``std`` None or empty: the defaults for the channel count)."""
    frames = np.asarray(frames).astype(np.float32) / 255.0
    return normalize_images(frames, mean or None, std or None)
