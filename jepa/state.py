"""The train state: one pytree holding everything a step reads and writes.

``params``: the method's modules (``jepa/methods/``), always with "encoder", the context
encoder; ``target_params`` is the EMA copy of the encoder (the target encoder, never touched by
gradients; a method whose loss does not read it keeps it as a weight average); ``rng`` is raw
key data (uint32) so it checkpoints like any other array.
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jepa import methods, sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    target_params: Any
    opt_state: Any
    rng: jax.Array
    # Updates skipped because the loss or gradient was not finite (``config.skip_nonfinite``).
    nonfinite_skipped: jax.Array

    def encoder(self, weights: str):
        """The encoder ``weights`` names (``eval.weights``), see ``select_encoder``."""
        return select_encoder(weights, self.params, self.target_params)


def select_encoder(weights: str, params, target_params):
    """The encoder ``weights`` names (``eval.weights``): "target", the EMA copy, or
    "context", the online encoder being trained. Shared by ``TrainState.encoder`` and the
    evaluations that hold ``(params, target)`` from a checkpoint rather than a train state."""
    return target_params if weights == "target" else params["encoder"]


def init_boxed_params(config, rng: jax.Array) -> dict:
    """Freshly initialized params of ``config.objective``'s method, still wrapped in flax's
    logical-partitioning boxes."""
    return methods.of(config).init_params(config, rng)


def init_train_state(config, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
    """Unsharded construction; run it under ``jax.jit(out_shardings=...)`` to place it."""
    init_key, state_key = jax.random.split(rng)
    params = nn.unbox(init_boxed_params(config, init_key))
    # The target encoder starts as an exact copy of the context encoder (reference: deepcopy).
    target = jax.tree.map(jnp.copy, params["encoder"])
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        target_params=target,
        opt_state=tx.init(params),
        rng=state_key,
        nonfinite_skipped=jnp.zeros((), jnp.int32),
    )


def state_shardings(config, tx, mesh, rng: jax.Array) -> tuple[TrainState, TrainState]:
    """(abstract state, its NamedShardings), computed without allocating anything."""
    rules = sharding.rules_of(config)
    boxed = jax.eval_shape(functools.partial(init_boxed_params, config), rng)
    p_shard = sharding.param_shardings(boxed, mesh, rules)
    abstract = jax.eval_shape(functools.partial(init_train_state, config, tx), rng)
    rep = sharding.replicated(mesh)
    shardings = TrainState(
        step=rep,
        params=p_shard,
        target_params=p_shard["encoder"],
        opt_state=sharding.opt_state_shardings(tx, abstract.opt_state, p_shard, mesh),
        rng=rep,
        nonfinite_skipped=rep,
    )
    return abstract, shardings


def create_train_state(config, tx, mesh):
    """Initialize the state directly into its shardings (no host-side full copy)."""
    rng = jax.random.PRNGKey(config.seed)
    _, shardings = state_shardings(config, tx, mesh, rng)
    init = functools.partial(init_train_state, config, tx)
    state = jax.jit(init, out_shardings=shardings)(rng)
    return state, shardings
