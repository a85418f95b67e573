"""Planning in a world model's latent space: a ``cost_builder`` for ``jepa.planning``.

The cost of an action sequence from a state is the distance of the predicted embeddings to the
goal image's embedding (eb_jepa's ``repr_dist`` objective): render the current state and the
goal, encode both once per plan, unroll the predictor over the candidate's actions, take the
Euclidean distance at every step and reduce it with ``planning.reduce_horizon`` ("sum" over the
steps left, eb_jepa's ``sum_all_diffs``, or "last").

Everything is a pure function of the world model's parameters, so an evaluation that takes the
parameters as an argument compiles once and serves every checkpoint of the same shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jepa import planning


def latent_cost(
    encode: Callable[[jax.Array], jax.Array],
    predict: Callable[[jax.Array, jax.Array], jax.Array],
    observe: Callable,
    mode: str = "sum",
) -> Callable:
    """``cost_builder(state, goal, steps_left) -> cost(actions [H, A])``.

    ``encode(image) -> z [D]``, ``predict(z [D], a [A]) -> z'``, ``observe(state) -> image``
    (e.g. ``lambda s: two_rooms.render(s, settings)``)."""
    if mode not in ("sum", "last"):
        raise ValueError(f"mode must be 'sum' or 'last', got {mode!r}")

    def build(state, goal, steps_left):
        z0 = encode(observe(state))
        z_goal = encode(observe(goal))

        def cost(actions):
            def body(z, a):
                z = predict(z, a)
                return z, z

            _, zs = jax.lax.scan(body, z0, actions)
            per_step = jnp.linalg.norm(zs - z_goal, axis=-1)
            return planning.reduce_horizon(per_step, steps_left, mode)

        return cost

    return build


def model_cost(model, params, observe: Callable, mode: str = "sum") -> Callable:
    """``latent_cost`` for ``jepa.models.world_model.WorldModel`` with ``params``."""
    return latent_cost(
        lambda image: model.apply(params, image, method="encode"),
        lambda z, a: model.apply(params, z, a, method="predict"),
        observe,
        mode,
    )
