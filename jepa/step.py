"""The I-JEPA objective and the jitted, sharded train step.

One step, as in ``src/train.py`` of facebookresearch/ijepa:
  1. targets: the EMA target encoder on the full image, LayerNorm (no affine) per token,
     gathered at each target block's indices, under ``stop_gradient``;
  2. context: the online encoder on the context tokens only, then the predictor per target block;
  3. energy (smooth-L1 by default) averaged over blocks, tokens and features;
  4. AdamW update, then the EMA of the updated encoder into the target encoder.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jepa import objectives, optim, sharding
from jepa.models import build_encoder, build_predictor
from jepa.models.vit import gather_tokens
from jepa.state import TrainState


def feature_std(features: jax.Array) -> jax.Array:
    """Mean over feature dims of the std across samples; [batch, dim] → scalar.

    Falls towards 0 when the representation collapses to a constant."""
    return jnp.std(features.astype(jnp.float32), axis=0).mean()


def make_loss_fn(config):
    """loss_fn(params, target_params, batch) → (loss, aux); pure, for grad and for tests."""
    encoder, predictor = build_encoder(config), build_predictor(config)
    energy = objectives.energy_fn(config.loss.energy)
    rules = sharding.rules_of(config)

    def loss_fn(params, target_params, batch):
        images, ctx_idx, tgt_idx = batch["image"], batch["context"], batch["targets"]
        b, n_blocks, n_tgt = tgt_idx.shape
        # Logical-axis rules are read while tracing; entering them here keeps the function pure.
        with nn.logical_axis_rules(rules):
            full, _ = encoder.apply({"params": target_params}, images)
            full = jax.lax.stop_gradient(full.astype(jnp.float32))
            h = objectives.normalize_targets(full)
            targets = gather_tokens(h, tgt_idx.reshape(b, n_blocks * n_tgt))
            targets = targets.reshape(b, n_blocks, n_tgt, -1)

            context, _ = encoder.apply({"params": params["encoder"]}, images, ctx_idx)
            preds = predictor.apply({"params": params["predictor"]}, context, ctx_idx, tgt_idx)
            loss = energy(preds.astype(jnp.float32), targets).mean()
        aux = {"target_std": feature_std(full.mean(axis=1))}
        return loss, aux

    return loss_fn


def make_train_step(config, tx: optax.GradientTransformation):
    """The un-jitted step ``(state, batch) → (state, metrics)``."""
    loss_fn = make_loss_fn(config)
    schedules = optim.schedules_from_config(config)

    def train_step(state: TrainState, batch):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.target_params, batch
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        momentum = schedules["momentum"](state.step)
        # target ← m·target + (1 − m)·online
        target = optax.incremental_update(params["encoder"], state.target_params, 1.0 - momentum)
        metrics = {
            "loss": loss,
            "lr": schedules["lr"](state.step),
            "wd": schedules["wd"](state.step),
            "momentum": momentum,
            "grad_norm": optax.tree.norm(grads),
            **aux,
        }
        new_state = state.replace(
            step=state.step + 1, params=params, target_params=target, opt_state=opt_state
        )
        return new_state, metrics

    return train_step


def batch_shardings(mesh) -> dict:
    return {
        "image": sharding.batch_sharding(mesh, 4),
        "context": sharding.batch_sharding(mesh, 2),
        "targets": sharding.batch_sharding(mesh, 3),
    }


def jit_train_step(config, tx, mesh, state_shardings: TrainState):
    """``jax.jit`` of the step with the state donated and every input/output sharding fixed,
    so the step compiles exactly once per run."""
    return jax.jit(
        make_train_step(config, tx),
        in_shardings=(state_shardings, batch_shardings(mesh)),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )
