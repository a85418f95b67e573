"""The world model's loss terms on hand-computed batches, the modules' shapes and initial
identity step, the latent planning cost against its definition, the method's generated batches
and settings, and tiny train-then-plan runs on Two Rooms (in Python, and through jepa-train and
jepa-eval --protocol planning)."""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import tiny_config, tiny_world_model_config
from test_cli import run

from jepa import hub, planning, validation
from jepa import world_model_loss as wml
from jepa.envs import two_rooms as tr
from jepa.envs import two_rooms_planning as tp
from jepa.evaluate import world_model as evaluation
from jepa.main import experiment_config
from jepa.methods import world_model
from jepa.models.world_model import ConvEncoder, WorldModel

# ---------------------------------------------------------------------------------------------
# Loss terms
# ---------------------------------------------------------------------------------------------


def test_variance_term_hinges_each_features_std_at_the_margin():
    # Feature 0 takes 0 and 2: unbiased variance 2, std 1.414 > 1, no penalty. Feature 1 is
    # constant: std sqrt(1e-4) = 0.01, penalty 0.99. The mean over the two features: 0.495.
    z = jnp.array([[0.0, 5.0], [2.0, 5.0]])
    assert float(wml.variance_loss(z)) == pytest.approx(0.495, abs=1e-6)
    # A margin of 2: feature 0 pays 2 - sqrt(2.0001), feature 1 pays 1.99.
    expected = ((2 - math.sqrt(2.0001)) + 1.99) / 2
    assert float(wml.variance_loss(z, margin=2.0)) == pytest.approx(expected, abs=1e-6)
    # Leading axes are pooled: the same four values as [1, 2, 2] give the same loss.
    assert float(wml.variance_loss(z[None])) == pytest.approx(0.495, abs=1e-6)


def test_covariance_term_is_the_mean_squared_off_diagonal():
    # Two perfectly correlated features: covariance [[2, 2], [2, 2]] (unbiased, n = 2); the
    # off-diagonal entries square to 4 each, over D·(D-1) = 2 entries: 4.
    z = jnp.array([[1.0, 1.0], [-1.0, -1.0]])
    assert float(wml.covariance_loss(z)) == pytest.approx(4.0)
    # Uncorrelated features (a 2x2 design with orthogonal centred columns): 0.
    w = jnp.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert float(wml.covariance_loss(w)) == pytest.approx(0.0, abs=1e-7)


class _Stub:
    """A model whose parts are hand-computable: the embedding of a [1, 1, 1] image is its
    value times ``params["w"]``; the predictor adds the action's first component; the inverse
    model returns the embedding difference and 0."""

    def apply(self, params, *args, method):
        if method == "encode":
            return params["w"] * args[0][..., 0, 0, :]
        if method == "predict":
            s, a = args
            return s + a[..., :1]
        if method == "inverse":
            s, nxt = args
            return jnp.concatenate([nxt - s, jnp.zeros_like(s)], axis=-1)
        raise ValueError(method)


def _stub_batch():
    # One trajectory: frames 0, 1, 3 (one pixel each), actions (1, 0) then (1, 0).
    obs = jnp.array([0.0, 1.0, 3.0]).reshape(1, 3, 1, 1, 1)
    actions = jnp.array([[[1.0, 0.0], [1.0, 0.0]]])
    return obs, actions


def test_world_model_loss_combines_the_hand_computed_terms():
    obs, actions = _stub_batch()
    params = {"w": jnp.float32(1.0)}
    weights = wml.LossWeights(
        prediction=1.0, variance=2.0, covariance=3.0, time_similarity=4.0, inverse_dynamics=5.0
    )
    loss, aux = wml.world_model_loss(params, _Stub(), obs, actions, weights)
    # Open loop from z0 = 0: predictions 1, 2 against targets 1, 3: errors 0 and 1.
    np.testing.assert_allclose(aux["prediction_per_step"], [0.0, 1.0])
    assert float(aux["prediction"]) == pytest.approx(0.5)
    # z = 0, 1, 3: unbiased std sqrt(7/3 + 1e-4) > 1, no variance penalty; one feature,
    # no covariance; time similarity (1 + 4) / 2 = 2.5.
    assert float(aux["variance"]) == 0.0 and float(aux["covariance"]) == 0.0
    assert float(aux["time_similarity"]) == pytest.approx(2.5)
    # Inverse model (1, 0), (2, 0) against actions (1, 0), (1, 0): errors 0, 0, 1, 0.
    assert float(aux["inverse_dynamics"]) == pytest.approx(0.25)
    assert float(loss) == pytest.approx(0.5 + 4 * 2.5 + 5 * 0.25)
    # A zero weight drops its term from the loss; the term is still reported.
    off = wml.LossWeights(
        prediction=1.0, variance=0.0, covariance=0.0, time_similarity=0.0, inverse_dynamics=0.0
    )
    loss_off, aux_off = wml.world_model_loss(params, _Stub(), obs, actions, off)
    assert float(loss_off) == pytest.approx(0.5)
    assert float(aux_off["time_similarity"]) == pytest.approx(2.5)


def test_stop_gradient_target_removes_the_targets_gradient():
    # The stub's predictions 1, 2 do not depend on w (z0 = w·0); the targets w·1 and w·3 do.
    # Prediction loss ((1 - w)² + (2 - 3w)²) / 2, at w = 1: d/dw = (-2·0 + -6·(-1)) / 2 = 3.
    obs, actions = _stub_batch()
    only_pred = dict(variance=0.0, covariance=0.0, time_similarity=0.0, inverse_dynamics=0.0)

    def grad(stop):
        weights = wml.LossWeights(**only_pred, stop_gradient_target=stop)
        return jax.grad(lambda p: wml.world_model_loss(p, _Stub(), obs, actions, weights)[0])(
            {"w": jnp.float32(1.0)}
        )["w"]

    assert float(grad(False)) == pytest.approx(3.0)
    assert float(grad(True)) == 0.0


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------


def test_world_model_shapes_and_identity_first_step():
    model = WorldModel(embed_dim=8, encoder_features=(4, 8), predictor_hidden=16, idm_hidden=16)
    images = jnp.zeros((3, 5, 17, 17, 2), jnp.uint8)
    params = model.init(jax.random.key(0), images[:, 0], jnp.zeros((3, 2)))
    z = model.apply(params, images, method="encode")
    assert z.shape == (3, 5, 8)
    # The predictor's output layer starts at zero: the first step is the identity.
    z1 = model.apply(params, z[:, 0], jnp.ones((3, 2)), method="predict")
    np.testing.assert_array_equal(np.asarray(z1), np.asarray(z[:, 0]))
    assert model.apply(params, z[:, 0], z1, method="inverse").shape == (3, 2)


def test_encoder_standardizes_each_channel():
    # With mean m and std s per channel, an image equal to m everywhere encodes like zeros.
    enc = ConvEncoder(features=(4,), embed_dim=3, input_mean=(0.2, 0.6), input_std=(0.5, 2.0))
    plain = ConvEncoder(features=(4,), embed_dim=3)
    img = jnp.broadcast_to(jnp.array([0.2, 0.6]), (1, 9, 9, 2))
    params = enc.init(jax.random.key(0), img)
    np.testing.assert_allclose(
        enc.apply(params, img), plain.apply(params, jnp.zeros_like(img)), atol=1e-6
    )


# ---------------------------------------------------------------------------------------------
# Latent cost
# ---------------------------------------------------------------------------------------------


def test_latent_cost_is_the_distance_of_the_unrolled_embeddings_to_the_goal():
    # Embedding = position, predictor = position + action: the cost is the straight-line
    # distance along the moved path. From (0, 0) towards (3, 0) by (1, 0) twice: 2 then 1.
    start = tr.TwoRoomsState(jnp.array([0.0, 0.0]), jnp.float32(32), jnp.float32(18))
    goal = start._replace(position=jnp.array([3.0, 0.0]))
    actions = jnp.array([[1.0, 0.0], [1.0, 0.0]])

    def build(mode):
        return planning.latent_cost(lambda x: x, lambda z, a: z + a, lambda s: s.position, mode)

    assert float(build("sum")(start, goal, 2)(actions)) == pytest.approx(3.0)
    assert float(build("last")(start, goal, 2)(actions)) == pytest.approx(1.0)
    # Cut to the one step left.
    assert float(build("sum")(start, goal, 1)(actions)) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        build("mean")


def test_latent_cost_jits_over_candidates_and_compiles_once_for_new_parameters():
    settings = tr.TwoRoomsSettings(image_size=17)
    model = WorldModel(embed_dim=8, encoder_features=(4, 8), predictor_hidden=16, idm_hidden=16)
    start, goal = tr.sample_start_goal(jax.random.key(1), settings)
    traces = []

    @jax.jit
    def costs(params, candidates):
        traces.append(1)
        build = planning.model_cost(model, params, lambda s: tr.render(s, settings))
        return jax.vmap(build(start, goal, 5))(candidates)

    cand = jax.random.normal(jax.random.key(2), (7, 5, 2))
    p1 = model.init(jax.random.key(3), jnp.zeros((1, 17, 17, 2), jnp.uint8), jnp.zeros((1, 2)))
    p2 = jax.tree.map(lambda x: x + 0.01, p1)
    c1, c2 = costs(p1, cand), costs(p2, cand)
    assert c1.shape == (7,) and bool(jnp.all(jnp.isfinite(c1)))
    assert not np.allclose(np.asarray(c1), np.asarray(c2))
    assert len(traces) == 1


# ---------------------------------------------------------------------------------------------
# Train, then plan
# ---------------------------------------------------------------------------------------------


def test_tiny_training_lowers_the_loss_and_the_planner_returns_bounded_actions():
    settings = tr.TwoRoomsSettings(image_size=17, episode_steps=4)
    model = WorldModel(embed_dim=8, encoder_features=(8, 8), predictor_hidden=32, idm_hidden=32)
    params = model.init(jax.random.key(0), jnp.zeros((1, 17, 17, 2), jnp.uint8), jnp.zeros((1, 2)))
    opt = optax.adamw(3e-3, weight_decay=1e-5)
    opt_state = opt.init(params)
    gen = jax.vmap(lambda k: tr.rollout(k, settings, steps=4))
    batch = gen(jax.random.split(jax.random.key(1), 32))[:2]

    @jax.jit
    def step(params, opt_state):
        (loss, _), g = jax.value_and_grad(wml.world_model_loss, has_aux=True)(params, model, *batch)
        updates, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(40):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]

    config = planning.CEMConfig(horizon=4, iterations=3, samples=16, elites=4)
    builder = planning.model_cost(model, params, lambda s: tr.render(s, settings))
    start, goal = tr.sample_start_goal(jax.random.key(2), settings)
    episode = jax.jit(
        lambda key: planning.plan_episode(
            key,
            start,
            goal,
            planner=tp.make_planner(config),
            cost_builder=builder,
            env_step=lambda s, a, k: tr.step(s, a, k, settings),
            steps=4,
            horizon=4,
        )
    )(jax.random.key(3))
    actions, positions = np.asarray(episode.actions), np.asarray(episode.states.position)
    assert actions.shape == (4, 2) and positions.shape == (5, 2)
    # CEM clips every candidate to the action bound; the dot stays inside the border lines.
    assert np.isfinite(actions).all()
    assert (np.linalg.norm(actions, axis=-1) <= settings.max_action_norm + 1e-4).all()
    assert (positions >= settings.low).all() and (positions <= settings.high).all()


def test_generated_batches_depend_on_seed_and_step_alone():
    config = tiny_world_model_config()
    draw = world_model.step_inputs(config)
    a, b = draw(0, 5, 4), world_model.step_inputs(config)(0, 5, 4)
    assert a["observations"].shape == (4, 4, 17, 17, 2) and a["observations"].dtype == np.uint8
    assert a["actions"].shape == (4, 3, 2)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["actions"], draw(0, 6, 4)["actions"])
    assert not np.array_equal(a["actions"], draw(1, 5, 4)["actions"])


def test_wall_contact_matches_a_trajectory_by_trajectory_reference():
    config = tiny_world_model_config(**{"method.env.window": 12})
    params = world_model.init_params(config, jax.random.key(0))
    # The predictor's output layer starts at zero (the identity step): move it off.
    out = params["predictor"]["out"]
    out["kernel"] = 0.3 * jax.random.normal(jax.random.key(1), out["kernel"].shape)
    result = evaluation.wall_contact(config, params, seed=3, trajectories=48, min_blocked=1)

    settings, model = world_model.settings(config), world_model.build(config)
    variables = {"params": params}

    # Jitted pieces, each compiled once; the bookkeeping stays in plain Python.
    explore = jax.jit(lambda key: tr.explore(key, settings, 12))
    predict = jax.jit(functools.partial(model.apply, variables, method="predict"))

    @jax.jit
    def encode_one(position, first):
        image = tr.render(first._replace(position=position), settings)
        return model.apply(variables, image[None], method="encode")[0]

    def encode(position, first):
        return np.asarray(encode_one(jnp.asarray(position, jnp.float32), first))

    to_true, to_free = [], []
    for key in jax.random.split(jax.random.key(3), 48):
        first, actions, positions = explore(key)
        actions, positions = np.asarray(actions), np.asarray(positions)
        stops = [
            t
            for t in range(12)
            if np.all(positions[t + 1] == positions[t])
            and abs(positions[t, 0] - float(first.wall_x)) < 4
        ]
        if not stops:
            continue
        state = encode(positions[0], first)
        for a in actions:
            state = np.asarray(predict(state, a))
        free = np.clip(positions[0] + actions.sum(0), settings.low + 0.3, settings.high - 0.3)
        to_true.append(np.linalg.norm(state - encode(positions[-1], first)))
        to_free.append(np.linalg.norm(state - encode(free, first)))

    assert to_true, "no trajectory stopped at the wall: raise the window or the count"
    assert result["wall_trajectories"] == pytest.approx(len(to_true) / 48, abs=1e-4)
    assert result["wall_to_true"] == pytest.approx(np.mean(to_true), abs=2e-3)
    assert result["wall_to_free"] == pytest.approx(np.mean(to_free), abs=2e-3)
    none = evaluation.wall_contact(config, params, seed=3, trajectories=8, min_blocked=13)
    assert none == {"wall_trajectories": 0.0, "wall_to_true": None, "wall_to_free": None}


@pytest.mark.parametrize(
    "key, value, named",
    [
        ("data.dataset", "mnist", "data.dataset"),
        ("model.channels", 3, "model.channels"),
        ("method.planning.planner", "adam", "method.planning.planner"),
        ("method.planning.elites", 9, "method.planning.elites"),
        ("method.planning.replan_every", 7, "method.planning.replan_every"),
        ("total_steps", 0, "total_steps"),
    ],
)
def test_bad_world_model_settings_name_their_key(key, value, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        validation.validate(tiny_world_model_config(**{key: value}), 1)


def test_the_recipe_searches_less_than_eb_jepa_and_eb_planner_restores_its_search():
    path = os.path.join(os.path.dirname(__file__), "..", "experiments", "two_rooms.py")
    recipe = experiment_config(["--config", path])
    eb = experiment_config(["--config", path + ":eb_planner=1"])
    for config in (recipe, eb):
        validation.validate(config, 1)
    p = recipe.method.planning
    assert (p.iterations, p.samples, p.replan_every, p.warm_start) == (10, 100, 5, True)
    assert (p.horizon, p.elites) == (90, 20)
    assert eb.method.planning.to_dict() == world_model.defaults().planning.to_dict()


@pytest.mark.slow
def test_train_then_plan_from_the_command_line(tmp_path):
    """jepa-train on generated trajectories, jepa-eval --protocol planning with its baselines,
    and a plan from two images with the saved model in a few lines of Python."""
    workdir = str(tmp_path / "run")
    sizes = [
        "--config.model.image_size=17",
        "--config.method.env.window=3",
        "--config.method.world_model.embed_dim=8",
        "--config.method.world_model.encoder_features=(8, 8)",
        "--config.method.world_model.predictor_hidden=16",
        "--config.method.world_model.idm_hidden=16",
    ]
    train = run(
        [
            "-m",
            "jepa.main",
            "--config",
            "experiments/two_rooms.py:steps=6,batch=8",
            "--workdir",
            workdir,
            *sizes,
            "--config.checkpoint_every=3",
        ]
    )
    assert train.returncode == 0, train.stderr[-3000:]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert rows[-1]["step"] == 6 and np.isfinite(rows[-1]["loss"])
    assert {"prediction", "variance", "inverse_dynamics"} <= set(rows[-1])

    planner = [
        "--config.method.planning.horizon=5",
        "--config.method.planning.iterations=2",
        "--config.method.planning.samples=8",
        "--config.method.planning.elites=4",
        "--config.method.planning.episodes=2",
        "--config.method.planning.replan_every=5",
    ]
    evaluate = run(
        [
            "-m",
            "jepa.evaluate.main",
            "--workdir",
            workdir,
            "--protocol",
            "planning",
            "--baselines",
            *planner,
        ]
    )
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    result = json.loads(evaluate.stdout.strip().splitlines()[-1])
    assert result["step"] == 6 and result["episodes"] == 2 and result["compiles"] == 1
    assert (result["horizon"], result["samples"], result["replan_every"]) == (5, 8, 5)
    assert len(result["successes"]) == 2 and 0 <= result["success"] <= 100
    assert result["seconds_per_episode"] > 0 and -1 <= result["position_r2"] <= 1
    assert set(result["baselines"]) == {
        "random_actions",
        "true_dynamics_euclidean",
        "true_dynamics_geodesic",
    }
    assert os.path.getsize(result["figure"]) > 0
    with open(os.path.join(workdir, "eval", "planning_mppi_sum_step6.json")) as f:
        assert json.load(f)["success"] == result["success"]

    config, step, params, _ = hub.load_model_params(workdir)
    settings = world_model.settings(config)
    start, goal = tr.sample_start_goal(jax.random.key(0), settings)
    plan = world_model.plan(
        config, params, tr.render(start, settings), tr.render(goal, settings), jax.random.key(1)
    )
    assert step == 6 and plan.actions.shape == (config.method.planning.horizon, 2)
    assert np.isfinite(np.asarray(plan.actions)).all()


def test_planning_protocol_refuses_a_run_without_a_planner(tmp_path):
    with pytest.raises(ValueError, match="objective='masked' has no planner"):
        evaluation.Planning(tiny_config(), str(tmp_path))


def test_fit_room_penalty_recovers_the_pixels_added_for_the_other_room():
    rng = np.random.default_rng(0)
    euclidean = rng.uniform(0, 60, 500)
    other = (rng.uniform(size=500) < 0.5).astype(float)
    # An embedding 0.1 per pixel that adds 3 (30 px) for the other room, offset 0.5.
    distances = 0.1 * euclidean + 3.0 * other + 0.5
    assert evaluation.fit_room_penalty(distances, euclidean, other) == pytest.approx(30.0)
    assert evaluation.fit_room_penalty(0.1 * euclidean, euclidean, other) == pytest.approx(0.0)


def test_room_penalty_matches_a_pair_by_pair_reference():
    config = tiny_world_model_config()
    params = world_model.init_params(config, jax.random.key(0))
    result = evaluation.room_penalty(config, params, seed=4, pairs=32)

    settings, model = world_model.settings(config), world_model.build(config)
    encode = jax.jit(lambda image: model.apply({"params": params}, image, method="encode"))
    rows = []
    for key in jax.random.split(jax.random.key(4), 32):
        kg, ka, kb = jax.random.split(key, 3)
        wall_x, door_y = tr.sample_geometry(kg, settings)
        a = tr.TwoRoomsState(tr.free_position(ka, wall_x, door_y, settings), wall_x, door_y)
        b = tr.TwoRoomsState(tr.free_position(kb, wall_x, door_y, settings), wall_x, door_y)
        za, zb = encode(tr.render(a, settings)), encode(tr.render(b, settings))
        pa, pb = np.asarray(a.position), np.asarray(b.position)
        rows.append(
            (np.linalg.norm(za - zb), np.linalg.norm(pa - pb), (pa[0] > wall_x) != (pb[0] > wall_x))
        )
    d, euclidean, other = (np.array(c, np.float64) for c in zip(*rows, strict=True))
    assert 0 < other.sum() < 32  # both kinds of pair drawn
    expected = evaluation.fit_room_penalty(d, euclidean, other)
    assert result["room_penalty_px"] == pytest.approx(expected, abs=0.01)
