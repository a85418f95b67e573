"""Two Rooms evaluation: eb_jepa's protocol with the planner's cost pluggable, and its two
reference columns: the true-dynamics planner (the ceiling a world model can reach) and random
actions (the floor).

An episode (``main_eval``, ``eval.yaml``): a random layout, start and goal in different rooms,
``episode_steps`` (200) environment steps, re-planning after every one; success is the final
position within 4.5 of the goal (eb_jepa judges the last step, not the closest approach).
eb_jepa reports the rate over 20 episodes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jepa import planning
from jepa.envs import two_rooms as tr


def true_dynamics_cost(
    settings: tr.TwoRoomsSettings = tr.DEFAULT, mode: str = "sum", metric: str = "euclidean"
):
    """A ``cost_builder`` for ``plan_episode``: the environment's own deterministic step
    (mean push at walls) rolled out from the current state, scored by each position's distance
    to the goal position, summed over the horizon (or the last, ``mode="last"``).

    ``metric="euclidean"`` is eb_jepa's planning cost with the true state in place of the
    predicted embedding: it has a local minimum against the wall opposite the goal.
    ``"geodesic"`` measures the path through the door (``two_rooms.path_length``): the cost an
    ideal representation would give, and the planner's ceiling."""
    if metric == "euclidean":

        def dist(p, g):
            return jnp.linalg.norm(p - g.position)

    elif metric == "geodesic":

        def dist(p, g):
            return tr.path_length(p, g.position, g.wall_x, g.door_y, settings)

    else:
        raise ValueError(f"metric must be 'euclidean' or 'geodesic', got {metric!r}")

    def build(state, goal, steps_left):
        def cost(actions):
            def advance(s, a):
                s = tr.step(s, a, None, settings)
                return s, s.position

            _, positions = jax.lax.scan(advance, state, actions)
            per_step = jax.vmap(lambda p: dist(p, goal))(positions)
            return planning.reduce_horizon(per_step, steps_left, mode)

        return cost

    return build


def make_planner(config) -> Callable:
    """``planner(key, cost, mean)`` for ``plan_episode`` from a CEM or MPPI config."""
    if isinstance(config, planning.CEMConfig):
        return functools.partial(planning.cem, config=config)
    if isinstance(config, planning.MPPIConfig):
        return functools.partial(planning.mppi, config=config)
    raise TypeError(f"not a planner config: {config!r}")


class Outcome(NamedTuple):
    success: jax.Array  # [episodes] bool: final position within the threshold
    final_distance: jax.Array  # [episodes]
    positions: jax.Array  # [episodes, steps + 1, 2]


def _outcome(states, goals, settings):
    final = jax.tree.map(lambda x: x[:, -1], states)
    dist = jax.vmap(tr.distance)(final, goals)
    return Outcome(dist < settings.success_threshold, dist, states.position)


def tasks(key: jax.Array, episodes: int, settings: tr.TwoRoomsSettings = tr.DEFAULT):
    """(starts, goals), each a state batched over ``episodes``."""
    return jax.vmap(lambda k: tr.sample_start_goal(k, settings))(jax.random.split(key, episodes))


def evaluate_planner(
    key: jax.Array,
    config,
    *,
    episodes: int = 20,
    settings: tr.TwoRoomsSettings = tr.DEFAULT,
    cost_builder: Callable | None = None,
    replan_every: int = 1,
    warm_start: bool = True,
) -> Outcome:
    """``episodes`` tasks planned with ``config`` (CEMConfig or MPPIConfig), vmapped; the
    true-dynamics cost unless ``cost_builder`` is given. Jit it with ``config``, ``episodes``,
    ``settings``, ``cost_builder``, ``replan_every`` and ``warm_start`` static."""
    k_task, k_run = jax.random.split(key)
    starts, goals = tasks(k_task, episodes, settings)
    run = functools.partial(
        planning.plan_episode,
        planner=make_planner(config),
        cost_builder=cost_builder or true_dynamics_cost(settings),
        env_step=lambda s, a, k: tr.step(s, a, k, settings),
        steps=settings.episode_steps,
        horizon=config.horizon,
        replan_every=replan_every,
        warm_start=warm_start,
    )
    episodes_run = jax.vmap(run)(jax.random.split(k_run, episodes), starts, goals)
    return _outcome(episodes_run.states, goals, settings)


def evaluate_random(
    key: jax.Array, *, episodes: int = 20, settings: tr.TwoRoomsSettings = tr.DEFAULT
) -> Outcome:
    """The same tasks (same key, same episodes) driven by the exploratory policy's random
    walk instead of a planner."""
    k_task, k_run = jax.random.split(key)
    starts, goals = tasks(k_task, episodes, settings)
    steps = settings.episode_steps

    def run(k, start):
        kh, kw, ks = jax.random.split(k, 3)
        heading = jax.random.uniform(kh, maxval=2 * jnp.pi)
        actions = tr.exploration_actions(kw, heading, steps, settings)

        def advance(s, ak):
            s = tr.step(s, ak[0], ak[1], settings)
            return s, s

        _, states = jax.lax.scan(advance, start, (actions, jax.random.split(ks, steps)))
        return jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], s]), start, states)

    states = jax.vmap(run)(jax.random.split(k_run, episodes), starts)
    return _outcome(states, goals, settings)
