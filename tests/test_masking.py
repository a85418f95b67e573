"""Multi-block mask sampler: static counts, no overlap, bounds, determinism, reference means."""

import math

import numpy as np
import pytest

from jepa import masking

SPEC14 = masking.MultiBlockSpec(grid=(14, 14), context_tokens=60, target_tokens=33)


def reference_block_size(u, grid, scale, aspect):
    """I-JEPA's _sample_block_size, transcribed loop-free from its description."""
    area = int(grid[0] * grid[1] * (scale[0] + u * (scale[1] - scale[0])))
    ratio = aspect[0] + u * (aspect[1] - aspect[0])
    h, w = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
    while h >= grid[0]:
        h -= 1
    while w >= grid[1]:
        w -= 1
    return h, w


def reference_context_count(rng, spec):
    """Slow, obvious per-sample reference: place blocks with python loops and sets."""
    gh, gw = spec.grid
    th, tw = reference_block_size(rng.random(), spec.grid, spec.target_scale, spec.target_aspect)
    ch, cw = reference_block_size(rng.random(), spec.grid, spec.context_scale, (1.0, 1.0))
    while True:
        targets = set()
        for _ in range(spec.num_targets):
            top, left = rng.integers(0, gh - th + 1), rng.integers(0, gw - tw + 1)
            targets |= {(r, c) for r in range(top, top + th) for c in range(left, left + tw)}
        top, left = rng.integers(0, gh - ch + 1), rng.integers(0, gw - cw + 1)
        ctx = {(r, c) for r in range(top, top + ch) for c in range(left, left + cw)} - targets
        if len(ctx) >= spec.min_keep:
            return len(ctx), th * tw


def test_counts_are_exact_sorted_unique_and_disjoint():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = masking.sample_multiblock_masks(rng, 32, SPEC14)
        assert m.context.shape == (32, 60) and m.context.dtype == np.int32
        assert m.targets.shape == (32, 4, 33)
        for b in range(32):
            ctx = m.context[b]
            assert np.all(np.diff(ctx) > 0)  # sorted and unique
            assert ctx.min() >= 0 and ctx.max() < 196
            tgt = set(m.targets[b].reshape(-1).tolist())
            assert not tgt & set(ctx.tolist()), "context and targets overlap"
            for block in m.targets[b]:
                assert np.all(np.diff(block) > 0)


def test_blocks_stay_within_their_sampled_size():
    rng = np.random.default_rng(1)
    for _ in range(30):
        m = masking.sample_multiblock_masks(rng, 8, SPEC14)
        th, tw = m.target_block
        h, w = m.context_block
        area = 196 * np.array(SPEC14.target_scale)
        assert int(area[0]) - 2 <= th * tw <= int(area[1]) + 2 * max(th, tw)
        assert 0.5 <= th / tw <= 2.0
        assert h == w == 13  # 0.85–1.0 of 196 at aspect 1, clipped to grid - 1
        for b in range(8):
            for block in m.targets[b]:
                rows, cols = block // 14, block % 14
                if th * tw >= SPEC14.target_tokens:  # trimmed: a subset of one th×tw block
                    assert rows.max() - rows.min() < th and cols.max() - cols.min() < tw
                else:  # padded: the block plus its nearest ring
                    assert rows.max() - rows.min() <= th + 1 and cols.max() - cols.min() <= tw + 1


def test_small_blocks_are_padded_from_their_neighbourhood():
    spec = masking.MultiBlockSpec(
        grid=(7, 7), context_tokens=12, target_tokens=12, num_targets=2, min_keep=4
    )
    rng = np.random.default_rng(2)
    m = masking.sample_multiblock_masks(rng, 64, spec)
    th, tw = m.target_block
    assert th * tw < 12  # scale 0.15–0.2 of 49 patches is 7–9 patches: padding is needed
    for block in m.targets.reshape(-1, 12):
        rows, cols = block // 7, block % 7
        assert rows.max() - rows.min() <= th + 1 and cols.max() - cols.min() <= tw + 1


def test_deterministic_per_seed_and_step():
    a = masking.masks_for_step(3, 10, 16, SPEC14)
    b = masking.masks_for_step(3, 10, 16, SPEC14)
    c = masking.masks_for_step(3, 11, 16, SPEC14)
    np.testing.assert_array_equal(a.context, b.context)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert not np.array_equal(a.context, c.context)


def test_empirical_means_match_reference():
    """Mean target-block area and mean context size before trimming, vs the slow reference.

    The I-JEPA paper's numbers for a 14×14 grid are about 33 tokens per target block and about
    82 context tokens per sample."""
    rng = np.random.default_rng(3)
    ours_ctx, ours_tgt = [], []
    for _ in range(200):
        m = masking.sample_multiblock_masks(rng, 16, SPEC14)
        ours_ctx.append(m.context_available.mean())
        ours_tgt.append(m.target_block[0] * m.target_block[1])
    ref = np.array([reference_context_count(rng, SPEC14) for _ in range(3000)])
    assert np.mean(ours_tgt) == pytest.approx(ref[:, 1].mean(), abs=1.0)
    assert np.mean(ours_ctx) == pytest.approx(ref[:, 0].mean(), abs=2.0)
    assert np.mean(ours_tgt) == pytest.approx(33, abs=1.5)
    assert np.mean(ours_ctx) == pytest.approx(82, abs=4)


def test_block_size_formula_matches_reference():
    for u in np.linspace(0, 0.999, 50):
        for grid in [(14, 14), (7, 7), (16, 16)]:
            got = masking.block_size(u, grid, (0.15, 0.2), (0.75, 1.5))
            assert got == reference_block_size(u, grid, (0.15, 0.2), (0.75, 1.5))


def test_default_token_counts_scale_with_grid():
    assert masking.default_token_counts((14, 14)) == (60, 33)
    assert masking.default_token_counts((16, 16)) == (78, 43)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        (
            dict(context_tokens=150, target_tokens=50),
            "method.mask.context_tokens + method.mask.target_tokens",
        ),
        (dict(context_tokens=60, target_tokens=300), "method.mask.target_tokens"),
        (dict(context_tokens=5, target_tokens=33), "method.mask.min_keep"),
        (
            dict(context_tokens=60, target_tokens=33, target_scale=(0.3, 0.1)),
            "method.mask.target_scale",
        ),
    ],
)
def test_invalid_specs_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace("+", r"\+")):
        masking.MultiBlockSpec(grid=(14, 14), **kwargs).validate()


def test_impossible_context_count_is_reported():
    spec = masking.MultiBlockSpec(
        grid=(4, 4), context_tokens=14, target_tokens=2, num_targets=4, min_keep=1
    )
    with pytest.raises(ValueError, match="method.mask.context_tokens"):
        masking.sample_multiblock_masks(np.random.default_rng(0), 4, spec)
