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
        last_start = len(video) - self.frames
        if last_start < 0:
            raise ValueError(
                f"data.sequence.frames={self.frames} is longer than the dataset's "
                f"{len(video)}-frame videos"
            )
        t0 = int(rng.integers(0, last_start + 1))
        clip = normalize_frames(video[t0 : t0 + self.frames], self.mean, self.std)
        return {"image": clip, "label": np.int32(0)}


def load_sequences(source) -> dict[str, np.ndarray]:
    """Every record of a random-access video source stacked: ``frames`` uint8 [N, T, H, W, C]
    and whichever of ``LABEL_KEYS`` the records have."""
    records = [source[i] for i in range(len(source))]
    keys = ["frames", *(k for k in LABEL_KEYS if k in records[0])]
    return {key: np.stack([np.asarray(r[key]) for r in records]) for key in keys}
