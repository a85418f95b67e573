"""Hierarchical JEPA: the pieces by hand, the training modes, sharding, level-by-level restore,
and the per-level evaluation on a tiny stochastic Moving-MNIST run."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import train_on_mesh, with_overrides

from jepa import config as config_lib
from jepa import hierarchy, methods, train, validation
from jepa.evaluate import levels as levels_eval
from jepa.evaluate import main as eval_main
from jepa.models.sequence import SequenceEncoder

LEVEL2 = dict(width=32, depth=1, num_heads=2, horizons=(2, 3), predictor_hidden=32)
# Level 1 of a trained run, as a greedy run above it takes it (config.init.take).
LEVEL1_PARTS = ("params/encoder", "params/predictor", "params/views_projector", "target_params")
LEVEL3 = dict(width=32, depth=1, num_heads=2, window=2, horizons=(1,), predictor_hidden=32)


def tiny_hierarchy_config(data_dir="", levels=(LEVEL2,), **overrides):
    c = methods.with_method(config_lib.base_config(), "hierarchy")
    c.method.levels = tuple(levels)
    return with_overrides(
        c,
        {
            "model.image_size": 64,
            "model.patch_size": 32,
            "model.channels": 1,
            "model.width": 32,
            "model.depth": 1,
            "model.num_heads": 2,
            "method.predictor.width": 16,
            "method.predictor.depth": 1,
            "method.predictor.num_heads": 2,
            "data.dataset": "stochastic_moving_mnist/tiny",
            "data.data_dir": data_dir,
            "data.test_split": "test",
            "method.sequence.frames": 8,
            "method.loss.energy": "l2",
            "method.loss.regularize": "tokens",
            "method.loss.vicreg_var": 1.0,
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
    shape = (config.batch_size, config.method.sequence.frames, m.image_size, m.image_size, 1)
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


def test_sequence_encoder_sees_only_the_past():
    enc = SequenceEncoder(width=16, depth=2, num_heads=2)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 8))
    params = enc.init(jax.random.PRNGKey(1), x)
    y = enc.apply(params, x)
    x2 = x.at[:, 4:].set(7.0)  # change the future of step 3
    y2 = enc.apply(params, x2)
    np.testing.assert_allclose(y[:, :4], y2[:, :4], atol=1e-6)
    assert np.abs(np.asarray(y[:, 4:] - y2[:, 4:])).max() > 1e-3


def test_bad_hierarchy_configs_name_the_key():
    cases = [
        ({"method.mode": "stacked"}, "method.mode"),
        ({"method.level1.context_frames": 8}, "method.sequence.frames=8"),
        ({"method.mode": "greedy", "method.frozen_levels": 1}, "init.path"),
        ({"method.mode": "greedy", "method.frozen_levels": 2}, "frozen_levels=2"),
        ({"method.mode": "alternating"}, "method.mode='alternating'"),
    ]
    for overrides, key in cases:
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            validation.validate(tiny_hierarchy_config(**overrides), 1)
    too_far = dict(LEVEL2, horizons=(8,))
    with pytest.raises(ValueError, match=r"method\.levels\[0\] \(level 2\)\.horizons"):
        validation.validate(tiny_hierarchy_config(levels=(too_far,)), 1)
    future_recall = dict(LEVEL2, recall=(0, -1))
    with pytest.raises(ValueError, match=r"\(level 2\)\.recall=\(0, -1\)"):
        validation.validate(tiny_hierarchy_config(levels=(future_recall,)), 1)
    with pytest.raises(ValueError, match=r"unknown keys \['widht'\]"):
        validation.validate(tiny_hierarchy_config(levels=(dict(widht=3),)), 1)


def test_level2_energy_predicts_its_own_states_by_hand():
    """Level 2 predicts its own state h steps later (read from the online level-1 encoder's
    frame means); its energy is the masked mean of the squared errors over every
    (horizon, step) that stays inside the sequence."""
    level = dict(LEVEL2, width=16, vicreg_var=0.0, vicreg_cov=0.0)
    c = tiny_hierarchy_config(levels=(level,))
    model = hierarchy.Hierarchy(c)
    params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
    target_params = jax.tree.map(lambda x: x * 1.1, params["encoder"])  # an EMA ≠ online
    frames = jnp.asarray(frames_batch(c)["image"])[:2]
    _, aux = jax.jit(model.loss_fn)(params, target_params, {"image": frames})

    online = np.asarray(jax.jit(model.frame_tokens)(params["encoder"], frames))
    states = np.asarray(jax.jit(model.encode_level, static_argnums=1)(params, 2, online.mean(2)))
    p2 = params["levels"]["level2"]["predictor"]
    pred = np.asarray(jax.jit(model.step_predictors[0].apply)({"params": p2}, states))
    assert states.shape[-1] == pred.shape[-1] == 16
    t = states.shape[1]
    per_sample = []
    for b in range(len(states)):
        errs = [
            ((pred[b, i, s] - states[b, s + h]) ** 2).mean()
            for i, h in enumerate(level["horizons"])
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


def test_masked_context_sees_only_the_visible_tubes():
    """level1.mask_ratio: the same random half of the 2 × 2 grid is hidden in both context
    frames; pixels under the hidden patches cannot change the masked energy, a visible
    patch's can."""
    c = tiny_hierarchy_config(**{"method.level1.mask_ratio": 0.5})
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


def test_prediction_space_map_reads_a_levels_states_into_level1s_view():
    """The long-horizon comparison maps a level's predictions (of its own states) into level
    1's view with a ridge probe fitted on its states; a level 3 (window 2) reads its own
    16-wide states at the last frame of each step."""
    rng = np.random.default_rng(0)
    c = tiny_hierarchy_config()
    common = rng.standard_normal((40, 8, 32))
    rotation = np.linalg.qr(rng.standard_normal((32, 32)))[0]
    states = common @ rotation  # a (well-conditioned) linear view of the common space
    own = levels_eval.prediction_space_map(c, 2, [None, states], common)
    np.testing.assert_allclose(own(states[:2, 3]), common[:2, 3], atol=0.05)
    three = tiny_hierarchy_config(levels=(LEVEL2, dict(LEVEL3, width=16)))
    level3 = common[:, 1::2, :16]  # step j of level 3 ends at frame 2j + 1
    fn = levels_eval.prediction_space_map(three, 3, [None, states, level3], common)
    out = fn(rng.standard_normal((5, 16)))
    assert out.shape == (5, 32) and np.isfinite(out).all()


def test_joint_weight_sets_how_much_level2_trains_level1():
    """Level 2's loss reaches the level-1 encoder only through the joint weight."""

    def encoder_grad(weight):
        c = tiny_hierarchy_config(**{"method.joint_weight": weight, "method.level1.weight": 0.0})
        c.method.loss.vicreg_var = (
            0.0  # level 1 contributes nothing: only level 2's gradient is left
        )
        model = hierarchy.Hierarchy(c)
        params = nn.unbox(model.init_params(jax.random.PRNGKey(0)))
        batch = {"image": jnp.asarray(frames_batch(c)["image"])}
        grad = jax.jit(jax.grad(lambda p: model.loss_fn(p, params["encoder"], batch)[0]))
        return grad(params)["encoder"]["patch_embed"]["kernel"]

    # (The scale itself is linear by construction and checked by hand above.)
    assert float(jnp.abs(encoder_grad(0.0)).max()) == 0.0
    assert float(jnp.abs(encoder_grad(0.5)).max()) > 0.0


def test_pool_grid_averages_regions_of_the_token_grid():
    c = tiny_hierarchy_config(**{"model.patch_size": 16, "method.level1.pool_grid": 2})
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
    with pytest.raises(ValueError, match="method.level1.pool_grid=3"):
        hierarchy.Hierarchy(
            tiny_hierarchy_config(**{"model.patch_size": 16, "method.level1.pool_grid": 3})
        )


def test_greedy_loss_skips_the_frozen_level_and_keeps_level2_gradient():
    """Greedy mode computes no level-1 terms (their gradients would be zeroed), and level 2's
    gradient is exactly the one of a joint run whose levels learn side by side."""
    side_by_side = tiny_hierarchy_config(**{"method.joint_weight": 0.0})
    greedy = tiny_hierarchy_config(
        **{"method.mode": "greedy", "method.frozen_levels": 1, "init.path": "x"}
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


# ----------------------------------------------------------------- modes and sharding
def run_steps(config, mesh_shape, steps=3):
    """(per-step losses of every level, params snapshots: initial, then after each step)."""
    metrics, _, _, params = train_on_mesh(
        config, mesh_shape, lambda c, s: frames_batch(c, seed=s), steps, keep_params=True
    )
    return [{k: v for k, v in m.items() if k.endswith("loss")} for m in metrics], params


def test_sharded_hierarchy_equals_single_device():
    """Data and FSDP axes at once; three levels train in the greedy-mode test below."""
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


def test_greedy_mode_moves_only_the_levels_above_the_frozen_ones():
    """Three levels, two frozen: at every step levels 1 and 2 keep their parameters (weight
    decay included) and level 3 moves."""
    c = tiny_hierarchy_config(
        levels=(LEVEL2, LEVEL3),
        **{"method.mode": "greedy", "method.frozen_levels": 2, "init.path": "x"},
    )
    _, history = run_steps(c, (1, 1, 1), steps=2)
    for step in range(2):
        before, after = history[step], history[step + 1]
        level1 = {k: v for k, v in before.items() if k != "levels"}
        moved = [
            _changed(level1, {k: after[k] for k in level1}),
            _changed(before["levels"]["level2"], after["levels"]["level2"]),
            _changed(before["levels"]["level3"], after["levels"]["level3"]),
        ]
        assert moved == [False, False, True], (step, moved)


# ------------------------------------------- a real run: restore level by level, evaluate
def test_greedy_run_loads_a_trained_level1_and_keeps_it_frozen(tmp_path, smm_data_dir):
    from jepa import checkpointing, hub

    # Level 1 with the conv stem and the views term (its projector is loaded too).
    views = {
        "model.patch_size": 16,
        "model.stem": "conv",
        "method.level1.views_weight": 1.0,
        "method.level1.views": 2,
    }
    one = str(tmp_path / "one_level")
    train.train_and_evaluate(tiny_hierarchy_config(smm_data_dir, levels=(), **views), one)
    _, _, trained, trained_target = hub.load_model_params(one)

    two = str(tmp_path / "two_levels")
    greedy = {
        "method.mode": "greedy",
        "method.frozen_levels": 1,
        "init.path": one,
        "init.take": LEVEL1_PARTS,
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

    # A level 1 of another shape is refused, naming the paths; nothing is trained or saved.
    wider = {**greedy, "model.width": 64, "model.num_heads": 2}
    match = r"init\.path=.* step 3 \(params/encoder\) does not match"
    with pytest.raises(checkpointing.CheckpointMismatchError, match=match):
        train.train_and_evaluate(tiny_hierarchy_config(smm_data_dir, **wider), str(tmp_path / "w"))
    assert not checkpointing.has_checkpoints(str(tmp_path / "w"))
    # A part this run has and the source lacks (level 2 from a level-1 run) is refused too.
    take_level2 = {**greedy, "init.take": ("params/levels/level2",)}
    with pytest.raises(checkpointing.CheckpointMismatchError, match=r"has no params/levels"):
        train.train_and_evaluate(
            tiny_hierarchy_config(smm_data_dir, **take_level2), str(tmp_path / "l2")
        )


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
