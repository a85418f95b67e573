"""Video at level 1: tubelet and frame-wise ViTs, V-JEPA's 3D sin-cos, tube masks."""

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa import config as config_lib
from jepa import masking, methods, validation
from jepa.methods import vjepa
from jepa.models import build_encoder, layers
from jepa.models.vit import VisionTransformer, parse_variant

# ---------------------------------------------------------------------------------------------
# Slow, obvious references
# ---------------------------------------------------------------------------------------------


def vjepa_sincos_3d(dim, t, h, w):
    """V-JEPA's get_3d_sincos_pos_embed(uniform_power=True), one token and channel at a time."""
    part = int(np.ceil(dim / 6) * 2)
    out = np.zeros((t * h * w, dim))
    for i, (pt, ph, pw) in enumerate(np.ndindex(t, h, w)):
        row = []
        for pos in (pt, ph, pw):
            omegas = [1.0 / 10000 ** (k / (part / 2)) for k in range(part // 2)]
            row += [math.sin(pos * o) for o in omegas] + [math.cos(pos * o) for o in omegas]
        out[i] = row[:dim]
    return out


def vjepa_block_size(u, grid, gen):
    """V-JEPA's _MaskGenerator._sample_block_size with its three draws given."""
    duration, height, width = grid
    t = max(1, int(duration * (gen.temporal_scale[0] + u[0] * np.ptp(gen.temporal_scale))))
    keep = int(height * width * (gen.spatial_scale[0] + u[1] * np.ptp(gen.spatial_scale)))
    ratio = gen.aspect[0] + u[2] * (gen.aspect[1] - gen.aspect[0])
    h = min(int(round(math.sqrt(keep * ratio))), height)
    w = min(int(round(math.sqrt(keep / ratio))), width)
    return t, h, w


def tiny_vit(**kw):
    return VisionTransformer((8, 8), 4, 48, kw.pop("depth", 1), 2, **kw)


def random_params(module, x):
    """Random values in the shapes ``module.init`` would give (no init compile: init's
    truncated-normal sampling costs seconds on a loaded CPU; random norms test more anyway)."""
    shapes = nn.unbox(jax.eval_shape(module.init, jax.random.key(0), x))
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: rng.normal(0, 0.3, s.shape).astype(np.float32), shapes)


CLIP = jax.random.normal(jax.random.key(0), (2, 4, 8, 8, 3))  # 2 clips of 4 frames, 8×8 RGB


# ---------------------------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [48, 64, 1024])  # 1024: the per-axis parts are cut to fit
def test_sincos_3d_uniform_matches_vjepa(dim):
    np.testing.assert_allclose(
        layers.sincos_3d_uniform(dim, 3, 2, 4), vjepa_sincos_3d(dim, 3, 2, 4), atol=1e-6
    )


def test_tubelet_tokens_equal_a_conv3d_reference():
    """depth 0: tokens = LayerNorm(tubelet · kernel + bias + position), written out by hand."""
    enc = tiny_vit(depth=0, num_frames=4, tubelet_size=2)
    params = random_params(enc, CLIP)["params"]
    kernel, bias = params["patch_embed"]["kernel"], params["patch_embed"]["bias"]
    assert kernel.shape == (2 * 4 * 4 * 3, 48)
    out, _ = jax.jit(enc.apply)({"params": params}, CLIP)
    assert out.shape == (2, 2 * 2 * 2, 48)  # a 2 × 2 × 2 tubelet grid

    clip, pos = np.asarray(CLIP), vjepa_sincos_3d(48, 2, 2, 2)
    # Conv3d weight [out, C, s, p, p] as the (s, p, p, C) rows of our kernel.
    conv = kernel.reshape(2, 4, 4, 3, 48).transpose(4, 3, 0, 1, 2)
    for b, (t, r, c) in [(0, (0, 0, 0)), (1, (1, 0, 1)), (0, (1, 1, 0))]:
        cube = clip[b, 2 * t : 2 * t + 2, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4, :]  # [s,p,p,C]
        token = np.einsum("ocspq,spqc->o", conv, cube) + bias + pos[t * 4 + r * 2 + c]
        token = (token - token.mean()) / np.sqrt(token.var() + 1e-6)
        token = token * params["norm"]["scale"] + params["norm"]["bias"]
        np.testing.assert_allclose(out[b, t * 4 + r * 2 + c], token, rtol=1e-4, atol=1e-4)


def test_tubelet_context_encoder_sees_only_its_tokens():
    enc = tiny_vit(num_frames=4, tubelet_size=2)
    params = random_params(enc, CLIP)
    apply = jax.jit(enc.apply)
    full, _ = apply(params, CLIP, jnp.tile(jnp.arange(8), (2, 1)))
    # All tokens in a shuffled order: attention is permutation-equivariant, positions travel.
    perm = jnp.array([np.random.default_rng(b).permutation(8) for b in range(2)])
    shuffled, _ = apply(params, CLIP, perm)
    np.testing.assert_allclose(shuffled, jnp.take_along_axis(full, perm[..., None], 1), atol=1e-5)
    # Context = tubelets (t, r, c) = (0,0,0), (0,1,1), (1,0,1): tubelet (1,1,1) = token 7 is
    # frames 2-3, pixels 4-7 × 4-7; changing it leaves the context encoder's output alone.
    ctx = jnp.array([[0, 3, 5]] * 2)
    out, _ = apply(params, CLIP, ctx)
    masked = CLIP.at[:, 2:4, 4:8, 4:8].add(5.0)
    np.testing.assert_array_equal(apply(params, masked, ctx)[0], out)
    seen = CLIP.at[:, 2:4, 0:4, 4:8].add(5.0)  # tubelet (1, 0, 1) = token 5, in the context
    assert not np.allclose(apply(params, seen, ctx)[0], out, atol=1e-3)


def test_build_encoder_video_fields_and_errors():
    c = config_lib.base_config()
    c.model.num_frames, c.model.tubelet_size = 16, 2
    enc = build_encoder(c)
    assert (enc.num_frames, enc.tubelet_size) == (16, 2)
    assert config_lib.video_grid(c) == (8, 14, 14)
    small = tiny_vit(num_frames=4, tubelet_size=2)
    params = random_params(small, CLIP)
    with pytest.raises(ValueError, match="model.tubelet_size=2"):
        small.apply(params, CLIP[:, :3])
    with pytest.raises(ValueError, match="takes clips"):
        small.apply(params, CLIP[:, 0])


def test_tubelet_parameter_count_and_axis_names():
    """ViT-B/16 over 16 frames: the image model plus (s − 1)·p·p·C·width patch weights (depth
    cut to 2: the blocks are the image model's)."""

    def params(shape, **kw):
        h = parse_variant("B/16") | {"depth": 2}
        enc = VisionTransformer((224, 224), h.pop("patch_size"), **h, **kw)
        return jax.eval_shape(lambda: enc.init(jax.random.key(0), jnp.zeros(shape))["params"])

    def count(tree):
        return sum(math.prod(x.shape) for x in jax.tree.leaves(nn.unbox(tree)))

    image = params((1, 224, 224, 3))
    video = params((1, 16, 224, 224, 3), num_frames=16, tubelet_size=2)
    assert count(image) == 768 * 768 + 768 + 2 * 7_087_872 + 2 * 768
    assert count(video) - count(image) == 16 * 16 * 3 * 768
    leaves = jax.tree.leaves(video, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    assert video["patch_embed"]["kernel"].names == ("patch", "embed")


# ---------------------------------------------------------------------------------------------
# Tube masks
# ---------------------------------------------------------------------------------------------

GRID = (8, 14, 14)  # 16 frames at 224 px, tubelet 2, patch 16


@functools.cache
def vjepa_spec():
    return masking.TubeSpec(GRID).with_default_counts()


def test_block_size_is_vjepas_and_within_bounds():
    rng = np.random.default_rng(0)
    gens = [*masking.VJEPA_GENERATORS, masking.TubeGenerator(3, (0.1, 0.5), (0.25, 0.75))]
    for gen in gens:
        (s_lo, s_hi), (a_lo, a_hi) = gen.spatial_scale, gen.aspect
        for _ in range(200):
            u = tuple(rng.random(3))
            t, h, w = masking.tube_block_size(u, GRID, gen)
            assert (t, h, w) == vjepa_block_size(u, GRID, gen)
            assert 8 * gen.temporal_scale[0] - 1 < t <= 8 * gen.temporal_scale[1]
            if max(h, w) < 14:  # not clipped: each side is a rounding of the exact one
                assert math.floor(196 * s_lo) <= (h + 0.5) * (w + 0.5)
                assert (h - 0.5) * (w - 0.5) <= 196 * s_hi
                assert (h - 0.5) / (w + 0.5) <= a_hi and a_lo <= (h + 0.5) / (w - 0.5)


def test_tube_masks_have_exact_counts_and_no_overlap():
    masks = masking.sample_tube_masks(np.random.default_rng(0), 16, vjepa_spec())
    assert len(masks) == 2
    for gen, m in zip(vjepa_spec().generators, masks, strict=True):
        assert m.context.shape == (16, gen.context_tokens) and m.context.dtype == np.int32
        assert m.targets.shape == (16, 1, gen.target_tokens) and m.targets.dtype == np.int32
        for ctx, tgt in zip(m.context, m.targets[:, 0], strict=True):
            assert np.all(np.diff(ctx) > 0) and np.all(np.diff(tgt) > 0)
            assert 0 <= min(ctx[0], tgt[0]) and max(ctx[-1], tgt[-1]) < 1568
            assert not set(ctx.tolist()) & set(tgt.tolist())


def test_small_unions_are_padded_from_their_neighbourhood():
    """One block of area ⌊36·0.15⌋ = 5 at aspect 1.5 (h = round(√7.5) = 3 rows, w = 2 columns)
    over both frames, and 30 targets: its 12 tokens plus 18 of the ring at distance 1."""
    gen = masking.TubeGenerator(1, (0.15, 0.15), aspect=(1.5, 1.5), context_tokens=4)
    spec = masking.TubeSpec((2, 6, 6), (dataclasses.replace(gen, target_tokens=30),))
    (m,) = masking.sample_tube_masks(np.random.default_rng(0), 32, spec)
    assert m.block == (2, 3, 2) and np.all(m.union_size == 12)
    for tgt, ctx in zip(m.targets[:, 0], m.context, strict=True):
        _, r, c = np.unravel_index(tgt, (2, 6, 6))
        assert np.ptp(r) + 1 <= 3 + 2 and np.ptp(c) + 1 <= 2 + 2  # the block and its ring
        assert not set(tgt.tolist()) & set(ctx.tolist())


def test_impossible_context_count_names_the_key():
    gen = masking.TubeGenerator(2, (0.7, 0.7), context_tokens=30, target_tokens=1)
    with pytest.raises(ValueError, match="method.mask.tube.context_tokens=30"):
        masking.sample_tube_masks(np.random.default_rng(0), 4, masking.TubeSpec((2, 4, 4), (gen,)))


def test_blocks_span_all_frames():
    """Temporal scale 1: the union is the same in every frame, so the spatial positions of
    context and (unpadded) targets never meet; one block is one t×h×w box."""
    rng = np.random.default_rng(1)
    for m in masking.sample_tube_masks(rng, 16, vjepa_spec()):
        assert m.block[0] == 8
        for ctx, tgt, size in zip(m.context, m.targets[:, 0], m.union_size, strict=True):
            if size >= len(tgt):  # no padding: targets lie in the union
                assert not set(ctx % 196) & set(tgt % 196)
    gen = masking.TubeGenerator(1, (0.2, 0.2), temporal_scale=(0.5, 0.5))
    size = masking.tube_block_size((0.3, 0.3, 0.3), GRID, gen)
    assert size[0] == 4
    union = masking._tube_distance(rng, 32, GRID, gen, size).reshape(32, *GRID) == 0
    for box in union:
        t, r, c = np.nonzero(box)
        extent = tuple(int(np.ptp(x)) + 1 for x in (t, r, c))
        assert extent == size and box.sum() == math.prod(size)


def test_masks_are_deterministic_per_seed_and_step():
    a = masking.tube_masks_for_step(3, 10, 4, vjepa_spec())
    b = masking.tube_masks_for_step(3, 10, 4, vjepa_spec())
    c = masking.tube_masks_for_step(3, 11, 4, vjepa_spec())
    for x, y, z in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(x.context, y.context)
        np.testing.assert_array_equal(x.targets, y.targets)
        assert not np.array_equal(x.context, z.context)


def expected_tube_sizes(grid, gen, points: int = 512) -> tuple[float, float]:
    """(mean block volume t·h·w, mean union size) of one sample before trimming/padding.

    The block size's distribution by midpoint quadrature over the three uniform draws (exact up
    to the cells cut by a step of the size: error < 1/points). A token lies in one block of
    size (t, h, w) with probability p = p_t·p_h·p_w, where p_h is the fraction of the H − h + 1
    block tops whose rows cover it; the blocks are independent, so it lies in the union with
    1 − (1 − p)^num_blocks. Sum over tokens, average over sizes."""

    def mid(lo, hi):  # a fixed range needs one point
        return np.array([0.5]) if lo == hi else (np.arange(points) + 0.5) / points

    ut = mid(*gen.temporal_scale)
    us, ua = np.meshgrid(mid(*gen.spatial_scale), mid(*gen.aspect), indexing="ij")
    t, _, _ = masking._block_sides(ut, 0.5, 0.5, grid, gen)
    _, h, w = masking._block_sides(0.5, us.ravel(), ua.ravel(), grid, gen)
    ts, t_counts = np.unique(t, return_counts=True)
    hws, hw_counts = np.unique(np.stack([h, w], 1), axis=0, return_counts=True)
    volume = union = 0.0
    for ti, tc in zip(ts, t_counts, strict=True):
        for (hi, wi), hc in zip(hws, hw_counts, strict=True):
            size, prob = (ti, hi, wi), tc / len(t) * hc / len(h)
            covers = []
            for n, side in zip(grid, size, strict=True):
                pos, starts = np.arange(n)[:, None], np.arange(n - side + 1)[None, :]
                covers.append(((starts <= pos) & (pos < starts + side)).mean(axis=1))
            inside = 1.0 - (1.0 - np.einsum("t,h,w->thw", *covers)) ** gen.num_blocks
            volume += prob * math.prod(size)
            union += prob * inside.sum()
    return volume, union


def test_expected_sizes_hand_computed():
    # Grid 1×1×2, area ⌊2·0.5⌋ = 1 → 1×1×1 blocks; two of them cover a token w.p. 1 − 1/4.
    gen = masking.TubeGenerator(2, (0.5, 0.5))
    assert expected_tube_sizes((1, 1, 2), gen) == pytest.approx((1.0, 1.5))


@pytest.mark.parametrize(
    "gen", [*masking.VJEPA_GENERATORS, masking.TubeGenerator(3, (0.1, 0.3), (0.5, 1.0))]
)
def test_mean_block_and_union_match_the_formula(gen):
    """The sampler's placement (before trimming, padding and the redraws that static counts
    need) against ``expected_tube_sizes`` (above); batches are the independent units."""
    grid, rng = (4, 8, 8), np.random.default_rng(2)
    volumes, unions = [], []
    for _ in range(400):
        size = masking.tube_block_size(tuple(rng.random(3)), grid, gen)
        union = masking._tube_distance(rng, 8, grid, gen, size) == 0
        volumes.append(math.prod(size))
        unions.append(union.sum(axis=1).mean())
    volume, union = expected_tube_sizes(grid, gen)
    for samples, expect in ((volumes, volume), (unions, union)):
        se = np.std(samples) / np.sqrt(len(samples))
        assert abs(np.mean(samples) - expect) < 4 * se + 1e-9, (np.mean(samples), expect, se)


def reference_block_sides(u, grid, gen):
    """V-JEPA's ``_sample_block_size`` for one draw u = (time, area, aspect), from its
    definition: t = ⌊T·scale_t⌋, area = ⌊H·W·scale_s⌋, h = round(√(area·ratio)),
    w = round(√(area / ratio)), each side within [1, the grid's side]."""
    frames, height, width = grid
    (t0, t1), (s0, s1), (a0, a1) = gen.temporal_scale, gen.spatial_scale, gen.aspect
    t = max(1, math.floor(frames * (t0 + u[0] * (t1 - t0))))
    area = math.floor(height * width * (s0 + u[1] * (s1 - s0)))
    ratio = a0 + u[2] * (a1 - a0)
    h = min(max(1, round(math.sqrt(area * ratio))), height)
    w = min(max(1, round(math.sqrt(area / ratio))), width)
    return t, h, w


def reference_union_mean(grid, gen, draws: int) -> float:
    """The mean union of ``num_blocks`` uniformly placed blocks on ``grid``: for each block size
    (midpoint rule over the aspect draw; V-JEPA's generators have fixed scales), a token at
    (t, r, c) lies in one block with probability (tops covering r / tops) × (lefts covering c /
    lefts) × (starts covering t / starts), in the union with 1 − (1 − p)^num_blocks."""
    frames, height, width = grid
    total = 0.0
    for i in range(draws):
        t, h, w = reference_block_sides((0.5, 0.5, (i + 0.5) / draws), grid, gen)
        union = 0.0
        for f in range(frames):
            pt = sum(s <= f < s + t for s in range(frames - t + 1)) / (frames - t + 1)
            for r in range(height):
                ph = sum(s <= r < s + h for s in range(height - h + 1)) / (height - h + 1)
                for c in range(width):
                    pw = sum(s <= c < s + w for s in range(width - w + 1)) / (width - w + 1)
                    union += 1.0 - (1.0 - pt * ph * pw) ** gen.num_blocks
        total += union
    return total / draws


def reference_per_step_counts(grid, gen, batches: int, seed: int):
    """V-JEPA's collator per step, restated: one block size per batch, per sample of its batch
    of 24 ``num_blocks`` blocks at uniform positions (a sample whose blocks cover the whole grid
    is redrawn), the target the union, the context the rest; per batch the smallest union and
    the smallest context (the reference trims every sample to them). Returns the per-batch
    (smallest context, smallest union) [batches, 2]."""
    rng = np.random.default_rng(seed)
    n = math.prod(grid)
    out = []
    for _ in range(batches):
        t, h, w = reference_block_sides(rng.random(3), grid, gen)
        unions = []
        while len(unions) < 24:  # V-JEPA's per-GPU batch (vitl16.yaml, vith16.yaml)
            inside = np.zeros(grid, bool)
            for _ in range(gen.num_blocks):
                f = rng.integers(0, grid[0] - t + 1)
                r = rng.integers(0, grid[1] - h + 1)
                c = rng.integers(0, grid[2] - w + 1)
                inside[f : f + t, r : r + h, c : c + w] = True
            if inside.sum() < n:
                unions.append(int(inside.sum()))
        out.append((n - max(unions), min(unions)))
    return np.array(out, np.float64)


def test_default_counts_are_the_references_per_step_counts():
    """The defaults against V-JEPA's collator restated in this test: the mean union from its
    definition (short range: 8 blocks of ⌊196 · 0.15⌋ = 29 patches, every frame, 62.7 % of
    the 1568 tokens), and the per-step counts (batch minima at its batch of 24) from an
    independent simulation, within 4 standard errors."""
    short, long = vjepa_spec().generators
    assert (short.context_tokens, short.target_tokens) == (364, 745)
    assert (long.context_tokens, long.target_tokens) == (98, 1100)
    assert reference_union_mean(GRID, short, draws=60) / 1568 == pytest.approx(0.627, abs=0.002)
    assert reference_union_mean(GRID, long, draws=60) / 1568 == pytest.approx(0.816, abs=0.002)
    for g in (short, long):
        counts = reference_per_step_counts(GRID, g, batches=300, seed=5)
        mean, se = counts.mean(0), counts.std(0) / np.sqrt(len(counts))
        assert abs(mean[0] - g.context_tokens) < 4 * se[0] + 1, (mean, se)
        assert abs(mean[1] - g.target_tokens) < 4 * se[1] + 1, (mean, se)
    # A batch minimum lies below the mean: fewer tokens than the expected union/complement.
    for g in vjepa_spec().generators:
        _, union = expected_tube_sizes(GRID, g)
        assert g.target_tokens < union and g.context_tokens < 1568 - union


def test_config_tube_spec_and_validation():
    c = methods.with_method(config_lib.base_config(), "masked")
    c.total_steps = 1
    c.model.num_frames, c.method.mask.kind = 16, "tube"
    validation.validate(c)
    assert vjepa.tube_spec(c) == vjepa_spec()
    c.method.mask.tube.context_tokens = (100, 0)
    assert vjepa.tube_spec(c).generators[0].context_tokens == 100
    for key, value, match in [
        ("model.num_frames", 15, "model.tubelet_size=2"),
        ("model.num_frames", 0, "masks the tubelet grid; model.num_frames=0"),
        ("method.mask.tube.num_blocks", (8,), "has 2 entries and method.mask.tube.num_blocks 1"),
        ("method.mask.tube.target_tokens", (1500, 0), r"method.mask.tube.context_tokens\[0\] \+"),
        ("method.mask.tube.aspect", ((0.75, 1.5), (2.0, 1.0)), r"method.mask.tube.aspect\[1\]"),
        ("method.mask.kind", "tubes", "method.mask.kind='tubes'"),
    ]:
        bad = methods.with_method(config_lib.base_config(), "masked")
        bad.total_steps = 1
        bad.model.num_frames, bad.method.mask.kind = 16, "tube"
        group, leaf = key.rsplit(".", 1)
        node = bad
        for p in group.split("."):
            node = node[p]
        node[leaf] = value
        with pytest.raises(ValueError, match=match):
            validation.validate(bad)


# ---------------------------------------------------------------------------------------------
# V-JEPA: the masked objective on clips with tube masks
# ---------------------------------------------------------------------------------------------


def tiny_vjepa_config(**overrides):
    """4 frames of 32×32 RGB, tubelet 2, patch 8: a (2, 4, 4) grid, V-JEPA's two generators."""
    from helpers import tiny_config

    return tiny_config(
        **{"model.num_frames": 4, "method.mask.kind": "tube", "model.depth": 1, **overrides}
    )


def test_vjepa_config_errors_name_the_key():
    validation.validate(tiny_vjepa_config())
    for overrides, match in [
        ({"model.num_frames": 0}, "model.num_frames=0"),
        (
            {"method.mask.kind": "multiblock"},
            "needs V-JEPA.s 3D masks; method.mask.kind=.multiblock",
        ),
        ({"method.num_views": 2}, r"unknown config key method\.num_views"),
    ]:
        with pytest.raises(ValueError, match=match):
            validation.validate(tiny_vjepa_config(**overrides))


def clip_batch(config, step: int) -> dict:
    """Random clips and the step's tube masks, under the batch keys the loss reads."""

    m = config.model
    rng = np.random.default_rng([step, 7])
    shape = (config.batch_size, m.num_frames, m.image_size, m.image_size, m.channels)
    batch = {"image": rng.standard_normal(shape).astype(np.float32)}
    tube = masking.tube_masks_for_step(0, step, config.batch_size, vjepa.tube_spec(config))
    for (ctx_key, tgt_key), masks in zip(vjepa.tube_mask_keys(config), tube, strict=True):
        batch[ctx_key], batch[tgt_key] = masks.context, masks.targets
    return batch


def test_vjepa_step_is_the_same_on_one_device_and_a_mesh():
    """Two steps of the tube-masked loss on 1 device and on data 2 × fsdp 4: equal losses; the
    energy is the mean of the generators' energies."""
    from helpers import train_on_mesh

    results = []
    for mesh_shape in [(1, 1, 1), (2, 4, 1)]:
        config = tiny_vjepa_config()
        config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_shape
        validation.validate(config, int(np.prod(mesh_shape)))
        history, *_ = train_on_mesh(config, mesh_shape, clip_batch, 2)
        results.append([m["loss"] for m in history])
        metrics = history[-1]
        parts = [metrics["energy_0"], metrics["energy_1"]]
        assert metrics["energy"] == pytest.approx(np.mean(parts), rel=1e-6)
        assert parts[0] != parts[1]  # two different pairs, not one counted twice
    assert np.all(np.isfinite(results[0]))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5)


def test_vjepa_trains_on_moving_mnist(tmp_path, smm_data_dir):
    """3 steps of ``train_and_evaluate`` on 4-frame windows of SM-MNIST: the pipeline's
    sequences, the per-step tube masks, the health monitor on clips."""
    import json
    import os

    from helpers import tiny_smm_overrides, with_overrides

    from jepa import train

    c = methods.with_method(config_lib.base_config(), "masked")
    overrides = {
        **tiny_smm_overrides(smm_data_dir),
        "model.num_frames": 4,
        "method.mask.kind": "tube",
    }
    config = with_overrides(c, overrides)
    train.train_and_evaluate(config, str(tmp_path))
    rows = [json.loads(line) for line in open(os.path.join(tmp_path, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["energy"] > 0 for r in rows)
    assert "collapse_alarms" in rows[-1]  # the health monitor read the clips
