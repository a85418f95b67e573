"""``objective="world_model"``: the action-conditioned JEPA of the Two Rooms agent
(``jepa/models/world_model.py``, loss ``jepa/world_model_loss.py``). No dataset: every step's
trajectories are generated from (seed, step) by the environment (``jepa/envs/two_rooms.py``),
rendered at ``model.image_size`` with ``model.channels=2`` (dot, walls). ``params`` =
{"encoder", "predictor", "idm"}; the representation is the online encoder (no EMA target).

``method.planning`` is what ``jepa-eval --protocol planning`` runs
(``jepa/evaluate/world_model.py``): eb_jepa's evaluation by default; ``plan`` is one plan from
a start image to a goal image, for your own code."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jepa import planning
from jepa import world_model_loss as wml
from jepa.envs import two_rooms
from jepa.envs import two_rooms_planning as tp
from jepa.methods.base import Method, register
from jepa.models.world_model import WorldModel

PLANNERS = ("mppi", "cem")
COSTS = ("sum", "last")


def defaults() -> ml_collections.ConfigDict:
    """``method`` of a world model: the trajectories it trains on, its modules' sizes
    (``WorldModel``'s fields), its loss weights (``world_model_loss.LossWeights``' fields) and
    the planning evaluation."""
    return ml_collections.ConfigDict(
        dict(
            # ``window`` actions per trajectory (window + 1 frames); ``fixed_wall`` (wall_x,
            # door_y), or () for a random wall and door per trajectory; the data policy's
            # share of trajectories pressed against the wall away from the door
            # (``two_rooms.TwoRoomsSettings.wall_bump_rate``).
            env=dict(window=16, fixed_wall=(), wall_bump_rate=0.0),
            world_model=dict(
                embed_dim=32,
                encoder_features=(16, 32, 32),
                predictor_hidden=64,
                predictor_depth=2,
                idm_hidden=128,
            ),
            loss=dataclasses.asdict(wml.LossWeights(time_similarity=60.0)),
            planning=dict(
                planner="mppi",  # or "cem"
                cost="sum",  # distances summed over the horizon, or "last": the last state's
                horizon=90,
                iterations=20,
                samples=200,
                elites=20,
                replan_every=1,
                warm_start=False,
                episodes=20,
                seed=1234,  # the tasks: the same for every run evaluated with it
            ),
        )
    )


def settings(config) -> two_rooms.TwoRoomsSettings:
    """The environment a world model run trains and plans in."""
    env = config.method.env
    return two_rooms.TwoRoomsSettings(
        image_size=config.model.image_size,
        fixed_wall=tuple(env.fixed_wall) or None,
        wall_bump_rate=env.wall_bump_rate,
    )


def build(config) -> WorldModel:
    """The model, its inputs standardized with ``data.mean`` / ``data.std`` (per channel of
    the [0, 1] images; empty: none)."""
    fields = dict(config.method.world_model)
    fields["encoder_features"] = tuple(fields["encoder_features"])
    d = config.data
    return WorldModel(**fields, input_mean=tuple(d.mean) or None, input_std=tuple(d.std) or None)


def validate(config) -> None:
    s = config.method
    if config.model.channels != 2:
        raise ValueError(
            f"model.channels={config.model.channels}; valid: 2 (a world model sees the dot and "
            "the walls)"
        )
    if not 8 <= config.model.image_size <= two_rooms.DEFAULT.arena:
        raise ValueError(
            f"model.image_size={config.model.image_size}; valid: 8 to "
            f"{two_rooms.DEFAULT.arena} (Two Rooms' arena)"
        )
    if s.env.window < 1:
        raise ValueError(f"method.env.window={s.env.window}; valid: >= 1")
    bump = s.env.wall_bump_rate
    if not 0 <= bump <= 1 - two_rooms.DEFAULT.cross_wall_rate:
        raise ValueError(
            f"method.env.wall_bump_rate={bump}; valid: 0 to "
            f"{1 - two_rooms.DEFAULT.cross_wall_rate:g} (the trajectories that do not cross)"
        )
    if len(s.env.fixed_wall) not in (0, 2):
        raise ValueError(
            f"method.env.fixed_wall={tuple(s.env.fixed_wall)}; valid: () or (wall_x, door_y)"
        )
    if config.data.dataset:
        raise ValueError(
            f"data.dataset={config.data.dataset!r}: a world model generates its trajectories; "
            "valid: '' (no dataset)"
        )
    p = s.planning
    if p.planner not in PLANNERS:
        raise ValueError(f"method.planning.planner={p.planner!r}; valid: {PLANNERS}")
    if p.cost not in COSTS:
        raise ValueError(f"method.planning.cost={p.cost!r}; valid: {COSTS}")
    for key in ("horizon", "iterations", "samples", "replan_every", "episodes"):
        if p[key] < 1:
            raise ValueError(f"method.planning.{key}={p[key]}; valid: >= 1")
    if not 2 <= p.elites <= p.samples:
        raise ValueError(
            f"method.planning.elites={p.elites}; valid: 2 to method.planning.samples={p.samples}"
        )
    steps = two_rooms.DEFAULT.episode_steps
    if steps % p.replan_every or p.replan_every > p.horizon:
        raise ValueError(
            f"method.planning.replan_every={p.replan_every}; valid: a divisor of the episode's "
            f"{steps} steps, at most method.planning.horizon={p.horizon}"
        )


def init_params(config, rng) -> dict:
    s = config.model.image_size
    images = jnp.zeros((1, s, s, 2), jnp.uint8)
    return build(config).init(rng, images, jnp.zeros((1, 2)))["params"]


def make_loss_fn(config):
    """(params, target_params, batch, step) → (loss, aux): ``world_model_loss`` on the batch's
    ``observations`` [B, T+1, S, S, 2] and ``actions`` [B, T, 2]; aux adds the rollout error
    of its last step."""
    model = build(config)
    weights = wml.LossWeights(**config.method.loss)

    def loss_fn(params, target_params, batch, step):
        del target_params, step
        loss, aux = wml.world_model_loss(
            {"params": params}, model, batch["observations"], batch["actions"], weights
        )
        per_step = aux.pop("prediction_per_step")
        return loss, {**aux, "prediction_last": per_step[-1]}

    return loss_fn


def step_inputs(config):
    """fn(seed, step, batch_size) → {"observations", "actions"}: ``batch_size`` trajectories of
    the exploratory policy, keyed by (seed, step) alone — the same batch on any number of hosts
    and after any resume."""
    generate = jax.jit(
        jax.vmap(
            functools.partial(
                two_rooms.rollout, settings=settings(config), steps=config.method.env.window
            )
        ),
    )

    def draw(seed: int, step: int, batch_size: int) -> dict:
        key = jax.random.fold_in(jax.random.key(seed), step)
        observations, actions, _ = generate(jax.random.split(key, batch_size))
        return {"observations": np.asarray(observations), "actions": np.asarray(actions)}

    return draw


def planner_config(config):
    """``method.planning``'s optimizer: a ``planning.MPPIConfig`` or ``CEMConfig``."""
    p = config.method.planning
    kind = planning.MPPIConfig if p.planner == "mppi" else planning.CEMConfig
    return kind(horizon=p.horizon, iterations=p.iterations, samples=p.samples, elites=p.elites)


def plan(config, params, start_image, goal_image, key, steps_left=None) -> planning.Plan:
    """One plan of ``method.planning``'s optimizer from a start image to a goal image (each
    [S, S, 2], as ``two_rooms.render`` draws them): ``.actions`` [horizon, 2]. ``steps_left``
    (default: the horizon) cuts the cost to the steps an episode still has."""
    cfg = planner_config(config)
    build_cost = planning.model_cost(
        build(config), {"params": params}, lambda image: image, config.method.planning.cost
    )
    left = cfg.horizon if steps_left is None else steps_left
    cost = build_cost(jnp.asarray(start_image), jnp.asarray(goal_image), left)
    return tp.make_planner(cfg)(key, cost, jnp.zeros((cfg.horizon, 2), jnp.float32))


METHOD = register(
    Method(
        name="world_model",
        init_params=init_params,
        make_loss_fn=make_loss_fn,
        batch_ndims=lambda config: {"observations": 5, "actions": 3},
        defaults=defaults,
        validate=validate,
        step_inputs=step_inputs,
        eval_weights=lambda config: "context",  # trained without a target encoder
        vit=False,
        protocol="planning",
    )
)
