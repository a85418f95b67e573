"""Context/target samplers with static shapes, run on the host in numpy.

I-JEPA's multi-block strategy (``src/masks/multiblock.py`` in facebookresearch/ijepa): per batch,
draw one target-block size and one context-block size; per sample, place ``num_targets`` target
blocks and one context block at random and remove every target patch from the context.

What we keep from the reference:
  * the block-size formula, including its quirk of using *one* uniform draw for both the scale
    and the aspect ratio (so large blocks are also the tall ones), and the clip of a block side
    to at most ``grid - 1``;
  * sizes drawn once per batch, positions per sample; ``min_keep`` context patches at least.

What we change, and why:
  * **Static shapes.** The reference trims every sample to the batch minimum, so token counts
    change every step and a compiled step would recompile. We return exactly
    ``context_tokens`` context indices and ``target_tokens`` indices per target block. A block
    with more patches than requested keeps a uniformly random subset (the reference keeps the
    first ones in raster order, which biases the context towards the top of the image); a block
    with fewer is padded with the nearest patches around it (Chebyshev distance, random ties),
    so padding stays spatially local. A sample whose non-target area cannot supply
    ``context_tokens`` patches (or whose context block keeps fewer than ``min_keep``) is redrawn.
  * Block positions range over every valid offset; the reference's ``randint(0, grid - h)``
    never lets a block touch the last row or column, which on small grids (7×7 MNIST) pins the
    context block to the top-left corner.

Defaults for a 14×14 grid (ViT-*/16 at 224 px): 33 tokens per target block (the reference's mean
block area) and 60 context tokens (its per-step count after trimming at batch 16; the per-sample
mean before trimming is about 82). Other grids scale both with the number of patches.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

REFERENCE_GRID_PATCHES = 196  # 14 × 14
REFERENCE_CONTEXT_TOKENS = 60
REFERENCE_TARGET_TOKENS = 33


@dataclasses.dataclass(frozen=True)
class MultiBlockSpec:
    """Everything the multi-block sampler needs; built from ``config.mask`` and the patch grid."""

    grid: tuple[int, int]
    context_tokens: int
    target_tokens: int
    num_targets: int = 4
    target_scale: tuple[float, float] = (0.15, 0.2)
    target_aspect: tuple[float, float] = (0.75, 1.5)
    context_scale: tuple[float, float] = (0.85, 1.0)
    context_aspect: tuple[float, float] = (1.0, 1.0)
    min_keep: int = 10

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def validate(self) -> None:
        """Raise ``ValueError`` naming the ``mask.*`` key for impossible combinations."""
        n = self.num_patches
        if not 0 < self.target_tokens <= n:
            raise ValueError(f"mask.target_tokens={self.target_tokens} must be in [1, {n}]")
        if not 0 < self.context_tokens < n:
            raise ValueError(f"mask.context_tokens={self.context_tokens} must be in [1, {n - 1}]")
        if self.num_targets < 1:
            raise ValueError(f"mask.num_targets={self.num_targets} must be >= 1")
        if self.context_tokens + self.target_tokens > n:
            raise ValueError(
                f"mask.context_tokens + mask.target_tokens = "
                f"{self.context_tokens + self.target_tokens} exceed the {n} patches of the "
                f"{self.grid[0]}x{self.grid[1]} grid"
            )
        for key in ("target_scale", "context_scale", "target_aspect", "context_aspect"):
            lo, hi = getattr(self, key)
            if not 0 < lo <= hi:
                raise ValueError(f"mask.{key}={(lo, hi)} must satisfy 0 < low <= high")
        if self.target_scale[1] > 1 or self.context_scale[1] > 1:
            raise ValueError("mask.target_scale / mask.context_scale must be fractions <= 1")
        if self.min_keep > self.context_tokens:
            raise ValueError(
                f"mask.min_keep={self.min_keep} exceeds mask.context_tokens={self.context_tokens}"
            )


@dataclasses.dataclass(frozen=True)
class Masks:
    """Indices into the raster-ordered patch grid, each row sorted ascending.

    context: [batch, context_tokens] int32; targets: [batch, num_targets, target_tokens] int32.
    """

    context: np.ndarray
    targets: np.ndarray
    # Diagnostics: the per-batch block sizes (h, w), and per sample how many patches the
    # context block held after removing the targets (before trimming/padding to the fixed count).
    target_block: tuple[int, int] = (0, 0)
    context_block: tuple[int, int] = (0, 0)
    context_available: np.ndarray | None = None


def default_token_counts(grid: tuple[int, int]) -> tuple[int, int]:
    """(context_tokens, target_tokens) scaled from the reference's 14×14 numbers."""
    n = grid[0] * grid[1]
    ratio = n / REFERENCE_GRID_PATCHES
    return (
        max(1, round(REFERENCE_CONTEXT_TOKENS * ratio)),
        max(1, round(REFERENCE_TARGET_TOKENS * ratio)),
    )


def block_size(
    u: float, grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float]
) -> tuple[int, int]:
    """The reference's ``_sample_block_size`` for a given uniform draw ``u`` in [0, 1)."""
    height, width = grid
    area = int(height * width * (scale[0] + u * (scale[1] - scale[0])))
    ratio = aspect[0] + u * (aspect[1] - aspect[0])
    h = int(round(math.sqrt(area * ratio)))
    w = int(round(math.sqrt(area / ratio)))
    h = max(1, min(h, height - 1))
    w = max(1, min(w, width - 1))
    return h, w


def _distance_to_blocks(grid, tops, lefts, h, w) -> np.ndarray:
    """Chebyshev distance of every grid cell to each block; tops/lefts [...] → [..., n_patches]."""
    rows = np.arange(grid[0])[:, None].repeat(grid[1], 1).reshape(-1)
    cols = np.arange(grid[1])[None, :].repeat(grid[0], 0).reshape(-1)
    t = tops[..., None]
    lft = lefts[..., None]
    dr = np.maximum(np.maximum(t - rows, rows - (t + h - 1)), 0)
    dc = np.maximum(np.maximum(lft - cols, cols - (lft + w - 1)), 0)
    return np.maximum(dr, dc)


def _closest(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest scores along the last axis, sorted ascending as indices."""
    idx = np.argpartition(score, k - 1, axis=-1)[..., :k]
    return np.sort(idx, axis=-1).astype(np.int32)


def sample_multiblock_masks(
    rng: np.random.Generator, batch_size: int, spec: MultiBlockSpec
) -> Masks:
    """Draw one batch of multi-block masks (vectorized over the batch)."""
    grid, n = spec.grid, spec.num_patches
    th, tw = block_size(rng.random(), grid, spec.target_scale, spec.target_aspect)
    ch, cw = block_size(rng.random(), grid, spec.context_scale, spec.context_aspect)

    context = np.zeros((batch_size, spec.context_tokens), np.int32)
    targets = np.zeros((batch_size, spec.num_targets, spec.target_tokens), np.int32)
    available_in_block = np.zeros(batch_size, np.int32)
    todo = np.arange(batch_size)
    for _ in range(1000):
        m = len(todo)
        t_top = rng.integers(0, grid[0] - th + 1, size=(m, spec.num_targets))
        t_left = rng.integers(0, grid[1] - tw + 1, size=(m, spec.num_targets))
        # Distance 0 inside the block; the uniform jitter picks a random subset when trimming
        # and breaks ties between equally near cells when padding.
        t_score = _distance_to_blocks(grid, t_top, t_left, th, tw) + rng.random(
            (m, spec.num_targets, n)
        )
        t_idx = _closest(t_score, spec.target_tokens)
        is_target = np.zeros((m, n), bool)
        np.put_along_axis(is_target, t_idx.reshape(m, -1), True, axis=1)

        c_top = rng.integers(0, grid[0] - ch + 1, size=m)
        c_left = rng.integers(0, grid[1] - cw + 1, size=m)
        c_dist = _distance_to_blocks(grid, c_top, c_left, ch, cw).astype(np.float64)
        c_score = np.where(is_target, np.inf, c_dist + rng.random((m, n)))
        in_block = ((c_dist == 0) & ~is_target).sum(axis=1)
        available = (~is_target).sum(axis=1)
        ok = (available >= spec.context_tokens) & (in_block >= spec.min_keep)

        good = todo[ok]
        context[good] = _closest(c_score[ok], spec.context_tokens)
        targets[good] = t_idx[ok]
        available_in_block[good] = in_block[ok]
        todo = todo[~ok]
        if not len(todo):
            return Masks(context, targets, (th, tw), (ch, cw), available_in_block)
    raise ValueError(
        f"mask.context_tokens={spec.context_tokens} cannot be met: after removing "
        f"{spec.num_targets} target blocks of {th}x{tw} from the {grid[0]}x{grid[1]} grid too "
        f"few patches remain; lower mask.context_tokens or mask.num_targets"
    )


def masks_for_step(seed: int, step: int, batch_size: int, spec: MultiBlockSpec) -> Masks:
    """Deterministic per (seed, step), so a resumed run draws the same masks as an uninterrupted
    one. Multi-host runs draw the global batch's masks on every host and keep their slice."""
    return sample_multiblock_masks(np.random.default_rng([seed, step]), batch_size, spec)
