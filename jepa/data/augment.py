"""Numpy image transforms: I-JEPA's random resized crop, flips, eval resize, normalization.

Images are uint8 `[height, width, channels]` with 1 (grayscale) or 3 (RGB) channels until the
last step, `normalize_images`, which turns them into float32. Randomness comes only from the
`np.random.Generator` passed in; inside a grain pipeline that is grain's per-record generator,
so every crop is a function of (pipeline seed, record position). The grain transforms below
(`TrainPreprocess`, `EvalPreprocess`, `ClipPreprocess`) turn TFDS records into examples.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import grain
import numpy as np
from PIL import Image

# Normalization lives in a module without grain (evaluators and GPU-side scripts need it too);
# these names stay importable from here.
from jepa.data.normalization import (  # noqa: F401
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalize_frames,
    normalize_images,
    resolve_mean_std,
)
from jepa.data.sequences import window_start

# The fraction of the resized image kept by the eval center crop (224 of 256 in ImageNet).
EVAL_CROP_FRACTION = 0.875


# ----------------------------------------------------------------------------------------- geometry


def sample_crop_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    scale: Sequence[float] = (0.3, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """`(top, left, crop_height, crop_width)` in pixels, sampled as `RandomResizedCrop` does
    (the I-JEPA training augmentation): the area uniform in `scale` times the image area, the
    aspect ratio (width / height) log-uniform in `ratio`. After `attempts` misses (a box that
    does not fit), the largest centered box with the aspect ratio clipped into `ratio`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    image_ratio = width / height
    if image_ratio < min(ratio):
        crop_w, crop_h = width, round(width / min(ratio))
    elif image_ratio > max(ratio):
        crop_w, crop_h = round(height * max(ratio)), height
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def resize_box(image: np.ndarray, box: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """uint8 `[H, W, 1 or 3]` → `[*size, C]`: `box` (top, left, height, width in pixels,
    fractional: sub-pixel) cut out and resized bilinearly (antialiased when shrinking)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(
            f"expected a uint8 [height, width, 1 or 3] image, got {image.dtype} {image.shape}"
        )
    top, left, box_h, box_w = box
    if (top, left, box_h, box_w, *size) == (0, 0, *image.shape[:2], *image.shape[:2]):
        return image  # nothing to cut or scale: keep the pixels bit-exact
    # PIL's BILINEAR filter widens its support when shrinking, as torchvision's PIL path does.
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    pil = pil.resize(
        (size[1], size[0]), Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h)
    )
    return np.asarray(pil, dtype=np.uint8).reshape(size[0], size[1], image.shape[-1])


def random_resized_crop(
    image: np.ndarray, rng: np.random.Generator, size: int, scale: Sequence[float] = (0.3, 1.0)
) -> np.ndarray:
    """I-JEPA's crop: a random box (see `sample_crop_box`) resized to uint8 `[size, size, C]`."""
    box = sample_crop_box(rng, image.shape[0], image.shape[1], scale)
    return resize_box(image, box, (size, size))


def random_horizontal_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirrors `[height, width, C]` left-right with probability 1/2."""
    return image[:, ::-1] if rng.random() < 0.5 else image


def eval_resize(image: np.ndarray, size: int) -> np.ndarray:
    """The deterministic eval view: uint8 `[height, width, C]` → `[size, size, C]`.

    An image already `size`×`size` passes through untouched. A larger one has its shorter side
    resized to `round(size / EVAL_CROP_FRACTION)` and is center-cropped (the standard 256 → 224
    ImageNet protocol); a smaller one has its shorter side resized to `size` and is
    center-cropped.
    """
    height, width = image.shape[:2]
    if height == width == size:
        return image
    short = min(height, width)
    target_short = round(size / EVAL_CROP_FRACTION) if short > size else size
    # Cut the center square-ish region whose resize gives exactly `size`×`size`: the box is
    # `size / target_short` of the shorter side, in source pixels.
    box_side = short * size / target_short
    box_h, box_w = min(height, box_side), min(width, box_side)
    return resize_box(
        image, ((height - box_h) / 2, (width - box_w) / 2, box_h, box_w), (size, size)
    )


def _as_hwc(image) -> np.ndarray:
    """Decoders may drop the channel axis of grayscale images; put it back."""
    image = np.asarray(image)
    return image[..., None] if image.ndim == 2 else image


# --------------------------------------------------------------- grain transforms over TFDS records


@dataclasses.dataclass(frozen=True)
class TrainPreprocess(grain.transforms.RandomMap):
    """Random resized crop, optional flip, normalization: record → training example.

    Output: `{'image': float32 [image_size, image_size, C], 'label': int32 []}` (`label` only
    when the record has one: an unlabeled dataset pretrains as well); with
    `num_views > 1`, `image` is `[num_views, image_size, image_size, C]`: independent crops
    (and flips) of the same record, for objectives that compare views of one image. With
    `local_views > 0`, also `'local': float32 [local_views, local_size, local_size, C]`: small
    crops (`local_crop_scale` of the area) at a lower resolution, DINO's multi-crop.
    """

    image_size: int
    crop_scale: tuple[float, float] = (0.3, 1.0)
    hflip: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    num_views: int = 1
    local_views: int = 0
    local_size: int = 0
    local_crop_scale: tuple[float, float] = (0.05, 0.3)

    def _view(self, image, rng: np.random.Generator, size=None, scale=None):
        size, scale = size or self.image_size, scale or self.crop_scale
        image = random_resized_crop(image, rng, size, scale)
        if self.hflip:
            image = random_horizontal_flip(image, rng)
        return normalize_images(image, self.mean, self.std)

    def random_map(self, element, rng: np.random.Generator):
        image = _as_hwc(element["image"])
        views = [self._view(image, rng) for _ in range(self.num_views)]
        example = {"image": views[0] if self.num_views == 1 else np.stack(views)}
        if "label" in element:  # pretraining reads no labels: unlabeled datasets have none
            example["label"] = np.int32(element["label"])
        if self.local_views:
            local = [
                self._view(image, rng, self.local_size, self.local_crop_scale)
                for _ in range(self.local_views)
            ]
            example["local"] = np.stack(local)
        return example


@dataclasses.dataclass(frozen=True)
class EvalPreprocess(grain.transforms.Map):
    """Eval resize/center crop and normalization: record → eval example (as `TrainPreprocess`)."""

    image_size: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def map(self, element):
        image = eval_resize(_as_hwc(element["image"]), self.image_size)
        image = normalize_images(image, self.mean, self.std)
        return {"image": image, "label": np.int32(element["label"])}


# ----------------------------------------------------------------- video clips (objective="future")


def clip_window(t0: int, context_frames: int, horizon: int) -> tuple[np.ndarray, int]:
    """Frame indices of a clip starting at t0: (context frames, target frame)."""
    context = np.arange(t0, t0 + context_frames)
    return context, t0 + context_frames - 1 + horizon


def clip_is_uncertain(bounce: np.ndarray, t0: int, context_frames: int, horizon: int) -> bool:
    """Whether any digit takes a new, random direction between the last context frame and the
    target: ``bounce[t]`` marks that the move t → t+1 was re-drawn, so the moves that matter
    are those of frames last … target−1."""
    context, target = clip_window(t0, context_frames, horizon)
    return bool(np.asarray(bounce)[context[-1] : target].any())


def make_clip(frames, t0: int, context_frames: int, horizon: int, mean, std) -> np.ndarray:
    """[C + 1, H, W, ch] normalized float32: the context frames, then the target frame."""
    context, target = clip_window(t0, context_frames, horizon)
    frames = np.asarray(frames)
    return normalize_frames(np.concatenate([frames[context], frames[target][None]]), mean, std)


@dataclasses.dataclass(frozen=True)
class ClipPreprocess(grain.transforms.RandomMap):
    """A random clip of a video record (``frames`` [T, H, W, C] uint8): ``{'image': [C + 1, H,
    W, C] float32, 'label': int32 — 1 when the target is uncertain (a bounce in between)}``."""

    context_frames: int
    horizon: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def random_map(self, element, rng: np.random.Generator):
        frames = element["frames"]
        length = self.context_frames + self.horizon
        t0 = window_start(rng, len(frames), length, "clips (method.clip: context + horizon)")
        clip = make_clip(frames, t0, self.context_frames, self.horizon, self.mean, self.std)
        uncertain = "bounce" in element and clip_is_uncertain(
            element["bounce"], t0, self.context_frames, self.horizon
        )
        return {"image": clip, "label": np.int32(uncertain)}
