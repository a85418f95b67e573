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
import functools
import math

import numpy as np

REFERENCE_GRID_PATCHES = 196  # 14 × 14
REFERENCE_CONTEXT_TOKENS = 60
REFERENCE_TARGET_TOKENS = 33


@dataclasses.dataclass(frozen=True)
class MultiBlockSpec:
    """Everything the multi-block sampler needs; built from ``config.method.mask`` and the patch
    grid."""

    grid: tuple[int, int]
    context_tokens: int
    target_tokens: int
    num_targets: int = 4
    target_scale: tuple[float, float] = (0.15, 0.2)
    target_aspect: tuple[float, float] = (0.75, 1.5)
    context_scale: tuple[float, float] = (0.85, 1.0)
    context_aspect: tuple[float, float] = (1.0, 1.0)
    min_keep: int = 10

    def validate(self) -> None:
        """Raise ``ValueError`` naming the ``mask.*`` key for impossible combinations."""
        n = self.grid[0] * self.grid[1]
        checks = {  # key: (its value is valid, what is valid)
            "target_tokens": (0 < self.target_tokens <= n, f"in [1, {n}]"),
            "context_tokens": (0 < self.context_tokens < n, f"in [1, {n - 1}]"),
            "num_targets": (self.num_targets >= 1, ">= 1"),
        }
        for key in ("target_scale", "context_scale", "target_aspect", "context_aspect"):
            lo, hi = getattr(self, key)
            if key.endswith("scale"):  # a fraction of the grid
                checks[key] = (0 < lo <= hi <= 1, "0 < low <= high <= 1")
            else:
                checks[key] = (0 < lo <= hi, "0 < low <= high")
        checks["min_keep"] = (
            self.min_keep <= self.context_tokens,
            f"<= method.mask.context_tokens={self.context_tokens}",
        )
        for key, (ok, valid) in checks.items():
            if not ok:
                raise ValueError(f"method.mask.{key}={getattr(self, key)}; valid: {valid}")
        if self.context_tokens + self.target_tokens > n:
            raise ValueError(
                f"method.mask.context_tokens + method.mask.target_tokens = "
                f"{self.context_tokens + self.target_tokens} exceed the {n} patches of the "
                f"{self.grid[0]}x{self.grid[1]} grid"
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
    ratio = grid[0] * grid[1] / REFERENCE_GRID_PATCHES
    reference = (REFERENCE_CONTEXT_TOKENS, REFERENCE_TARGET_TOKENS)
    return tuple(max(1, round(count * ratio)) for count in reference)


def block_size(
    u: float, grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float]
) -> tuple[int, int]:
    """The reference's ``_sample_block_size`` for a given uniform draw ``u`` in [0, 1)."""
    height, width = grid
    area = int(height * width * (scale[0] + u * (scale[1] - scale[0])))
    ratio = aspect[0] + u * (aspect[1] - aspect[0])
    h = max(1, min(int(round(math.sqrt(area * ratio))), height - 1))
    w = max(1, min(int(round(math.sqrt(area / ratio))), width - 1))
    return h, w


def _distance_to_blocks(grid, tops, lefts, h, w) -> np.ndarray:
    """Chebyshev distance of every grid cell to each block; tops/lefts [...] → [..., n_patches]."""
    rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])  # of each raster cell
    t, lft = tops[..., None], lefts[..., None]
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
    grid, n = spec.grid, spec.grid[0] * spec.grid[1]
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
        t_dist = _distance_to_blocks(grid, t_top, t_left, th, tw)
        t_idx = _closest(t_dist + rng.random((m, spec.num_targets, n)), spec.target_tokens)
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
        f"method.mask.context_tokens={spec.context_tokens} cannot be met: after removing "
        f"{spec.num_targets} target blocks of {th}x{tw} from the {grid[0]}x{grid[1]} grid too "
        f"few patches remain; lower method.mask.context_tokens or method.mask.num_targets"
    )


def masks_for_step(seed: int, step: int, batch_size: int, spec: MultiBlockSpec) -> Masks:
    """Deterministic per (seed, step), so a resumed run draws the same masks as an uninterrupted
    one. Multi-host runs draw the global batch's masks on every host and keep their slice."""
    return sample_multiblock_masks(np.random.default_rng([seed, step]), batch_size, spec)


# ---------------------------------------------------------------------------------------------
# V-JEPA's 3D multi-block ("tube") masks for clips
# ---------------------------------------------------------------------------------------------
#
# V-JEPA (``src/masks/multiblock3d.py`` in facebookresearch/jepa) runs several mask generators
# per batch; each gives its own (context, target) pair and the encoder and predictor run once
# per pair. A generator draws one block size (t, h, w) per batch — three independent uniform
# draws: the time extent, the spatial area and the aspect ratio — then, per sample,
# ``num_blocks`` positions; the target is the union of the blocks, the context its complement.
# Its pretraining configs use two generators on 16 frames at 224 px (an 8×14×14 tubelet grid):
# 8 "short-range" blocks of 15% of the frame and 2 "long-range" blocks of 70%, both spanning
# every frame (temporal scale 1) with aspect ratios in [0.75, 1.5].
#
# What we keep: the block-size formula (with V-JEPA's clip of a side to the full grid, not
# ``grid - 1`` as in I-JEPA), sizes per batch and positions per sample over every valid offset,
# and the union/complement construction. (V-JEPA's ``max_temporal_keep``, 1.0 in all its
# configs, is left out: every frame may give context.)
#
# What we change, and why: the static shapes, as for the 2D sampler. The reference trims every
# sample to the batch minimum *in raster order*, which drops the last frames' tokens first;
# we return exactly ``target_tokens`` and ``context_tokens`` per generator:
#   * target: a uniformly random subset of the union when it is larger; when smaller, the union
#     plus its nearest patches (3D Chebyshev distance, random ties), as the 2D sampler pads;
#   * context: a uniformly random subset of the complement minus any padding; a sample whose
#     complement cannot supply ``context_tokens`` has its positions redrawn (the reference
#     redraws only empty contexts).
# The trimmed union patches are neither context nor target, as in the reference.
#
# Default counts (``default_tube_token_counts``) are the reference's expected per-step counts on
# the grid: the mean over batches of the batch-minimum union and complement at V-JEPA's
# per-GPU batch of 24. On the 8×14×14 grid (1568 tokens): short-range 745 targets / 364 context
# tokens (mean union 983 = 62.7%), long-range 1100 / 98 (mean union
# 1279 = 81.6%). With these counts 2.6% (short) and 5.4% (long) of the samples are redrawn for
# too small a complement, which lowers the mean union by ~1%.

REFERENCE_TUBE_BATCH = 24  # V-JEPA's per-GPU batch (vitl16.yaml / vith16.yaml)


@dataclasses.dataclass(frozen=True)
class TubeGenerator:
    """One entry of V-JEPA's ``cfgs_mask`` plus the static token counts of its pair."""

    num_blocks: int
    spatial_scale: tuple[float, float]
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect: tuple[float, float] = (0.75, 1.5)
    context_tokens: int = 0  # 0 only before ``with_default_counts``
    target_tokens: int = 0


# V-JEPA's short-range and long-range generators (configs/pretrain/vit{l,h}16.yaml).
VJEPA_GENERATORS = (
    TubeGenerator(num_blocks=8, spatial_scale=(0.15, 0.15)),
    TubeGenerator(num_blocks=2, spatial_scale=(0.7, 0.7)),
)


@dataclasses.dataclass(frozen=True)
class TubeSpec:
    """A (time, h, w) token grid and the generators that mask it (``config.method.mask.tube``)."""

    grid: tuple[int, int, int]
    generators: tuple[TubeGenerator, ...] = VJEPA_GENERATORS

    def with_default_counts(self) -> TubeSpec:
        """Fill every count left at 0 with ``default_tube_token_counts``."""
        gens = []
        for g in self.generators:
            if not (g.context_tokens and g.target_tokens):
                shape = dataclasses.replace(g, context_tokens=0, target_tokens=0)  # cache key
                ctx, tgt = default_tube_token_counts(self.grid, shape)
                g = dataclasses.replace(
                    g, context_tokens=g.context_tokens or ctx, target_tokens=g.target_tokens or tgt
                )
            gens.append(g)
        return dataclasses.replace(self, generators=tuple(gens))

    def validate(self, counts: bool = True) -> None:
        """Raise ``ValueError`` naming the ``method.mask.tube.*`` key (and generator) at fault;
        ``counts=False`` checks everything but the token counts (before they are derived)."""
        n = math.prod(self.grid)
        if min(self.grid) < 1:
            raise ValueError(f"tube mask grid {self.grid} is empty (model.num_frames, image size)")
        if not self.generators:
            raise ValueError("method.mask.tube.num_blocks is empty; valid: one entry per generator")
        for i, g in enumerate(self.generators):
            key = f"method.mask.tube.{{}}[{i}]"
            if g.num_blocks < 1:
                raise ValueError(f"{key.format('num_blocks')}={g.num_blocks} must be >= 1")
            for name in ("spatial_scale", "temporal_scale", "aspect"):
                lo, hi = getattr(g, name)
                if not 0 < lo <= hi or (name != "aspect" and hi > 1):
                    valid = "0 < low <= high" + ("" if name == "aspect" else " <= 1")
                    raise ValueError(f"{key.format(name)}={(lo, hi)}; valid: {valid}")
            if not counts:
                continue
            if not 0 < g.target_tokens < n or not 0 < g.context_tokens < n:
                raise ValueError(
                    f"{key.format('target_tokens')}={g.target_tokens}, "
                    f"{key.format('context_tokens')}={g.context_tokens}: each must be in "
                    f"[1, {n - 1}] on the {'x'.join(map(str, self.grid))} grid"
                )
            if g.context_tokens + g.target_tokens > n:
                raise ValueError(
                    f"{key.format('context_tokens')} + {key.format('target_tokens')} = "
                    f"{g.context_tokens + g.target_tokens} exceed the grid's {n} tokens"
                )


@dataclasses.dataclass(frozen=True)
class TubeMasks:
    """One generator's pair, indices into the (t, h, w) raster-ordered grid, rows ascending.

    context: [batch, context_tokens] int32; targets: [batch, 1, target_tokens] int32 — the
    union of the blocks is predicted as one sequence (V-JEPA), so this is the 2D ``Masks``
    layout with one target block and the same predictor call works on it.
    """

    context: np.ndarray
    targets: np.ndarray
    # Diagnostics: the batch's block size (t, h, w), and per sample the union's size before
    # trimming/padding to ``target_tokens``.
    block: tuple[int, int, int] = (0, 0, 0)
    union_size: np.ndarray | None = None


def _block_sides(ut, us, ua, grid, gen: TubeGenerator):
    """V-JEPA's ``_sample_block_size`` on arrays of uniform draws (time, area, aspect)."""
    frames, height, width = grid
    (t0, t1), (s0, s1), (a0, a1) = gen.temporal_scale, gen.spatial_scale, gen.aspect
    t = np.maximum(1, np.floor(frames * (t0 + ut * (t1 - t0))))
    area = np.floor(height * width * (s0 + us * (s1 - s0)))
    ratio = a0 + ua * (a1 - a0)
    # np.round rounds halves to even, as Python's round() in the reference.
    h = np.clip(np.round(np.sqrt(area * ratio)), 1, height)
    w = np.clip(np.round(np.sqrt(area / ratio)), 1, width)
    return t.astype(int), h.astype(int), w.astype(int)


def tube_block_size(
    u: tuple[float, float, float], grid: tuple[int, int, int], gen: TubeGenerator
) -> tuple[int, int, int]:
    """V-JEPA's ``_sample_block_size`` for uniform draws u = (time, area, aspect) in [0, 1):
    t = max(1, ⌊T·scale_t⌋), area = ⌊H·W·scale_s⌋, h = round(√(area·ratio)),
    w = round(√(area/ratio)). Sides are clipped to the grid and (unlike the reference, whose
    blocks can be empty on tiny grids) to at least 1."""
    t, h, w = _block_sides(*(np.float64(x) for x in u), grid, gen)
    return int(t), int(h), int(w)


def _tube_distance(rng, m: int, grid, gen: TubeGenerator, size) -> np.ndarray:
    """Place ``num_blocks`` blocks of ``size`` per sample; [m, t·h·w] Chebyshev distance of each
    token to the nearest block (0 inside: the union)."""
    dists = []
    for n, side in zip(grid, size, strict=True):
        start = rng.integers(0, n - side + 1, size=(m, gen.num_blocks, 1))
        pos = np.arange(n)
        d = np.maximum(np.maximum(start - pos, pos - (start + side - 1)), 0)  # [m, blocks, n]
        dists.append(d.astype(np.int16))  # distances are < grid sides; the 5-D max is the cost
    dt, dh, dw = dists
    dist = np.maximum(dt[..., None, None], dh[..., None, :, None])
    dist = np.maximum(dist, dw[..., None, None, :]).min(axis=1)  # nearest block: [m, t, h, w]
    return dist.reshape(m, -1)


def _sample_generator(rng, batch_size: int, grid, gen: TubeGenerator) -> TubeMasks:
    n = math.prod(grid)
    size = tube_block_size(tuple(rng.random(3)), grid, gen)
    context = np.zeros((batch_size, gen.context_tokens), np.int32)
    targets = np.zeros((batch_size, 1, gen.target_tokens), np.int32)
    union_size = np.zeros(batch_size, np.int32)
    todo = np.arange(batch_size)
    for _ in range(1000):
        m = len(todo)
        dist = _tube_distance(rng, m, grid, gen, size)
        union = dist == 0
        # Distance 0 inside the union; the jitter picks a random subset when trimming and
        # breaks ties between equally near tokens when padding.
        t_idx = _closest(dist + rng.random((m, n)), gen.target_tokens)
        free = ~union
        np.put_along_axis(free, t_idx, False, axis=1)
        c_score = np.where(free, rng.random((m, n)), np.inf)
        ok = free.sum(axis=1) >= gen.context_tokens

        good = todo[ok]
        context[good] = _closest(c_score[ok], gen.context_tokens)
        targets[good, 0] = t_idx[ok]
        union_size[good] = union[ok].sum(axis=1)
        todo = todo[~ok]
        if not len(todo):
            return TubeMasks(context, targets, size, union_size)
    raise ValueError(
        f"method.mask.tube.context_tokens={gen.context_tokens} cannot be met: {gen.num_blocks} "
        f"blocks of {size} leave too few tokens of the {'x'.join(map(str, grid))} grid outside "
        "their union; lower method.mask.tube.context_tokens or method.mask.tube.spatial_scale"
    )


def sample_tube_masks(
    rng: np.random.Generator, batch_size: int, spec: TubeSpec
) -> tuple[TubeMasks, ...]:
    """One batch of tube masks: one ``TubeMasks`` per generator, in ``spec.generators`` order.

    A tuple rather than stacked arrays because the generators' counts differ (on 8×14×14 the
    short-range context is ~5× the long-range one) and V-JEPA runs encoder and predictor once
    per generator anyway."""
    return tuple(_sample_generator(rng, batch_size, spec.grid, g) for g in spec.generators)


def tube_masks_for_step(
    seed: int, step: int, batch_size: int, spec: TubeSpec
) -> tuple[TubeMasks, ...]:
    """Deterministic per (seed, step), like ``masks_for_step``."""
    return sample_tube_masks(np.random.default_rng([seed, step]), batch_size, spec)


@functools.lru_cache(maxsize=64)
def default_tube_token_counts(
    grid: tuple[int, int, int], gen: TubeGenerator, batches: int = 256
) -> tuple[int, int]:
    """(context_tokens, target_tokens): the reference sampler's expected per-step counts on
    ``grid``, i.e. the batch-minimum complement and union at its per-GPU batch of 24
    (``REFERENCE_TUBE_BATCH``), averaged over ``batches`` simulated batches (fixed seed, so the
    defaults are reproducible). Samples with an empty complement are redrawn, as the reference
    does. Only the generator's shape fields matter (its counts are ignored)."""
    rng = np.random.default_rng(0)
    n = math.prod(grid)
    min_union, min_context = [], []
    for _ in range(batches):
        size = tube_block_size(tuple(rng.random(3)), grid, gen)
        unions = np.zeros(0, np.int64)
        for _ in range(100):
            u = (_tube_distance(rng, REFERENCE_TUBE_BATCH, grid, gen, size) == 0).sum(axis=1)
            unions = np.concatenate([unions, u[u < n]])
            if len(unions) >= REFERENCE_TUBE_BATCH:
                break
        if len(unions):  # a size whose blocks always cover the grid adds nothing
            unions = unions[:REFERENCE_TUBE_BATCH]
            min_union.append(unions.min())
            min_context.append(n - unions.max())
    if not min_union:
        raise ValueError(
            f"method.mask.tube: {gen.num_blocks} blocks at spatial_scale={gen.spatial_scale} "
            f"always cover the {'x'.join(map(str, grid))} grid; nothing is left for the context"
        )
    target = max(1, int(np.mean(min_union)))
    context = max(1, min(int(np.mean(min_context)), n - target))
    return context, target
