"""``jepa-eval --protocol planning``: a world-model run (``objective="world_model"``) plans in
Two Rooms with its own predicted embeddings (``jepa/envs/two_rooms_planning.py``, eb_jepa's
protocol: ``method.planning.episodes`` tasks, start and goal in different rooms, a random wall,
200 steps, re-planning every ``replan_every``); a ridge probe reads the dot's position from its
embedding, ``wall_contact`` checks that its predictions stop at the wall and ``room_penalty``
that its distances keep the rooms apart. ``--baselines``
adds the same tasks driven by random actions (the floor) and by the same planner given the true
dynamics in state space (the ceiling).

The whole evaluation, every episode vmapped, is one jitted function of the parameters: it
compiles once (``compiles``); ``seconds_per_episode`` is its run time without the compile
(``compile_seconds``) over the episodes."""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jepa import hub, methods, planning
from jepa import world_model_loss as wml
from jepa.envs import two_rooms as tr
from jepa.envs import two_rooms_planning as tp
from jepa.evaluate import ridge
from jepa.methods import world_model


def position_probe(config, params, seed: int, horizon: int = 16, trajectories: int = 256):
    """R² of a ridge probe of the dot's position from the embedding, fitted on
    ``trajectories`` fresh trajectories of the exploratory policy and tested on as many others:
    of the encoded frames, and of the predictor's open-loop embeddings ``horizon`` steps ahead.
    Returns (results, ``read``: embeddings [N, D] → positions [N, 2])."""
    settings, model = world_model.settings(config), world_model.build(config)
    variables = {"params": params}
    generate = jax.jit(jax.vmap(lambda k: tr.rollout(k, settings, steps=horizon)))
    obs, actions, pos = generate(jax.random.split(jax.random.key(seed), 2 * trajectories))
    z = model.apply(variables, obs, method="encode")
    predict = functools.partial(model.apply, variables, method="predict")
    ahead = wml.unroll(predict, z[:, 0], actions)[:, -1]
    z, ahead, pos = (np.asarray(x) for x in (z, ahead, pos))
    n, d = trajectories, z.shape[-1]
    train_x, train_y = z[:n].reshape(-1, d), pos[:n].reshape(-1, 2)
    encoded = ridge.ridge_r2(train_x, train_y, z[n:].reshape(-1, d), pos[n:].reshape(-1, 2))
    read = ridge.ridge_map(train_x, train_y, encoded["alpha"])
    results = {
        "position_r2": round(encoded["r2"], 4),
        f"position_r2_predicted_{horizon}": round(ridge.r2(read(ahead[n:]), pos[n:, -1]), 4),
    }
    return results, read


def wall_stops(positions: jax.Array, wall_x: jax.Array) -> jax.Array:
    """Positions [..., T+1, 2] of the data policy's trajectories and their walls' ``wall_x``
    [...] -> the moves [..., T] undone at the dividing wall (the policy undoes a move that meets
    a wall; the dividing wall is at least 15 from either border line, so a stop within 4 of it
    is its)."""
    moved = jnp.linalg.norm(positions[..., 1:, :] - positions[..., :-1, :], axis=-1)
    return (moved == 0) & (jnp.abs(positions[..., :-1, 0] - wall_x[..., None]) < 4)


def free_end(start: jax.Array, actions: jax.Array, settings: tr.TwoRoomsSettings) -> jax.Array:
    """Where ``actions`` [..., T, 2] take the dot from ``start`` [..., 2] with no wall but the
    border, kept 0.3 inside it as ``two_rooms.step`` keeps it."""
    end = start + jnp.sum(actions, axis=-2)
    return jnp.clip(end, settings.low + 0.3, settings.high - 0.3)


def wall_contact(config, params, seed: int, trajectories: int = 2048, min_blocked: int = 4):
    """Has the predictor learned where the dividing wall stops the dot? Among ``trajectories``
    fresh trajectories of the training policy (``method.env.window`` actions each), those with
    at least ``min_blocked`` moves undone at the dividing wall: the mean distance of the last
    open-loop prediction to the encoded last frame (``wall_to_true``) and to the encoded frame
    the same actions reach with no walls (``wall_to_free``), and the share of such
    trajectories. A model that knows the wall has ``wall_to_true`` well below
    ``wall_to_free``; one that carries the dot through it, the reverse. No probe: embedding
    distances only (None where no trajectory qualifies)."""
    settings, model = world_model.settings(config), world_model.build(config)
    variables = {"params": params}
    predict = functools.partial(model.apply, variables, method="predict")
    window = config.method.env.window

    def one(key):
        first, actions, positions = tr.explore(key, settings, window)
        free = free_end(positions[0], actions, settings)
        frames = jax.vmap(lambda p: tr.render(first._replace(position=p), settings))(
            jnp.stack([positions[0], positions[-1], free])
        )
        z = model.apply(variables, frames, method="encode")
        predicted = wml.unroll(predict, z[:1], actions[None])[0, -1]
        distances = jnp.linalg.norm(predicted - z[1:], axis=-1)
        return distances, jnp.sum(wall_stops(positions, first.wall_x)) >= min_blocked

    keys = jax.random.split(jax.random.key(seed), trajectories)
    distances, blocked = (np.asarray(x) for x in jax.jit(jax.vmap(one))(keys))
    result = {"wall_trajectories": round(float(blocked.mean()), 4)}
    for i, name in enumerate(("wall_to_true", "wall_to_free")):
        result[name] = round(float(distances[blocked, i].mean()), 4) if blocked.any() else None
    return result


def fit_room_penalty(distances, euclidean, other_room) -> float:
    """Least squares ``distances ≈ a·euclidean + b·other_room + c`` over pairs of points ([N]
    each; ``other_room`` 1 where the two lie on different sides of the dividing wall): b / a,
    the distance the embedding adds for the other room, in pixels."""
    x = np.stack([euclidean, other_room, np.ones_like(euclidean)], axis=1).astype(np.float64)
    (a, b, _), *_ = np.linalg.lstsq(x, np.asarray(distances, np.float64), rcond=None)
    return float(b / a)


def room_penalty(config, params, seed: int, pairs: int = 2048) -> dict:
    """How much farther the embedding puts a point of the other room than one of the same room
    as far away: ``fit_room_penalty`` over ``pairs`` pairs of free positions sharing a random
    layout, in pixels. The planner's Euclidean cost needs it: on the true dynamics, the
    position distance plus 30 px for the other room plans as well as the path through the
    door (``two_rooms_planning.true_dynamics_cost``, ``metric="rooms"``; docs/two_rooms.md),
    and an embedding that adds nothing plans like the bare Euclidean distance."""
    settings, model = world_model.settings(config), world_model.build(config)

    def one(key):
        kg, ka, kb = jax.random.split(key, 3)
        wall_x, door_y = tr.sample_geometry(kg, settings)
        a, b = (
            tr.TwoRoomsState(tr.free_position(k, wall_x, door_y, settings), wall_x, door_y)
            for k in (ka, kb)
        )
        z = model.apply(
            {"params": params},
            jnp.stack([tr.render(a, settings), tr.render(b, settings)]),
            method="encode",
        )
        other = tr.right_room(a.position, wall_x) != tr.right_room(b.position, wall_x)
        return jnp.linalg.norm(z[0] - z[1]), tr.distance(a, b), other

    keys = jax.random.split(jax.random.key(seed), pairs)
    d, euclidean, other = (np.asarray(x) for x in jax.jit(jax.vmap(one))(keys))
    return {"room_penalty_px": round(fit_room_penalty(d, euclidean, other), 2)}


def _summary(outcome: tp.Outcome) -> dict:
    success = np.asarray(outcome.success)
    return {
        "success": round(100 * float(success.mean()), 2),
        "final_distance_median": round(float(np.median(np.asarray(outcome.final_distance))), 3),
    }


def steps_to_goal(positions, goals, threshold: float) -> list:
    """Per episode, the first step whose position is within ``threshold`` of the goal (None:
    never)."""
    d = np.linalg.norm(np.asarray(positions) - np.asarray(goals.position)[:, None], axis=-1)
    within = d < threshold
    return [int(np.argmax(w)) if w.any() else None for w in within]


class Planning:
    """The evaluator: results in ``planning_<planner>_<cost>_step<N>.json``, the episodes
    drawn in a PNG of the same name beside it."""

    def __init__(self, config, workdir, *, baselines=False, **_):
        if methods.of(config).protocol != "planning":
            raise ValueError(
                f"--protocol planning plans with a world model; this run's objective="
                f"{config.objective!r} has no planner; valid: a run of objective='world_model'"
            )
        if workdir is None:
            raise ValueError(
                "evals=('planning',) reads the whole world model; valid: jepa-eval --workdir W "
                "--protocol planning after training"
            )
        self.config, self.workdir, self.baselines = config, workdir, baselines
        p = config.method.planning
        self.stem = f"planning_{p.planner}_{p.cost}"  # one result file per planner and cost

    def run(self, encoder) -> dict:
        _, step, params, _ = hub.load_model_params(self.workdir, encoder.step)
        config = self.config
        p, settings = config.method.planning, world_model.settings(config)
        cfg = world_model.planner_config(config)
        model = world_model.build(config)
        traces = []

        @jax.jit
        def evaluate(params, key):
            traces.append(1)
            cost = planning.model_cost(
                model, {"params": params}, lambda s: tr.render(s, settings), p.cost
            )
            return tp.evaluate_planner(
                key,
                cfg,
                episodes=p.episodes,
                settings=settings,
                cost_builder=cost,
                replan_every=p.replan_every,
                warm_start=p.warm_start,
            )

        key = jax.random.key(p.seed)
        t0 = time.perf_counter()
        compiled = evaluate.lower(params, key).compile()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        outcome = jax.block_until_ready(compiled(params, key))
        run_s = time.perf_counter() - t0

        probe, read = position_probe(config, params, p.seed + 1)
        probe.update(wall_contact(config, params, p.seed + 2))
        probe.update(room_penalty(config, params, p.seed + 3))
        # The evaluation's tasks, as evaluate_planner draws them.
        tasks = tp.tasks(jax.random.split(key)[0], p.episodes, settings)
        reached = steps_to_goal(outcome.positions, tasks[1], settings.success_threshold)
        reached = [r for r in reached if r is not None]
        result = {
            "planner": p.planner,
            "cost": p.cost,
            # The search, so results of different settings are told apart.
            **{k: p[k] for k in ("horizon", "iterations", "samples", "elites", "replan_every")},
            "warm_start": bool(p.warm_start),
            "episodes": p.episodes,
            **_summary(outcome),
            "successes": [bool(s) for s in np.asarray(outcome.success)],
            "steps_to_goal_median": float(np.median(reached)) if reached else None,
            "seconds_per_episode": round(run_s / p.episodes, 2),
            "compile_seconds": round(compile_s, 1),
            "compiles": len(traces),
            **probe,
        }
        if self.baselines:
            result["baselines"] = self.run_baselines(cfg, key, settings)
        result["figure"] = self.draw(step, params, key, tasks, outcome, read)
        return result

    def run_baselines(self, cfg, key, settings) -> dict:
        """Success (percent) on the same tasks: random actions, and the planner on the true
        dynamics with the Euclidean distance (what the embedding's cost would be if it were
        the position) and with the path length through the door (the ceiling)."""
        p = self.config.method.planning
        runs = {
            "random_actions": lambda: tp.evaluate_random(
                key, episodes=p.episodes, settings=settings
            )
        }
        for metric in ("euclidean", "geodesic"):
            cost = tp.true_dynamics_cost(settings, p.cost, metric)
            runs[f"true_dynamics_{metric}"] = functools.partial(
                tp.evaluate_planner,
                key,
                cfg,
                episodes=p.episodes,
                settings=settings,
                cost_builder=cost,
                replan_every=p.replan_every,
                warm_start=p.warm_start,
            )
        return {name: _summary(jax.jit(run)())["success"] for name, run in runs.items()}

    def draw(self, step, params, key, tasks, outcome, read, shown: int = 8) -> str:
        """The first ``shown`` of the evaluation's ``tasks`` (starts, goals): executed path,
        and the first plan's predicted embeddings as the position probe reads them."""
        config = self.config
        settings, model = world_model.settings(config), world_model.build(config)
        shown = min(shown, config.method.planning.episodes)
        starts, goals = jax.tree.map(lambda x: x[:shown], tasks)
        image = functools.partial(tr.render, settings=settings)

        def first_plan(k, start, goal):
            plan = world_model.plan(
                config, params, image(start), image(goal), k, settings.episode_steps
            )
            z0 = model.apply({"params": params}, image(start), method="encode")
            predict = functools.partial(model.apply, {"params": params}, method="predict")
            return wml.unroll(predict, z0[None], plan.actions[None])[0]

        zs = np.asarray(jax.jit(jax.vmap(first_plan))(jax.random.split(key, shown), starts, goals))
        planned = read(zs.reshape(-1, zs.shape[-1])).reshape(shown, -1, 2)
        path = os.path.join(self.workdir, "eval", f"{self.stem}_step{step}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return tp.plot_episodes(
            path,
            np.asarray(outcome.positions)[:shown],
            goals,
            planned=planned,
            success=np.asarray(outcome.success)[:shown],
            settings=settings,
        )
