"""Whole sequences of a video dataset (``frames`` [T, H, W, C] records, e.g.
``stochastic_moving_mnist``): the training transform of ``objective="hierarchy"`` and the
labelled arrays its per-level probes read."""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from jepa.data.normalization import normalize_frames

# Per-frame labels of a video record that the probes may regress (all optional).
LABEL_KEYS = ("digits", "position", "velocity", "bounce")


@dataclasses.dataclass(frozen=True)
class SequencePreprocess(grain.transforms.RandomMap):
    """A random window of ``frames`` consecutive frames: ``{'image': [frames, H, W, C] float32,
    'label': int32 0}`` (the label only keeps the batch structure of the image datasets)."""

    frames: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def random_map(self, element, rng: np.random.Generator):
        video = element["frames"]
        t0 = window_start(rng, len(video), self.frames, "sequence windows")
        clip = normalize_frames(video[t0 : t0 + self.frames], self.mean, self.std)
        return {"image": clip, "label": np.int32(0)}


def window_start(rng: np.random.Generator, video_frames: int, frames: int, what: str) -> int:
    """A uniform random start of ``frames`` consecutive frames of a ``video_frames``-frame
    video; ``what`` names them in the error raised when they do not fit."""
    if frames > video_frames:
        raise ValueError(f"{what} of {frames} frames do not fit in {video_frames}-frame videos")
    return int(rng.integers(0, video_frames - frames + 1))


def load_sequences(source) -> dict[str, np.ndarray]:
    """Every record of a random-access video source stacked: ``frames`` uint8 [N, T, H, W, C]
    and whichever of ``LABEL_KEYS`` the records have."""
    records = [source[i] for i in range(len(source))]
    keys = ["frames", *(k for k in LABEL_KEYS if k in records[0])]
    return {key: np.stack([np.asarray(r[key]) for r in records]) for key in keys}
