"""Planning over action sequences: CEM, MPPI and a receding-horizon episode loop, in JAX.

A planner searches an action sequence ``[horizon, action_dim]`` that minimizes a pure
``cost(actions) -> scalar``; candidates are scored by ``vmap(cost)``, so the cost may be the
true dynamics rolled out in state space or a world model's predicted embeddings against a
goal's (``latent_cost``). ``plan_episode`` runs an environment for N steps, re-planning every
k steps from the current state, as one ``lax.scan``: a whole evaluation, vmapped over
episodes, compiles once.

The optimizers are eb_jepa's (``eb_jepa/planning.py``, ``examples/ac_video_jepa``):
  * CEM: sample ``mean + std·N(0, 1)``, clip each action to norm ``max_norm``, keep the
    ``elites`` cheapest, refit mean and (unbiased) std to them; the plan is the final mean.
  * MPPI: the same sampling without a clip (eb_jepa clips only in CEM); the elites are weighted
    ``exp(-(c - c_min) / temperature)`` and the mean and std refit with those weights; the plan
    is one elite drawn with those weights. eb_jepa writes the weight as
    ``exp(0.005·(c_min - c))``: its "temperature" 0.005 is our 1 / 200.
Its defaults are the configs' below; one action is executed per plan, the horizon cut to the
steps left.

What we add: ``warm_start`` starts each plan from the previous plan's mean shifted by the
steps executed (zeros appended). eb_jepa starts every plan from zeros; with ``warm_start=False``
so do we.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class CEMConfig:
    horizon: int = 90
    iterations: int = 20
    samples: int = 200
    elites: int = 20
    init_std: float = 1.5  # eb_jepa's var_scale
    max_norm: float | None = 2.45


@dataclasses.dataclass(frozen=True)
class MPPIConfig:
    horizon: int = 90
    iterations: int = 20
    samples: int = 200
    elites: int = 20
    init_std: float = 2.0  # eb_jepa's max_std
    temperature: float = 200.0  # eb_jepa's 1 / 0.005
    max_norm: float | None = None


class Plan(NamedTuple):
    actions: jax.Array  # [H, A] the sequence to execute
    mean: jax.Array  # [H, A] the final proposal mean: the next plan's warm start
    best_costs: jax.Array  # [iterations] the cheapest candidate's cost per iteration


def clip_norm(actions: jax.Array, max_norm: float | None) -> jax.Array:
    """Each action [..., A] scaled down to norm ``max_norm`` where it is longer (eb_jepa's CEM
    clip, eps included); ``None`` leaves them as they are."""
    if max_norm is None:
        return actions
    norm = jnp.linalg.norm(actions, axis=-1, keepdims=True)
    return actions * (jnp.minimum(norm, max_norm) / (norm + 1e-6))


def _sample(key, mean, std, samples, max_norm):
    return clip_norm(mean + std * jax.random.normal(key, (samples, *mean.shape)), max_norm)


def _elites(cost_fn, candidates, count):
    costs = jax.vmap(cost_fn)(candidates)
    neg, idx = jax.lax.top_k(-costs, count)
    return candidates[idx], -neg, costs.min()


def cem(key: jax.Array, cost_fn: Callable, mean: jax.Array, config: CEMConfig) -> Plan:
    """Cross-entropy method from ``mean`` [H, A] with std ``init_std``."""
    std = jnp.full_like(mean, config.init_std)

    def iteration(carry, k):
        mean, std = carry
        cand = _sample(k, mean, std, config.samples, config.max_norm)
        elites, _, best = _elites(cost_fn, cand, config.elites)
        return (elites.mean(0), elites.std(0, ddof=1)), best

    keys = jax.random.split(key, config.iterations)
    (mean, _), best = jax.lax.scan(iteration, (mean, std), keys)
    return Plan(mean, mean, best)


def mppi(key: jax.Array, cost_fn: Callable, mean: jax.Array, config: MPPIConfig) -> Plan:
    """MPPI from ``mean`` [H, A] with std ``init_std``; returns an elite drawn by weight."""
    std = jnp.full_like(mean, config.init_std)
    h = config.elites

    def iteration(carry, k):
        mean, std, _, _ = carry
        cand = _sample(k, mean, std, config.samples, config.max_norm)
        elites, costs, best = _elites(cost_fn, cand, h)
        w = jax.nn.softmax(-(costs - best) / config.temperature)
        mean = jnp.einsum("e,e...->...", w, elites)
        std = jnp.sqrt(jnp.einsum("e,e...->...", w, (elites - mean) ** 2))
        return (mean, std, elites, w), best

    first, rest = jax.random.split(key)
    init = (mean, std, jnp.zeros((h, *mean.shape), mean.dtype), jnp.full((h,), 1.0 / h))
    keys = jax.random.split(rest, config.iterations)
    (mean, _, elites, w), best = jax.lax.scan(iteration, init, keys)
    pick = jax.random.choice(first, h, p=w)
    return Plan(elites[pick], mean, best)


def reduce_horizon(per_step: jax.Array, steps_left: jax.Array, mode: str = "sum") -> jax.Array:
    """A plan's cost from its per-step costs [H]: the sum over the steps the episode still
    has (eb_jepa's ``sum_all_diffs``), or the last of them (``"last"``). The horizon is cut to
    the steps left as eb_jepa's planner cuts ``plan_length``, by masking so shapes stay
    static."""
    h = per_step.shape[0]
    if mode == "sum":
        return jnp.sum(jnp.where(jnp.arange(h) < steps_left, per_step, 0.0))
    if mode == "last":
        return per_step[jnp.clip(steps_left, 1, h) - 1]
    raise ValueError(f"mode must be 'sum' or 'last', got {mode!r}")


def rollout_cost(step: Callable, distance: Callable, start, goal, steps_left, mode: str = "sum"):
    """``cost(actions [H, A])``: ``step(s, a) -> s'`` unrolled from ``start``, each step's
    ``distance(s, goal)`` reduced by ``reduce_horizon``."""

    def cost(actions):
        def advance(s, a):
            s = step(s, a)
            return s, s

        _, path = jax.lax.scan(advance, start, actions)
        return reduce_horizon(jax.vmap(distance, (0, None))(path, goal), steps_left, mode)

    return cost


def latent_cost(encode: Callable, predict: Callable, observe: Callable, mode: str = "sum"):
    """A world model's ``cost_builder(state, goal, steps_left)`` (eb_jepa's ``repr_dist``):
    ``observe(state) -> image`` (e.g. ``lambda s: two_rooms.render(s, settings)``) and
    ``encode(image) -> z [D]`` once per plan for the state and the goal, ``predict(z [D], a [A])
    -> z'`` unrolled over the candidate, the Euclidean distance to the goal's z at every step."""
    if mode not in ("sum", "last"):
        raise ValueError(f"mode must be 'sum' or 'last', got {mode!r}")

    def build(state, goal, steps_left):
        z0, z_goal = encode(observe(state)), encode(observe(goal))
        return rollout_cost(
            predict, lambda z, g: jnp.linalg.norm(z - g), z0, z_goal, steps_left, mode
        )

    return build


def model_cost(model, params, observe: Callable, mode: str = "sum") -> Callable:
    """``latent_cost`` of a ``jepa.models.world_model.WorldModel`` with ``params``: a pure
    function of them, so an evaluation that takes the parameters as an argument compiles once
    and serves every checkpoint of the same shapes."""
    return latent_cost(
        functools.partial(model.apply, params, method="encode"),
        functools.partial(model.apply, params, method="predict"),
        observe,
        mode,
    )


def execute(env_step: Callable, state, actions: jax.Array, key: jax.Array):
    """``env_step(state, action, key)`` over ``actions`` [T, A], a key each split from ``key``:
    (the last state, the state after every step stacked over [T])."""

    def act(s, ak):
        s = env_step(s, *ak)
        return s, s

    return jax.lax.scan(act, state, (actions, jax.random.split(key, actions.shape[0])))


class Episode(NamedTuple):
    states: Any  # the state pytree stacked over [steps + 1]
    actions: jax.Array  # [steps, A] as executed (before the environment's clip)


def plan_episode(
    key: jax.Array,
    start: Any,
    goal: Any,
    *,
    planner: Callable[[jax.Array, Callable, jax.Array], Plan],
    cost_builder: Callable[[Any, Any, jax.Array], Callable],
    env_step: Callable[[Any, jax.Array, jax.Array], Any],
    steps: int,
    horizon: int,
    action_dim: int = 2,
    replan_every: int = 1,
    warm_start: bool = True,
) -> Episode:
    """Receding-horizon control: every ``replan_every`` steps, ``cost_builder(state, goal,
    steps_left)`` gives the cost of an action sequence from the current state and
    ``planner(key, cost, init_mean)`` a plan, whose first ``replan_every`` actions are
    stepped with ``env_step(state, action, key)``."""
    if steps % replan_every:
        raise ValueError(f"steps={steps} is not a multiple of replan_every={replan_every}")
    if replan_every > horizon:
        raise ValueError(f"replan_every={replan_every} exceeds horizon={horizon}")
    chunks = steps // replan_every

    def chunk(carry, xs):
        state, mean = carry
        index, k = xs
        k_plan, k_env = jax.random.split(k)
        plan = planner(k_plan, cost_builder(state, goal, steps - index * replan_every), mean)

        todo = plan.actions[:replan_every]
        state, states = execute(env_step, state, todo, k_env)
        if warm_start:
            tail = jnp.zeros((replan_every, action_dim), plan.mean.dtype)
            mean = jnp.concatenate([plan.mean[replan_every:], tail])
        return (state, mean), (states, todo)

    mean0 = jnp.zeros((horizon, action_dim), jnp.float32)
    xs = (jnp.arange(chunks), jax.random.split(key, chunks))
    _, (states, actions) = jax.lax.scan(chunk, (start, mean0), xs)
    flat = jax.tree.map(lambda x: x.reshape(steps, *x.shape[2:]), states)
    states = jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], s]), start, flat)
    return Episode(states, actions.reshape(steps, action_dim))
