"""``objective="hierarchy"``: the hierarchical JEPA over video (``jepa/hierarchy.py`` holds the
model and its loss), with its training modes (``hierarchy.mode``) as optimizer and checkpoint
plumbing: which level a parameter belongs to, which levels move (greedy: the unfrozen ones),
the optimizer transform that zeroes the others' updates, and loading a trained run's lower
levels into a new one (greedy training)."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import optax

from jepa import checkpointing, hierarchy
from jepa.methods.base import Method, register

Hierarchy = hierarchy.Hierarchy


def level_of(path) -> int:
    """The level a parameter path (``jax.tree_util`` keys) belongs to."""
    names = [str(getattr(k, "key", k)) for k in path]
    if names and names[0] == "levels":
        return int(names[1].removeprefix("level"))
    return 1


def active_levels(config, step) -> jax.Array:
    """[num_levels] 0/1: which levels' updates apply at ``step`` (the same at every step)."""
    del step
    h, n = config.hierarchy, hierarchy.num_levels(config)
    levels = jnp.arange(1, n + 1)
    if h.mode == "greedy":
        return (levels > h.frozen_levels).astype(jnp.float32)
    return jnp.ones((n,), jnp.float32)


def level_update_mask(config) -> optax.GradientTransformation:
    """The last optimizer transform of a hierarchy: zero the updates (weight decay included)
    of the levels that are frozen (greedy)."""
    if config.hierarchy.mode == "joint":
        return optax.identity()
    active = active_levels(config, 0)

    def update(updates, state, params=None):
        del params
        masked = jax.tree_util.tree_map_with_path(
            lambda path, u: u * active[level_of(path) - 1].astype(u.dtype), updates
        )
        return masked, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def load_lower_levels(config, state, shardings, load_params):
    """With ``hierarchy.init_from``, copy levels 1 … ``hierarchy.frozen_levels`` (all levels
    the source has, in joint mode) and the level-1 target encoder from that
    run's latest checkpoint (read by ``load_params``, ``jepa.hub.load_model_params``) into a
    fresh ``state``. Strict: a level whose shapes differ is an error naming the paths, so a
    2-level run starts from exactly the level 1 it names."""
    source = config.hierarchy.init_from
    if not source:
        return state
    src_config, step, params, target = load_params(source)
    available = hierarchy.num_levels(src_config) if src_config.objective == METHOD.name else 0
    if available < 1:
        raise ValueError(
            f"hierarchy.init_from={source!r} holds an objective={src_config.objective!r} run; "
            "it must be a hierarchy run"
        )
    wanted = config.hierarchy.frozen_levels or available
    if wanted > available:
        raise ValueError(
            f"hierarchy.frozen_levels={wanted} but {source!r} has only {available} level(s)"
        )
    new_params = dict(state.params)
    for name in ("encoder", "predictor", "latent"):
        if name in params or name in new_params:
            checkpointing.check_tree_matches(
                params.get(name, {}), new_params.get(name, {}), f"{source} level 1 ({name})"
            )
            if name in params:
                new_params[name] = params[name]
    # Level 1's identity-term projector is only used while level 1 trains: taken when both
    # runs have one (strict on shapes), never required.
    if "views_projector" in params and "views_projector" in new_params:
        checkpointing.check_tree_matches(
            params["views_projector"], new_params["views_projector"], f"{source} level 1 (views)"
        )
        new_params["views_projector"] = params["views_projector"]
    if wanted > 1:
        levels = dict(new_params["levels"])
        for k in range(2, wanted + 1):
            key = f"level{k}"
            checkpointing.check_tree_matches(
                params["levels"][key], levels[key], f"{source} level {k}"
            )
            levels[key] = params["levels"][key]
        new_params["levels"] = levels
    loaded = state.replace(params=new_params, target_params=target)
    logging.info("loaded levels 1-%d from %s (step %d)", wanted, source, step)
    return jax.device_put(loaded, shardings)


def predictor_grid(config) -> tuple[int, int, int]:
    """Level 1's (time, h, w): its context frames through its target frame."""
    g = config.model.image_size // config.model.patch_size
    level1 = config.hierarchy.level1
    return level1.context_frames + level1.horizon, g, g


def batch_ndims(config) -> dict:
    """Windows of frames [batch, T, h, w, c]."""
    out = {"image": 5}
    if config.data.local_views:
        out["local"] = 5
    return out


METHOD = register(
    Method(
        name="hierarchy",
        init_params=lambda config, rng: Hierarchy(config).init_params(rng),
        make_loss_fn=lambda config: Hierarchy(config).loss_fn,
        batch_ndims=batch_ndims,
        validate=hierarchy.validate,
        # Windows of ``data.sequence.frames`` consecutive frames of a video dataset.
        pipeline=lambda config: {"sequence_frames": config.data.sequence.frames},
        predictor_grid=predictor_grid,
        optimizer_tail=level_update_mask,  # frozen / off-duty levels do not move
        # A frozen / off-duty level 1 keeps its target encoder too.
        ema_scale=lambda config, step: active_levels(config, step)[0],
        load_at_start=load_lower_levels,
        reads=("latent.kind",),
    )
)
