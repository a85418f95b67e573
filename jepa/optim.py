"""Optimizer and schedules of the I-JEPA recipe, as optax transformations and pure functions.

All schedules take the optimizer step (0-based, the number of updates already applied) and are
computed over ``schedule_steps = total_steps * schedule_scale``. I-JEPA uses
``schedule_scale = 1.25`` ("ipe_scale"): its schedules are laid out for 1.25× the run, so the
run stops before the LR reaches its floor and before the EMA momentum reaches 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jepa import methods

NO_DECAY_NAMES = ("bias", "scale", "qkv_bias", "proj_bias")


def warmup_cosine_schedule(
    start: float, peak: float, final: float, warmup_steps: int, schedule_steps: int
) -> optax.Schedule:
    """Linear warmup start → peak over ``warmup_steps``, then cosine peak → final."""
    decay_steps = max(1, schedule_steps - warmup_steps)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        warm = start + (peak - start) * step / max(1, warmup_steps)
        progress = jnp.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = final + (peak - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(step < warmup_steps, warm, cosine)

    return schedule


def cosine_weight_decay_schedule(start: float, final: float, schedule_steps: int) -> optax.Schedule:
    """Weight decay moved from ``start`` to ``final`` along a half cosine (0.04 → 0.4 in I-JEPA)."""

    def schedule(step):
        progress = jnp.clip(jnp.asarray(step, jnp.float32) / max(1, schedule_steps), 0.0, 1.0)
        return final + (start - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))

    return schedule


def ema_momentum_schedule(start: float, final: float, schedule_steps: int) -> optax.Schedule:
    """Target-encoder EMA momentum, linear from ``start`` (0.996) to ``final`` (1.0)."""

    def schedule(step):
        progress = jnp.clip(jnp.asarray(step, jnp.float32) / max(1, schedule_steps), 0.0, 1.0)
        return start + (final - start) * progress

    return schedule


def weight_decay_mask(params):
    """True where weight decay applies: matrices and higher, never biases or norm scales.

    The reference's rule is ``'bias' not in name and p.ndim != 1``; we match names as well as
    ranks because our qkv bias is stored as [3, heads, head_dim].
    """

    def decays(path, leaf):
        name = getattr(path[-1], "key", str(path[-1]))
        return leaf.ndim > 1 and name not in NO_DECAY_NAMES

    return jax.tree_util.tree_map_with_path(decays, params)


def schedules_from_config(config):
    """The LR, WD and EMA schedules of ``config.optim`` over the run's ``total_steps``."""
    o = config.optim
    steps = int(round(config.total_steps * o.schedule_scale))
    warmup = o.warmup_steps
    return dict(
        lr=warmup_cosine_schedule(o.start_lr, o.lr, o.final_lr, warmup, steps),
        wd=cosine_weight_decay_schedule(o.weight_decay, o.final_weight_decay, steps),
        momentum=ema_momentum_schedule(o.ema_momentum[0], o.ema_momentum[1], steps),
    )


def make_optimizer(config) -> optax.GradientTransformation:
    """AdamW with the scheduled LR and WD, decay masked, optional global-norm clipping, then
    the method's own transform, if it has one."""
    o = config.optim
    sched = schedules_from_config(config)
    adamw = optax.adamw(
        learning_rate=sched["lr"],
        b1=o.b1,
        b2=o.b2,
        eps=o.eps,
        weight_decay=sched["wd"],
        mask=weight_decay_mask,
    )
    chain = [optax.clip_by_global_norm(o.grad_clip)] if o.grad_clip else []
    chain.append(adamw)
    tail = methods.of(config).optimizer_tail
    if tail is not None:
        chain.append(tail(config))  # which parameters move at a step, as the method says
    return chain[0] if len(chain) == 1 else optax.chain(*chain)
