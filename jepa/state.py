"""The train state: one pytree holding everything a step reads and writes.

``params`` = {"encoder": context encoder, "predictor": predictor} for the masked objective,
{"encoder", "projector"} for the multiview one; ``target_params`` is the EMA copy of the encoder
(the target encoder, never touched by gradients; the multiview loss does not read it, it is
kept as a weight average); ``rng`` is raw key data (uint32) so it checkpoints like any other
array.
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jepa import sharding
from jepa.models import build_encoder, build_predictor, build_projector


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
    """Freshly initialized params, still wrapped in flax's logical-partitioning boxes."""
    m = config.model
    encoder, predictor = build_encoder(config), build_predictor(config)
    k_enc, k_pred = jax.random.split(rng)
    images = jnp.zeros((1, m.image_size, m.image_size, m.channels), jnp.float32)
    if config.objective == "multiview":
        pooled = jnp.zeros((1, m.width), jnp.float32)
        return {
            "encoder": encoder.init(k_enc, images)["params"],
            "projector": build_projector(config).init(k_pred, pooled)["params"],
        }
    if config.objective == "future":
        return _init_future(config, encoder, predictor, images, k_enc, k_pred)
    if config.objective == "hierarchy":
        from jepa.hierarchy import Hierarchy

        return Hierarchy(config).init_params(rng)
    mk = config.mask
    n_ctx, n_blocks, n_tgt = mk.context_tokens, mk.num_targets, mk.target_tokens
    if mk.kind == "tube":  # V-JEPA: clips; the predictor's params fit every generator's pair
        from jepa import config as config_lib

        gen = config_lib.tube_spec(config).generators[0]
        n_ctx, n_blocks, n_tgt = gen.context_tokens, 1, gen.target_tokens
        images = jnp.zeros((1, m.num_frames, *images.shape[1:]), jnp.float32)
    ctx_idx = jnp.zeros((1, n_ctx), jnp.int32)
    tgt_idx = jnp.zeros((1, n_blocks, n_tgt), jnp.int32)
    context = jnp.zeros((1, n_ctx, m.width), jnp.float32)
    return {
        "encoder": encoder.init(k_enc, images)["params"],
        "predictor": predictor.init(k_pred, context, ctx_idx, tgt_idx)["params"],
    }


def _init_future(config, encoder, predictor, images, k_enc, k_pred) -> dict:
    """Encoder, predictor over the clip's (time, h, w) grid, the latent's parameters (codes or
    the inference network) and, with ``latent.reference``, a z-free reference predictor."""
    from jepa import config as config_lib
    from jepa import latent

    m = config.model
    _, g, _ = config_lib.clip_grid(config)
    n_ctx = config.data.clip.context_frames * g * g
    context = jnp.zeros((1, n_ctx, m.width), jnp.float32)
    ctx_idx = jnp.zeros((1, n_ctx), jnp.int32)
    tgt_idx = jnp.zeros((1, 1, g * g), jnp.int32)
    k_pred, k_lat, k_ref = jax.random.split(k_pred, 3)
    params = {
        "encoder": encoder.init(k_enc, images)["params"],
        "predictor": predictor.init(k_pred, context, ctx_idx, tgt_idx)["params"],
    }
    spec = config_lib.latent_spec(config)
    if spec.kind != "none":
        model = latent.LatentJEPA(spec, None, None, None, None, None, m.predictor.width)
        # the inference network reads the flattened tokens of s_x and s_y (jepa/step.py)
        params["latent"] = model.init_latent(k_lat, n_ctx * m.width, g * g * m.width)
    if config.latent.reference:
        params["reference"] = predictor.init(k_ref, context, ctx_idx, tgt_idx)["params"]
    return params


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


def create_train_state(config, tx, mesh, seed: int | None = None):
    """Initialize the state directly into its shardings (no host-side full copy)."""
    rng = jax.random.PRNGKey(config.seed if seed is None else seed)
    _, shardings = state_shardings(config, tx, mesh, rng)
    init = functools.partial(init_train_state, config, tx)
    state = jax.jit(init, out_shardings=shardings)(rng)
    return state, shardings
