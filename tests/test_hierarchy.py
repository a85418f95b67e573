"""Hierarchical JEPA: the pieces by hand, the training modes, sharding, level-by-level restore,
and the per-level evaluation on a tiny stochastic Moving-MNIST run."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import train_on_mesh, with_overrides

from jepa import config as config_lib
from jepa import hierarchy, train, validation
from jepa.evaluate import levels as levels_eval
from jepa.evaluate import main as eval_main
from jepa.models.sequence import SequenceEncoder

LEVEL2 = dict(width=32, depth=1, num_heads=2, horizons=(2, 3), predictor_hidden=32)
LEVEL3 = dict(width=32, depth=1, num_heads=2, window=2, horizons=(1,), predictor_hidden=32)


def tiny_hierarchy_config(data_dir="", levels=(LEVEL2,), **overrides):
    c = config_lib.base_config()
    c.objective = "hierarchy"
    c.hierarchy.levels = tuple(levels)
    return with_overrides(
        c,
        {
            "model.image_size": 64,
            "model.patch_size": 32,
            "model.channels": 1,
            "model.width": 32,
            "model.depth": 1,
            "model.num_heads": 2,
            "model.predictor.width": 16,
            "model.predictor.depth": 1,
            "model.predictor.num_heads": 2,
            "data.dataset": "stochastic_moving_mnist/tiny",
            "data.data_dir": data_dir,
            "data.test_split": "test",
            "data.sequence.frames": 8,
            "loss.energy": "l2",
            "loss.regularize": "tokens",
            "loss.vicreg_var": 1.0,
            "batch_size": 8,
            "total_steps": 3,
            "log_every": 1,
            "health_every": 3,
            "checkpoint_every": 3,
            "eval.probe_epochs": 2,
            "eval.lrs": (1e-2,),
            "eval.wds": (0.0,),
            **overrides,
        },
    )


def frames_batch(config, seed=0):
    rng = np.random.default_rng(seed)
    m = config.model
    shape = (config.batch_size, config.data.sequence.frames, m.image_size, m.image_size, 1)
    return {"image": rng.standard_normal(shape).astype(np.float32)}


# ------------------------------------------------------------------------------- pieces
def test_windows_pooling_and_gradient_scale_by_hand():
    ctx, tgt = hierarchy.level1_windows(frames=5, context=2, horizon=1)
    assert ctx.tolist() == [[0, 1], [1, 2], [2, 3]] and tgt.tolist() == [2, 3, 4]
    ctx, tgt = hierarchy.level1_windows(frames=6, context=3, horizon=2)
    assert ctx.tolist() == [[0, 1, 2], [1, 2, 3]] and tgt.tolist() == [4, 5]
    x = jnp.arange(14.0).reshape(1, 7, 2)
    np.testing.assert_allclose(
        hierarchy.pool_windows(x, 3)[0], [[2.0, 3.0], [8.0, 9.0]]
    )  # a trailing partial window is dropped
    v = jnp.array([1.0, -2.0])
    f = lambda w: jax.grad(lambda y: jnp.sum(hierarchy.scale_gradient(y, w) ** 2))(v)  # noqa: E731
    np.testing.assert_allclose(f(0.25), 0.25 * 2 * v)
    np.testing.assert_allclose(f(0.0), 0.0)
    np.testing.assert_allclose(hierarchy.scale_gradient(v, 0.25), v)


@pytest.mark.parametrize("input_steps", [1, 3])
def test_sequence_encoder_sees_only_the_past(input_steps):
    enc = SequenceEncoder(width=16, depth=2, num_heads=2, input_steps=input_steps)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 8))
    params = enc.init(jax.random.PRNGKey(1), x)
    y = enc.apply(params, x)
    x2 = x.at[:, 4:].set(7.0)  # change the future of step 3
    y2 = enc.apply(params, x2)
    np.testing.assert_allclose(y[:, :4], y2[:, :4], atol=1e-6)
    assert np.abs(np.asarray(y[:, 4:] - y2[:, 4:])).max() > 1e-3


def test_time_tubelet_reads_the_previous_steps_without_attention():
    """With no blocks, step t's output depends on the inputs t-k+1 … t only (input_steps=k)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 6, 8))
    for k in (1, 2):
        enc = SequenceEncoder(width=16, depth=0, num_heads=2, input_steps=k)
        params = enc.init(jax.random.PRNGKey(1), x)
        changed = np.abs(np.asarray(enc.apply(params, x.at[:, 2].set(5.0)) - enc.apply(params, x)))
        moved = changed.max(-1)[0] > 1e-4
        np.testing.assert_array_equal(moved, [t in range(2, 2 + k) for t in range(6)])


def test_bad_hierarchy_configs_name_the_key():
    cases = [
        ({"hierarchy.mode": "stacked"}, "hierarchy.mode"),
        ({"hierarchy.level1.context_frames": 8}, "data.sequence.frames=8"),
        ({"hierarchy.mode": "greedy", "hierarchy.frozen_levels": 1}, "hierarchy.init_from"),
        ({"hierarchy.mode": "greedy", "hierarchy.frozen_levels": 2}, "frozen_levels=2"),
        ({"hierarchy.level1.summary_weight": -1.0}, "hierarchy.level1.summary_weight=-1.0"),
    ]
    for overrides, key in cases:
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            validation.validate(tiny_hierarchy_config(**overrides), 1)
    too_far = dict(LEVEL2, horizons=(8,))
    with pytest.raises(ValueError, match=r"hierarchy\.levels\[0\] \(level 2\)\.horizons"):
        validation.validate(tiny_hierarchy_config(levels=(too_far,)), 1)
    future_recall = dict(LEVEL2, recall=(0, -1))
    with pytest.raises(ValueError, match=r"\(level 2\)\.recall=\(0, -1\)"):
        validation.validate(tiny_hierarchy_config(levels=(future_recall,)), 1)
    no_input = dict(LEVEL2, input_steps=0)
    with pytest.raises(ValueError, match=r"\(level 2\)\.input_steps=0"):
        validation.validate(tiny_hierarchy_config(levels=(no_input,)), 1)
    with pytest.raises(ValueError, match=r"unknown keys \['widht'\]"):
        validation.validate(tiny_hierarchy_config(levels=(dict(widht=3),)), 1)


def test_below_target_level2_energy_by_hand():
    """target="below": level 2 predicts level 1's EMA-target view of the frame h steps later
    (LayerNorm'd target tokens averaged), in level 1's width; its energy is the masked mean
    of the squared errors over every (horizon, step) that stays inside the sequence."""
    below = dict(LEVEL2, width=16, target="below", vicreg_var=0.0, vicreg_cov=0.0)
    c = tiny_hierarchy_config(levels=(below,))
    model = hierarchy.Hierarchy(c)
    params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
    target_params = jax.tree.map(lambda x: x * 1.1, params["encoder"])  # an EMA ≠ online
    frames = jnp.asarray(frames_batch(c)["image"])[:2]
    _, aux = jax.jit(model.loss_fn)(params, target_params, {"image": frames})

    tokens_of = jax.jit(model.frame_tokens)
    online = np.asarray(tokens_of(params["encoder"], frames))
    tokens = np.asarray(tokens_of(target_params, frames))
    norm = (tokens - tokens.mean(-1, keepdims=True)) / np.sqrt(tokens.var(-1, keepdims=True) + 1e-5)
    view = norm.mean(2)  # [b, T, width of level 1]
    states = jax.jit(model.encode_level, static_argnums=1)(params, 2, online.mean(2))
    p2 = params["levels"]["level2"]["predictor"]
    pred = np.asarray(jax.jit(model.step_predictors[0].apply)({"params": p2}, states))
    assert states.shape[-1] == 16 and pred.shape[-1] == c.model.width == 32
    t = view.shape[1]
    per_sample = []
    for b in range(len(view)):
        errs = [
            ((pred[b, i, s] - view[b, s + h]) ** 2).mean()
            for i, h in enumerate(below["horizons"])
            for s in range(t - h)
        ]
        per_sample.append(np.mean(errs))
    np.testing.assert_allclose(aux["level2/energy"], np.mean(per_sample), rtol=1e-5)


def test_recall_energy_reads_the_levels_past_inputs_back_by_hand():
    """recall=(0, 2): a head on level 2's state at t predicts level 2's own input (level 1's
    online frame embedding) at t and t - 2; its energy is the masked mean squared error over
    the steps where t - r exists, added to the level's loss with recall_weight."""
    level = dict(LEVEL2, recall=(0, 2), recall_weight=0.5, vicreg_var=0.0, vicreg_cov=0.0)
    c = tiny_hierarchy_config(levels=(level,))
    model = hierarchy.Hierarchy(c)
    params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
    frames = jnp.asarray(frames_batch(c)["image"])[:2]
    _, aux = jax.jit(model.loss_fn)(params, params["encoder"], {"image": frames})

    online = np.asarray(jax.jit(model.frame_tokens)(params["encoder"], frames)).mean(2)
    states = jax.jit(model.encode_level, static_argnums=1)(params, 2, online)
    head = params["levels"]["level2"]["recall"]
    recalled = np.asarray(jax.jit(model.recall_heads[0].apply)({"params": head}, states))
    assert recalled.shape == (2, 2, online.shape[1], online.shape[2])
    per_sample = []
    for b in range(2):
        errs = [
            ((recalled[b, i, t] - online[b, t - r]) ** 2).mean()
            for i, r in enumerate(level["recall"])
            for t in range(r, online.shape[1])
        ]
        per_sample.append(np.mean(errs))
    np.testing.assert_allclose(aux["level2/recall_energy"], np.mean(per_sample), rtol=1e-5)
    expected = aux["level2/energy"] + 0.5 * aux["level2/recall_energy"]
    np.testing.assert_allclose(aux["level2/loss"], expected, rtol=1e-5)


def test_summary_context_is_the_full_context_at_full_resolution_and_the_frame_mean_at_one():
    """level1.summary_weight: with pool_grid = the token grid the per-frame summaries are the
    tokens themselves, so the summary energy equals the full-context energy; with pool_grid 1
    it is the predictor fed each frame's LayerNorm'd mean at the grid's centre token. The
    term enters the level-1 loss with its weight."""
    from jepa import objectives

    for g in (2, 1):
        c = tiny_hierarchy_config(**{"hierarchy.level1.pool_grid": g})
        model = hierarchy.Hierarchy(c)
        params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
        frames = jnp.asarray(frames_batch(c)["image"])[:2]
        online = model.frame_tokens(params["encoder"], frames)
        ctx, tgt = model.train_windows()
        sx, sy = model.level1_pairs(online, objectives.normalize_targets(online), ctx, tgt)
        summary = model.summary_context_energy(params["predictor"], online, ctx, sy)
        if g == 2:
            expected = model.energy(model.level1_predict(params["predictor"], sx), sy).mean()
        else:  # 2 × 2 grid: the centre token of the one region is (1, 1), index 3
            means = objectives.normalize_targets(online.mean(2))[:, np.asarray(ctx)]
            pred = model.predictor.apply(
                {"params": params["predictor"]},
                means.reshape(-1, 2, 32),
                jnp.broadcast_to(jnp.asarray([[3, 7]]), (means.shape[0] * means.shape[1], 2)),
                jnp.broadcast_to(model.tgt_idx, (means.shape[0] * means.shape[1], 1, 4)),
            )[:, 0]
            expected = model.energy(pred, sy).mean()
        np.testing.assert_allclose(float(summary), float(expected), rtol=1e-5)

    batch = {"image": frames}
    loss0, _ = model.loss_fn(params, params["encoder"], batch)
    c2 = with_overrides(c, {"hierarchy.level1.summary_weight": 0.5})
    loss1, aux = hierarchy.Hierarchy(c2).loss_fn(params, params["encoder"], batch)
    np.testing.assert_allclose(
        float(loss1), float(loss0) + 0.5 * float(aux["level1/summary_energy"]), rtol=1e-5
    )


def test_masked_context_sees_only_the_visible_tubes():
    """level1.mask_ratio: the same random half of the 2 × 2 grid is hidden in both context
    frames; pixels under the hidden patches cannot change the masked energy, a visible
    patch's can."""
    c = tiny_hierarchy_config(**{"hierarchy.level1.mask_ratio": 0.5})
    model = hierarchy.Hierarchy(c)
    params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
    frames = jnp.asarray(frames_batch(c)["image"])[:2]
    ctx = jnp.asarray([[0, 1]])
    sy = jnp.zeros((2, 4, 32))  # energy = |prediction|²: every change of the prediction shows
    key = jax.random.PRNGKey(7)

    @jax.jit
    def energy(f):
        return model.masked_context_energy(params["encoder"], params["predictor"], f, ctx, sy, key)

    keep = np.asarray(jnp.argsort(jax.random.uniform(key, (2, 4)), axis=-1)[:, :2])
    hidden = [sorted(set(range(4)) - set(k)) for k in keep]

    noise = np.random.default_rng(1).standard_normal((32, 32, 1)) * 5.0

    def perturb(f, patches_of):  # add noise to patches (raster order on the 2 × 2 grid)
        f = np.array(f)
        for i, patches in enumerate(patches_of):
            for p in patches:
                r, col = divmod(p, 2)
                f[i, :2, r * 32 : (r + 1) * 32, col * 32 : (col + 1) * 32] += noise
        return jnp.asarray(f)

    base = float(energy(frames))
    # Hidden patches never enter the computation: bit-identical. (At init the prediction
    # leans little on the context, so a visible patch moves it by ~1e-5 relative: 100× the
    # float32 resolution.)
    assert float(energy(perturb(frames, hidden))) == base
    assert abs(float(energy(perturb(frames, [k[:1] for k in keep]))) - base) > 1e-6 * base


def test_prediction_space_map_per_target_kind():
    """The long-horizon comparison maps a level's predictions into level 1's view: no map for
    a level 2 that predicts that view ("below"); a ridge probe from its states ("self")."""
    rng = np.random.default_rng(0)
    c = tiny_hierarchy_config()
    common = rng.standard_normal((40, 8, 32))
    rotation = np.linalg.qr(rng.standard_normal((32, 32)))[0]
    states = common @ rotation  # a (well-conditioned) linear view of the common space
    below = hierarchy.Hierarchy(tiny_hierarchy_config(levels=(dict(LEVEL2, target="below"),)))
    x = rng.standard_normal((5, 32))
    same = levels_eval.prediction_space_map(below.config, below, 2, [None, states], common)
    np.testing.assert_array_equal(same(x), x)
    own = levels_eval.prediction_space_map(c, hierarchy.Hierarchy(c), 2, [None, states], common)
    np.testing.assert_allclose(own(states[:2, 3]), common[:2, 3], atol=0.05)
    # A "below" level 3 predicts level 2's states pooled over its window (2 frames): its probe
    # reads 32-wide pooled level-2 vectors, not its own (16-wide) states.
    three = tiny_hierarchy_config(levels=(LEVEL2, dict(LEVEL3, width=16, target="below")))
    level3 = rng.standard_normal((40, 4, 16))
    fn = levels_eval.prediction_space_map(
        three, hierarchy.Hierarchy(three), 3, [None, states, level3], common
    )
    assert fn(x).shape == (5, 32) and np.isfinite(fn(x)).all()


def test_joint_weight_sets_how_much_level2_trains_level1():
    """Level 2's loss reaches the level-1 encoder only through the joint weight."""

    def encoder_grad(weight):
        c = tiny_hierarchy_config(
            **{"hierarchy.joint_weight": weight, "hierarchy.level1.weight": 0.0}
        )
        c.loss.vicreg_var = 0.0  # level 1 contributes nothing: only level 2's gradient is left
        model = hierarchy.Hierarchy(c)
        params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
        batch = {"image": jnp.asarray(frames_batch(c)["image"])}
        grad = jax.jit(jax.grad(lambda p: model.loss_fn(p, params["encoder"], batch)[0]))
        return grad(params)["encoder"]["patch_embed"]["kernel"]

    # (The scale itself is linear by construction and checked by hand above.)
    assert float(jnp.abs(encoder_grad(0.0)).max()) == 0.0
    assert float(jnp.abs(encoder_grad(0.5)).max()) > 0.0


@pytest.mark.parametrize("target_encoder", ["ema", "online"])
def test_predict_grad_scales_only_what_level1s_prediction_terms_send_into_the_encoder(
    target_encoder,
):
    """level1.predict_grad on every prediction term (next frame, masked context, summary,
    inpaint), with EMA targets and with online targets (which carry a gradient of their own):
    the loss and the predictor's gradient do not change, the encoder's gradient is scaled by it
    (exactly linear: 0.5 gives half of 1's, 0 gives none), and a term outside the prediction
    terms (VICReg on the frame means) still trains the encoder at 0."""

    def grads(predict_grad, vicreg_var=0.0):
        c = tiny_hierarchy_config(
            levels=(),
            **{
                "loss.target_encoder": target_encoder,
                "hierarchy.level1.predict_grad": predict_grad,
                "hierarchy.level1.mask_ratio": 0.5,
                "hierarchy.level1.summary_weight": 1.0,
                "hierarchy.level1.inpaint_weight": 1.0,
                "hierarchy.level1.inpaint_block": 2,
                "loss.vicreg_var": vicreg_var,
            },
        )
        model = hierarchy.Hierarchy(c)
        params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
        batch = {"image": jnp.asarray(frames_batch(c)["image"])}
        loss, grad = jax.jit(
            jax.value_and_grad(lambda p: model.loss_fn(p, params["encoder"], batch)[0])
        )(params)
        return float(loss), grad

    (loss1, g1), (loss_half, g_half), (loss0, g0) = grads(1.0), grads(0.5), grads(0.0)
    assert loss1 == loss_half == loss0
    for got in (g_half, g0):
        for a, b in zip(
            jax.tree.leaves(got["predictor"]), jax.tree.leaves(g1["predictor"]), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    enc1, enc_half = jax.tree.leaves(g1["encoder"]), jax.tree.leaves(g_half["encoder"])
    largest = max(float(jnp.abs(x).max()) for x in enc1)
    assert largest > 1e-6  # small at init (the predictor's output projections are), not zero
    for a, b in zip(enc_half, enc1, strict=True):
        np.testing.assert_allclose(a, 0.5 * b, rtol=1e-4, atol=1e-4 * largest)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(g0["encoder"]))
    _, g_reg = grads(0.0, vicreg_var=1.0)
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_reg["encoder"])) > 1e-6
    with pytest.raises(ValueError, match="hierarchy.level1.predict_grad"):
        hierarchy.validate(tiny_hierarchy_config(**{"hierarchy.level1.predict_grad": 1.5}))


def test_pool_grid_averages_regions_of_the_token_grid():
    c = tiny_hierarchy_config(**{"model.patch_size": 16, "hierarchy.level1.pool_grid": 2})
    model = hierarchy.Hierarchy(c)  # a 4 × 4 grid read as 2 × 2 regions of 2 × 2 tokens
    tokens = jnp.arange(16.0)[None, None, :, None] * jnp.array([1.0, -1.0])  # [1, 1, 16, 2]
    # row-major grid 0..15: region (0, 0) holds tokens 0, 1, 4, 5 → mean 2.5; (0, 1): 4.5;
    # (1, 0): 10.5; (1, 1): 12.5; each region's 2 features in a row.
    expected = [2.5, -2.5, 4.5, -4.5, 10.5, -10.5, 12.5, -12.5]
    np.testing.assert_allclose(model.frame_embedding(tokens)[0, 0], expected)
    params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
    embed = params["levels"]["level2"]["encoder"]["embed"]["kernel"]
    assert embed.shape == (4 * c.model.width, LEVEL2["width"])
    loss, _ = model.loss_fn(params, params["encoder"], {"image": frames_batch(c)["image"]})
    assert np.isfinite(float(loss))
    with pytest.raises(ValueError, match="hierarchy.level1.pool_grid=3"):
        hierarchy.Hierarchy(
            tiny_hierarchy_config(**{"model.patch_size": 16, "hierarchy.level1.pool_grid": 3})
        )


def test_level1_slowness_term_is_the_frame_means_change_over_the_sequence():
    from jepa import step as step_lib

    plain = tiny_hierarchy_config()
    slow = tiny_hierarchy_config(**{"loss.slowness": 0.5})
    model = hierarchy.Hierarchy(slow)
    params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
    batch = {"image": jnp.asarray(frames_batch(slow)["image"])}
    loss, aux = model.loss_fn(params, params["encoder"], batch)
    plain_loss, plain_aux = hierarchy.Hierarchy(plain).loss_fn(params, params["encoder"], batch)
    tokens = model.frame_tokens(params["encoder"], batch["image"])
    expected = step_lib.slowness(tokens, "tokens")  # the config regularizes every token
    assert float(aux["level1/slowness"]) == pytest.approx(float(expected), rel=1e-5)
    assert "level1/slowness" not in plain_aux
    assert float(loss) == pytest.approx(float(plain_loss) + 0.5 * float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="loss.slowness=-1"):
        validation.validate(tiny_hierarchy_config(**{"loss.slowness": -1.0}))


def test_greedy_loss_skips_the_frozen_level_and_keeps_level2_gradient():
    """Greedy mode computes no level-1 terms (their gradients would be zeroed), and level 2's
    gradient is exactly the one of a joint run whose levels learn side by side."""
    side_by_side = tiny_hierarchy_config(**{"hierarchy.joint_weight": 0.0})
    greedy = tiny_hierarchy_config(
        **{"hierarchy.mode": "greedy", "hierarchy.frozen_levels": 1, "hierarchy.init_from": "x"}
    )
    params = nn.unbox(hierarchy.Hierarchy(side_by_side).init_params(jax.random.PRNGKey(0)))
    batch = {"image": jnp.asarray(frames_batch(side_by_side)["image"])}

    def grads_and_aux(config):
        model = hierarchy.Hierarchy(config)
        loss = lambda p: model.loss_fn(p, params["encoder"], batch)  # noqa: E731
        return jax.jit(jax.grad(loss, has_aux=True))(params)

    g_joint, aux_joint = grads_and_aux(side_by_side)
    g_greedy, aux_greedy = grads_and_aux(greedy)
    assert not [k for k in aux_greedy if k.startswith("level1/")]
    assert "level1/energy" in aux_joint
    np.testing.assert_allclose(aux_greedy["level2/loss"], aux_joint["level2/loss"], rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        g_greedy["levels"],
        g_joint["levels"],
    )
    assert float(jnp.abs(g_greedy["encoder"]["patch_embed"]["kernel"]).max()) == 0.0


def load_array_runs():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "scripts" / "array_runs.py"
    spec = importlib.util.spec_from_file_location("array_runs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cached_frozen_inputs_give_the_greedy_loss_and_gradients_of_frames():
    """``hierarchy.cached_inputs``: level 1's outputs computed once per run (array jobs) feed
    level 2 the same numbers as running the frozen level 1 on every batch, so the loss and
    level 2's gradients are those of the uncached greedy step, batch by batch."""
    array_runs = load_array_runs()
    greedy = {"hierarchy.mode": "greedy", "hierarchy.frozen_levels": 1, "hierarchy.init_from": "x"}
    plain = tiny_hierarchy_config(**greedy, **{"hierarchy.level1.pool_grid": 2})
    cached = tiny_hierarchy_config(
        **greedy, **{"hierarchy.level1.pool_grid": 2, "hierarchy.cached_inputs": True}
    )
    params = nn.unbox(hierarchy.Hierarchy(plain).init_params(jax.random.PRNGKey(0)))
    frames = np.random.default_rng(0).integers(0, 256, (5, 10, 64, 64, 1), dtype=np.uint8)
    cache = array_runs.frozen_level_outputs(cached, params, frames, chunk=2)
    assert cache.shape == (5, 10, 4 * 32)  # 2 × 2 regions × width 32 per frame
    batch = array_runs.sample_batch(plain, frames, np.random.default_rng(1))
    batch_cached = array_runs.sample_batch(cached, frames, np.random.default_rng(1), cache)
    assert set(batch_cached) == {"frozen_inputs"} and batch_cached["frozen_inputs"].shape == (
        8,
        8,
        128,
    )

    def grads(config, b):
        loss = hierarchy.Hierarchy(config).loss_fn
        return jax.jit(jax.grad(lambda p: loss(p, params["encoder"], b, 3), has_aux=True))(params)

    g_plain, aux_plain = grads(plain, jax.tree.map(jnp.asarray, batch))
    g_cached, aux_cached = grads(cached, jax.tree.map(jnp.asarray, batch_cached))
    assert aux_cached.keys() == aux_plain.keys()
    np.testing.assert_allclose(aux_cached["level2/loss"], aux_plain["level2/loss"], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
        g_cached["levels"],
        g_plain["levels"],
    )
    with pytest.raises(ValueError, match="hierarchy.cached_inputs=True needs"):
        validation.validate(tiny_hierarchy_config(**{"hierarchy.cached_inputs": True}))
    below = dict(LEVEL2, target="below")
    with pytest.raises(ValueError, match="target is 'below'"):
        validation.validate(
            tiny_hierarchy_config(levels=(below,), **greedy, **{"hierarchy.cached_inputs": True})
        )
    from jepa import preflight

    with pytest.raises(ValueError, match="hierarchy.cached_inputs=True: jepa-train"):
        preflight.check_trainer_inputs(cached)


# ----------------------------------------------------------------- modes and sharding
def run_steps(config, mesh_shape, steps=3):
    """(per-step losses of every level, params snapshots: initial, then after each step)."""
    metrics, _, _, params = train_on_mesh(
        config, mesh_shape, lambda c, s: frames_batch(c, seed=s), steps, keep_params=True
    )
    return [{k: v for k, v in m.items() if k.endswith("loss")} for m in metrics], params


def test_sharded_hierarchy_equals_single_device():
    """Data and FSDP axes at once; three levels train in the alternating-mode test below."""
    c = tiny_hierarchy_config()
    single, _ = run_steps(c, (1, 1, 1))
    sharded, _ = run_steps(c, (2, 4, 1))
    assert set(single[0]) == {"loss", "level1/loss", "level2/loss"}
    for a, b in zip(single, sharded, strict=True):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=key)


def _changed(before, after) -> bool:
    return any(
        not np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    )


def test_alternating_mode_moves_one_level_per_step():
    c = tiny_hierarchy_config(
        levels=(LEVEL2, LEVEL3),
        **{"hierarchy.mode": "alternating", "hierarchy.alternate_every": 1},
    )
    _, history = run_steps(c, (1, 1, 1), steps=3)
    for step in range(3):
        before, after = history[step], history[step + 1]
        level1 = {k: v for k, v in before.items() if k != "levels"}
        moved = [
            _changed(level1, {k: after[k] for k in level1}),
            _changed(before["levels"]["level2"], after["levels"]["level2"]),
            _changed(before["levels"]["level3"], after["levels"]["level3"]),
        ]
        assert moved == [k == step for k in range(3)], (step, moved)


# ------------------------------------------- a real run: restore level by level, evaluate
def test_greedy_run_loads_a_trained_level1_and_keeps_it_frozen(tmp_path, smm_data_dir):
    from jepa import checkpointing, hub

    # Level 1 with the conv stem and the views term (its projector is loaded too).
    views = {
        "model.patch_size": 16,
        "model.stem": "conv",
        "hierarchy.level1.views_weight": 1.0,
        "hierarchy.level1.views": 2,
    }
    one = str(tmp_path / "one_level")
    train.train_and_evaluate(tiny_hierarchy_config(smm_data_dir, levels=(), **views), one)
    _, _, trained, trained_target = hub.load_model_params(one)

    two = str(tmp_path / "two_levels")
    greedy = {
        "hierarchy.mode": "greedy",
        "hierarchy.frozen_levels": 1,
        "hierarchy.init_from": one,
        **views,
    }
    train.train_and_evaluate(tiny_hierarchy_config(smm_data_dir, **greedy), two)
    _, _, params, target = hub.load_model_params(two)
    for name in ("encoder", "predictor", "views_projector"):  # level 1: exactly the loaded one
        jax.tree.map(np.testing.assert_array_equal, params[name], trained[name])
    jax.tree.map(np.testing.assert_array_equal, target, trained_target)
    fresh = hierarchy.Hierarchy(tiny_hierarchy_config(smm_data_dir, **views))
    init = nn.unbox(fresh.init_params(jax.random.PRNGKey(0)))["levels"]["level2"]
    assert _changed(init, params["levels"]["level2"])  # level 2 trained

    # The per-level evaluation runs end to end on this run, with finite numbers.
    r1 = levels_eval.evaluate(two, None, 1, png=False)
    # top-1 over the 8 test sequences' frames 0, 4, …, 16 (the identity probe's frames): a
    # whole number of those 40 frames. (Three steps teach level 1 no digit: its value is near
    # chance; the probe's arithmetic is checked by hand in the identity-probe test.)
    assert np.isfinite(r1["velocity_r2"])
    assert r1["top1"] * 40 / 100 == pytest.approx(round(r1["top1"] * 40 / 100), abs=1e-6)
    (via_cli,) = eval_main.main(["--workdir", two, "--level", "1"])  # the levels evaluator
    assert {**via_cli, "wall_s": 0} == {**r1, "wall_s": 0}
    # eval.weights="context": level 1's probes read the online encoder, not the EMA one.
    r1c = levels_eval.evaluate(two, None, 1, overrides={"eval.weights": "context"}, png=False)
    assert (r1["level1_weights"], r1c["level1_weights"]) == ("target", "context")
    assert r1c["position_r2"] != r1["position_r2"]
    r2 = levels_eval.evaluate(two, None, 2)
    assert set(r2["long_horizon"]) == {"2", "3"}
    for errors in r2["long_horizon"].values():
        assert all(np.isfinite(v) for v in errors.values())
    assert np.isfinite(r2["level1"]["velocity_r2"]) and r2["png"].endswith(".png")

    # A level 1 of another shape is refused, naming the paths.
    wider = {**greedy, "model.width": 64, "model.num_heads": 2}
    with pytest.raises(checkpointing.CheckpointMismatchError, match="level 1"):
        train.train_and_evaluate(tiny_hierarchy_config(smm_data_dir, **wider), str(tmp_path / "w"))


def test_level_embeddings_read_level1_from_the_encoder_asked_for():
    """compute_embeddings: level 1's per-frame embedding is the token mean of
    ``level1_params`` (the target encoder by default), while the common space stays the target
    encoder's LayerNorm'd tokens and level 2 reads the online encoder either way."""
    c = tiny_hierarchy_config()
    model = hierarchy.Hierarchy(c)
    params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
    target = nn.unbox(model.init_params(jax.random.PRNGKey(1)))["encoder"]
    frames = np.clip(frames_batch(c)["image"] * 40 + 100, 0, 255).astype(np.uint8)
    default = levels_eval.compute_embeddings(model, params, target, frames)
    online = levels_eval.compute_embeddings(
        model, params, target, frames, level1_params=params["encoder"]
    )
    mean, std = tuple(c.data.mean) or None, tuple(c.data.std) or None
    normalized = levels_eval.normalize_frames(frames, mean, std)
    by_hand = {
        name: np.asarray(model.frame_tokens(p, jnp.asarray(normalized)).mean(2))
        for name, p in (("target", target), ("online", params["encoder"]))
    }
    np.testing.assert_allclose(default[0][0], by_hand["target"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(online[0][0], by_hand["online"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(by_hand["target"], by_hand["online"])
    for a, b in ((default[0][1], online[0][1]), (default[1], online[1])):
        np.testing.assert_array_equal(a, b)


def test_identity_probe_reads_the_digit_from_every_fourth_frame_by_hand():
    """Embeddings that are the one-hot of the sequence's digit (×3, plus 1 % noise) on frames
    0, 4, 8, … and of another digit on every other frame: the probe, reading frames 0, 4, …
    only, is right on every test frame (top-1 100 %); test labels shifted by 5 digits from what
    the features say: top-1 0 %."""
    config = tiny_hierarchy_config()
    rng = np.random.default_rng(0)

    def embeddings(digits):
        t = np.arange(20)[None]
        shown = np.where(t % 4 == 0, digits[:, None], (digits[:, None] + 1 + t) % 10)
        return 3.0 * np.eye(10)[shown] + 0.01 * rng.standard_normal((len(digits), 20, 10))

    train_digits, test_digits = np.arange(40) % 10, np.arange(10)
    train_x, test_x = embeddings(train_digits), embeddings(test_digits)
    probe = levels_eval.identity_probe(config, train_x, train_digits, test_x, test_digits)
    assert probe["top1"] == 1.0 and probe["val_top1"] == 1.0
    shifted = levels_eval.identity_probe(
        config, train_x, train_digits, test_x, (test_digits + 5) % 10
    )
    assert shifted["top1"] == 0.0


def test_ridge_r2_by_hand():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 5))
    y = np.stack([x[:, 0] * 2 - x[:, 3], x[:, 1]], 1)
    assert levels_eval.ridge_r2(x[:300], y[:300], x[300:], y[300:])["r2"] > 0.999
    noise = rng.standard_normal((400, 2))
    r = levels_eval.ridge_r2(x[:300], noise[:300], x[300:], noise[300:])["r2"]
    assert -0.1 < r < 0.05
    pos = np.array([[[[0, 0]], [[2, 1]], [[5, 1]]]], float)  # [1, T=3, 1 digit, 2]
    np.testing.assert_array_equal(
        levels_eval.observed_velocity(pos)[0, :, 0], [[0, 0], [2, 1], [3, 0]]
    )


def test_inpaint_masks_hide_one_half_of_the_block_on_the_ink():
    """An 8 × 8 token grid (8-px patches), block side 4: a bright patch at token (5, 1)
    centres the block at rows 4-7 (clipped inside the grid), cols 0-3; each image hides one
    of its four halves (8 tokens) and keeps the other 56, both ascending."""
    images = np.full((16, 64, 64, 1), -1.0, np.float32)
    images[:, 40:48, 8:16] = 1.0
    visible, hidden = hierarchy.inpaint_masks(jnp.asarray(images), 8, 4, jax.random.PRNGKey(0))
    assert visible.shape == (16, 56) and hidden.shape == (16, 8)
    block = [(r, c) for r in range(4, 8) for c in range(0, 4)]
    halves = {
        "top": {r * 8 + c for r, c in block if r < 6},
        "bottom": {r * 8 + c for r, c in block if r >= 6},
        "left": {r * 8 + c for r, c in block if c < 2},
        "right": {r * 8 + c for r, c in block if c >= 2},
    }
    seen = set()
    for v, h in zip(np.asarray(visible), np.asarray(hidden), strict=True):
        assert list(v) == sorted(v) and list(h) == sorted(h)
        assert sorted([*v, *h]) == list(range(64))
        (name,) = [k for k, s in halves.items() if set(h) == s]
        seen.add(name)
    assert len(seen) >= 3  # the half is drawn per image


def test_inpaint_energy_sees_only_the_visible_half_and_enters_the_loss():
    """level1.inpaint_weight on a 2 × 2 grid (block side 2 = the grid): the encoder reads the
    two visible patches of each window's target frame, so pixels under a hidden patch cannot
    change the energy (the targets held fixed) and a visible patch's can; the term enters the
    level-1 loss with its weight."""
    c = tiny_hierarchy_config(
        **{"hierarchy.level1.inpaint_weight": 1.0, "hierarchy.level1.inpaint_block": 2}
    )
    model = hierarchy.Hierarchy(c)
    params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
    frames = jnp.asarray(frames_batch(c)["image"])[:1]
    tgt = jnp.asarray([5])
    target = jax.random.normal(jax.random.PRNGKey(1), (1, 8, 4, 32))
    key = jax.random.PRNGKey(2)
    _, hidden = hierarchy.inpaint_masks(frames[:, 5], 32, 2, key)
    # At init the predictor barely reads its context (small output projections); perturbed
    # weights make the context's influence visible above float noise.
    rng = np.random.default_rng(0)
    predictor = jax.tree.map(
        lambda x: x + 0.3 * rng.standard_normal(x.shape).astype(np.float32), params["predictor"]
    )
    energy = jax.jit(functools.partial(model.inpaint_energy, params["encoder"], predictor))
    e0 = energy(frames, target, tgt, key)

    def patch_box(token):
        r, col = divmod(int(token), 2)
        return slice(5, 6), slice(r * 32, r * 32 + 32), slice(col * 32, col * 32 + 32)

    hidden_frames = frames.at[(0, *patch_box(hidden[0, 0]))].add(0.5)
    visible_token = next(t for t in range(4) if t not in set(np.asarray(hidden[0])))
    visible_frames = frames.at[(0, *patch_box(visible_token))].add(0.5)
    # the same half is drawn (the key is the same, and side = grid puts the block at (0, 0))
    e_hidden = energy(hidden_frames, target, tgt, key)
    e_visible = energy(visible_frames, target, tgt, key)
    assert float(e_hidden) == float(e0)
    assert abs(float(e_visible) - float(e0)) > 1e-3

    batch = {"image": jnp.asarray(frames_batch(c)["image"])[:2]}
    off = with_overrides(c, {"hierarchy.level1.inpaint_weight": 0.0})
    loss0, _ = hierarchy.Hierarchy(off).loss_fn(params, params["encoder"], batch)
    half = with_overrides(c, {"hierarchy.level1.inpaint_weight": 0.5})
    loss1, aux = hierarchy.Hierarchy(half).loss_fn(params, params["encoder"], batch)
    np.testing.assert_allclose(
        float(loss1), float(loss0) + 0.5 * float(aux["level1/inpaint_energy"]), rtol=1e-5
    )
    with pytest.raises(ValueError, match="hierarchy.level1.inpaint_block"):
        hierarchy.Hierarchy(with_overrides(c, {"hierarchy.level1.inpaint_block": 3}))
