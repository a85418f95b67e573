"""``objective="hierarchy"``: the hierarchical JEPA over video (``jepa/hierarchy.py`` holds the
model and its loss): its config section, and the optimizer mask of its training modes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jepa import hierarchy
from jepa.methods import base
from jepa.methods.base import Method, register


def defaults() -> ml_collections.ConfigDict:
    """``method`` of a hierarchy: level 1's task (``level1``, on windows of ``sequence.frames``
    frames), predictor and loss, its views term's ``projector``, the levels above
    (``levels``: ``hierarchy.UpperLevel``'s fields) and the training mode; each key is
    described in docs/methods.md ("Hierarchy") and ``jepa/hierarchy.py``."""
    return ml_collections.ConfigDict(
        dict(
            predictor=base.predictor_defaults(),
            projector=dict(hidden=512, depth=2, out=64),
            sequence=dict(frames=20),
            loss=base.loss_defaults(target_encoder="ema", regularize="pooled"),
            mode="joint",
            joint_weight=0.1,
            frozen_levels=0,
            level1=dict(
                context_frames=2,
                horizon=1,
                weight=1.0,
                windows=0,
                mask_ratio=0.0,
                mask_weight=1.0,
                pool_grid=1,
                views_weight=0.0,
                views=4,
                views_sigreg=0.05,
                views_rotate=25.0,
                views_scale=0.2,
                views_dilate=0.4,
            ),
            levels=(),
        )
    )


def level_of(path) -> int:
    """The level a parameter path (``jax.tree_util`` keys) belongs to."""
    names = [str(getattr(k, "key", k)) for k in path]
    if names and names[0] == "levels":
        return int(names[1].removeprefix("level"))
    return 1


def active_levels(config) -> jax.Array:
    """[num_levels] 0/1: which levels' updates apply (greedy: those above the frozen ones)."""
    levels = jnp.arange(1, hierarchy.num_levels(config) + 1)
    frozen = config.method.frozen_levels if config.method.mode == "greedy" else 0
    return (levels > frozen).astype(jnp.float32)


def level_update_mask(config) -> optax.GradientTransformation:
    """The last optimizer transform of a hierarchy: zero the updates (weight decay included)
    of the levels that are frozen (greedy)."""
    if config.method.mode == "joint":
        return optax.identity()
    active = active_levels(config)

    def update(updates, state, params=None):
        del params
        masked = jax.tree_util.tree_map_with_path(
            lambda path, u: u * active[level_of(path) - 1].astype(u.dtype), updates
        )
        return masked, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


METHOD = register(
    Method(
        name="hierarchy",
        init_params=lambda config, rng: hierarchy.Hierarchy(config).init_params(rng),
        make_loss_fn=lambda config: hierarchy.Hierarchy(config).loss_fn,
        # Windows of frames [batch, T, h, w, c].
        batch_ndims=lambda config: {"image": 5},
        defaults=defaults,
        validate=hierarchy.validate,
        # Windows of ``method.sequence.frames`` consecutive frames of a video dataset.
        pipeline=lambda config: {"sequence_frames": config.method.sequence.frames},
        predictor_grid=hierarchy.predictor_grid,
        optimizer_tail=level_update_mask,  # frozen / off-duty levels do not move
        # A frozen / off-duty level 1 keeps its target encoder too.
        ema_scale=lambda config, step: active_levels(config)[0],
        eval_weights=base.target_or_context,
    )
)
