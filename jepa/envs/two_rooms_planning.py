"""Two Rooms evaluation: eb_jepa's protocol with the planner's cost pluggable, its two
reference columns: the true-dynamics planner (the ceiling a world model can reach) and random
actions (the floor), and a PNG of the episodes.

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
import numpy as np

from jepa import planning
from jepa.envs import two_rooms as tr
from jepa.plots import pyplot, save


def true_dynamics_cost(
    settings: tr.TwoRoomsSettings = tr.DEFAULT,
    mode: str = "sum",
    metric: str = "euclidean",
    room_penalty: float = 30.0,
):
    """A ``cost_builder`` for ``plan_episode``: the environment's own deterministic step
    (mean push at walls) rolled out from the current state, scored by each position's distance
    to the goal position, summed over the horizon (or the last, ``mode="last"``).

    ``metric="euclidean"`` is eb_jepa's planning cost with the true state in place of the
    predicted embedding: it has a local minimum against the wall opposite the goal.
    ``"geodesic"`` measures the path through the door (``two_rooms.path_length``): the cost an
    ideal representation would give, and the planner's ceiling. ``"rooms"`` is the Euclidean
    distance plus ``room_penalty`` (pixels) while the dot is on the other side of the dividing
    wall from the goal: what one feature for the room adds to an embedding's distance."""

    def other_room(s, g):
        return tr.right_room(s.position, s.wall_x) != tr.right_room(g.position, g.wall_x)

    distances = {
        "euclidean": lambda s, g: jnp.linalg.norm(s.position - g.position),
        "geodesic": lambda s, g: tr.path_length(
            s.position, g.position, g.wall_x, g.door_y, settings
        ),
        "rooms": lambda s, g: (
            jnp.linalg.norm(s.position - g.position) + room_penalty * other_room(s, g)
        ),
    }
    if metric not in distances:
        raise ValueError(f"metric must be one of {tuple(distances)}, got {metric!r}")
    step = functools.partial(tr.step, key=None, settings=settings)
    return functools.partial(planning.rollout_cost, step, distances[metric], mode=mode)


def make_planner(config) -> Callable:
    """``planner(key, cost, mean)`` for ``plan_episode`` from a CEM or MPPI config."""
    optimizers = {planning.CEMConfig: planning.cem, planning.MPPIConfig: planning.mppi}
    if type(config) not in optimizers:
        raise TypeError(f"not a planner config: {config!r}")
    return functools.partial(optimizers[type(config)], config=config)


class Outcome(NamedTuple):
    success: jax.Array  # [episodes] bool: final position within the threshold
    final_distance: jax.Array  # [episodes]
    positions: jax.Array  # [episodes, steps + 1, 2]


def tasks(key: jax.Array, episodes: int, settings: tr.TwoRoomsSettings = tr.DEFAULT):
    """(starts, goals), each a state batched over ``episodes``."""
    return jax.vmap(lambda k: tr.sample_start_goal(k, settings))(jax.random.split(key, episodes))


def _evaluate(key, episodes, settings, run) -> Outcome:
    """``run(key, start, goal) -> states`` [steps + 1] vmapped over ``episodes`` tasks."""
    k_task, k_run = jax.random.split(key)
    starts, goals = tasks(k_task, episodes, settings)
    states = jax.vmap(run)(jax.random.split(k_run, episodes), starts, goals)
    dist = jax.vmap(tr.distance)(jax.tree.map(lambda x: x[:, -1], states), goals)
    return Outcome(dist < settings.success_threshold, dist, states.position)


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
    return _evaluate(key, episodes, settings, lambda k, start, goal: run(k, start, goal).states)


def evaluate_random(
    key: jax.Array, *, episodes: int = 20, settings: tr.TwoRoomsSettings = tr.DEFAULT
) -> Outcome:
    """The same tasks (same key, same episodes) driven by the exploratory policy's random
    walk instead of a planner."""

    def run(k, start, goal):
        kh, kw, ks = jax.random.split(k, 3)
        heading = jax.random.uniform(kh, maxval=2 * jnp.pi)
        actions = tr.exploration_actions(kw, heading, settings.episode_steps, settings)
        step = functools.partial(tr.step, settings=settings)
        _, states = planning.execute(step, start, actions, ks)
        return jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], s]), start, states)

    return _evaluate(key, episodes, settings, run)


def plot_episodes(
    path: str,
    positions,
    goals,
    *,
    planned=None,
    success=None,
    settings: tr.TwoRoomsSettings = tr.DEFAULT,
    columns: int = 4,
) -> str:
    """One panel per episode: walls and door, start, goal, the executed path ``positions``
    [E, T+1, 2] and, when given, the path the first plan predicted, ``planned`` [E, H, 2] (e.g.
    its predicted embeddings read by a position probe); ``goals`` is a goal state batched over
    E, ``success`` [E] bool titles each panel. Coordinates are the arena's (``settings.arena``
    pixels), drawn over the arena-size wall image."""
    positions = np.asarray(positions)
    episodes = positions.shape[0]
    rows = -(-episodes // columns)
    fig, axes = pyplot().subplots(rows, columns, figsize=(2.6 * columns, 2.6 * rows), squeeze=False)
    full = tr.TwoRoomsSettings(**{**settings.__dict__, "image_size": settings.arena})
    for e, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if e >= episodes:
            continue
        walls = tr.render_walls(float(goals.wall_x[e]), float(goals.door_y[e]), full)
        ax.imshow(np.asarray(walls), cmap="Greys", vmin=0, vmax=510, origin="upper")
        p = positions[e]
        ax.plot(p[:, 0], p[:, 1], "-", color="tab:blue", lw=1.2, label="executed")
        if planned is not None:
            ax.plot(*np.asarray(planned[e]).T, "--", color="tab:orange", lw=1.0, label="first plan")
        ax.plot(*p[0], "o", color="tab:blue", ms=5)
        ax.plot(*np.asarray(goals.position[e]), "*", color="tab:red", ms=10, label="goal")
        if success is not None:
            ax.set_title("reached" if bool(success[e]) else "missed", fontsize=9)
    axes.ravel()[0].legend(loc="lower left", fontsize=6, framealpha=0.8)
    return save(fig, path)
