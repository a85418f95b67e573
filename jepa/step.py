"""The jitted train step, the same for every method: the method's loss (``jepa/methods/``),
its gradient accumulated over micro-batches, the AdamW update, the EMA of the updated encoder
into the target encoder, and the non-finite guard that keeps a bad step from being applied.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jepa import methods, optim, sharding
from jepa.state import TrainState


def split_microbatches(batch: dict, steps: int, rules=()) -> dict:
    """Every ``[batch, ...]`` array → ``[steps, batch / steps, ...]``; micro-batch j holds rows
    j, j + steps, j + 2·steps, …

    Strided rows, not contiguous blocks, because the batch axis is split over the devices in
    contiguous blocks: the reshape to ``[batch / steps, steps, ...]`` leaves each device's rows
    on that device, and every micro-batch is split over all devices like the full batch, so no
    data moves (``tests/test_scale.py`` checks that the step has no all-gather). The constraint
    says so to XLA (a no-op without a mesh)."""

    def split(x):
        x = x.reshape(x.shape[0] // steps, steps, *x.shape[1:]).swapaxes(0, 1)
        with nn.logical_axis_rules(rules):
            return nn.with_logical_constraint(x, (None, "act_batch") + (None,) * (x.ndim - 2))

    return jax.tree.map(split, batch)


def accumulated_value_and_grad(loss_fn, steps: int = 1, rules=()):
    """``jax.value_and_grad(loss_fn, has_aux=True)`` over ``steps`` micro-batches of the batch:
    ``(params, target_params, batch, step) → ((loss, aux), grads)``, each the mean over the
    micro-batches (summed in float32), run one after another in a ``lax.scan`` so that only
    one micro-batch's activations are alive at a time.

    Micro-batch j of step s draws its randomness (SIGReg directions, the latent's noise) as
    step s·steps + j would, so per-sample noise is not repeated across micro-batches. For a
    loss that is a mean over samples and draws nothing (I-JEPA's energy) this equals one big
    batch; a batch statistic (VICReg, SIGReg, code usage, ``target_std``) becomes the mean of
    per-micro-batch statistics (see ``config.optim.grad_accum_steps``)."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if steps == 1:
        return grad_fn

    def accumulated(params, target_params, batch, step):
        micro = split_microbatches(batch, steps, rules)

        def add(total, inputs):
            mb, j = inputs
            out = grad_fn(params, target_params, mb, step * steps + j)
            return jax.tree.map(lambda t, x: t + x.astype(jnp.float32), total, out), None

        first = jax.tree.map(lambda x: x[0], micro)
        shapes = jax.eval_shape(grad_fn, params, target_params, first, step)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes)
        total, _ = jax.lax.scan(add, zeros, (micro, jnp.arange(steps)))
        return jax.tree.map(lambda t, s: (t / steps).astype(s.dtype), total, shapes)

    return accumulated


def make_train_step(config, tx: optax.GradientTransformation):
    """The un-jitted step ``(state, batch) → (state, metrics)``."""
    method = methods.of(config)
    loss_fn, rules = method.make_loss_fn(config), sharding.rules_of(config)
    grad_fn = accumulated_value_and_grad(loss_fn, config.optim.grad_accum_steps, rules)
    schedules = optim.schedules_from_config(config)

    def train_step(state: TrainState, batch):
        (loss, aux), grads = grad_fn(state.params, state.target_params, batch, state.step)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        momentum = schedules["momentum"](state.step)
        # target ← m·target + (1 − m)·online
        ema_step = 1.0 - momentum
        if method.ema_scale is not None:  # e.g. a frozen level keeps its target encoder
            ema_step = ema_step * method.ema_scale(config, state.step)
        target = optax.incremental_update(params["encoder"], state.target_params, ema_step)
        grad_norm = optax.tree.norm(grads)
        # One flag for the host's guard (jepa/train.py), which stops the run at the first such
        # step unless config.skip_nonfinite.
        nonfinite = ~(jnp.isfinite(loss) & jnp.isfinite(grad_norm))
        skipped = state.nonfinite_skipped
        if config.skip_nonfinite:
            # The previous state, array by array: a select inside the jitted step (no host
            # round trip), so the donated state stays donated.
            params, opt_state, target = jax.tree.map(
                lambda new, old: jnp.where(nonfinite, old, new),
                (params, opt_state, target),
                (state.params, state.opt_state, state.target_params),
            )
            skipped = skipped + nonfinite.astype(jnp.int32)
        metrics = {
            "loss": loss,
            "lr": schedules["lr"](state.step),
            "wd": schedules["wd"](state.step),
            "momentum": momentum,
            "grad_norm": grad_norm,
            "nonfinite": nonfinite,
            "nonfinite_skipped": skipped,
            **aux,
        }
        # The step counter advances either way: the batch was consumed and the schedules and
        # mask seeds follow the step, as in an uninterrupted run.
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            target_params=target,
            opt_state=opt_state,
            nonfinite_skipped=skipped,
        )
        return new_state, metrics

    return train_step


def jit_train_step(config, tx, mesh, state_shardings: TrainState):
    """``jax.jit`` of the step with the state donated and every input/output sharding fixed,
    so the step compiles exactly once per run. The batch: one batch-axis sharding per key
    that the method reads."""
    ndims = methods.of(config).batch_ndims(config)
    batch_shardings = {key: sharding.batch_sharding(mesh, ndim) for key, ndim in ndims.items()}
    return jax.jit(
        make_train_step(config, tx),
        in_shardings=(state_shardings, batch_shardings),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )
