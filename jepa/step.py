"""The I-JEPA objective and the jitted, sharded train step.

One step, as in ``src/train.py`` of facebookresearch/ijepa:
  1. targets: the EMA target encoder on the full image, LayerNorm (no affine) per token,
     gathered at each target block's indices, under ``stop_gradient``;
  2. context: the online encoder on the context tokens only, then the predictor per target block;
  3. energy (smooth-L1 by default) averaged over blocks, tokens and features, plus the optional
     information regularizers on the context embeddings s_x (VICReg variance/covariance,
     SIGReg), which keep s_x informative where the EMA target alone lets it partially collapse;
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


def regularizer_samples(context: jax.Array, mode: str) -> jax.Array:
    """The samples the information regularizers see: ``pooled`` = one mean embedding per image
    (information about the image as a whole), ``tokens`` = every context token."""
    if mode == "pooled":
        return context.mean(axis=1)
    return context.reshape(-1, context.shape[-1])


def information_terms(z: jax.Array, loss_config, key: jax.Array) -> dict:
    """The enabled anti-collapse terms on embeddings ``z`` [samples, dim], unweighted, keyed by
    the name of their weight in ``config.loss``."""
    terms = {}
    if loss_config.vicreg_var:
        terms["vicreg_var"] = objectives.vicreg_variance(z, loss_config.vicreg_gamma)
    if loss_config.vicreg_cov:
        terms["vicreg_cov"] = objectives.vicreg_covariance(z)
    if loss_config.sigreg:
        terms["sigreg"] = objectives.sigreg(z, key, loss_config.sigreg_slices)
    return terms


def make_loss_fn(config):
    """loss_fn(params, target_params, batch, step) → (loss, aux); pure, for grad and tests."""
    encoder, predictor = build_encoder(config), build_predictor(config)
    energy = objectives.energy_fn(config.loss.energy)
    rules = sharding.rules_of(config)
    lc = config.loss
    base_key = jax.random.PRNGKey(config.seed)

    def loss_fn(params, target_params, batch, step=0):
        images, ctx_idx, tgt_idx = batch["image"], batch["context"], batch["targets"]
        other_view = None
        if images.ndim == 5:  # [batch, 2 views, h, w, c]: masks apply to view 1
            images, other_view = images[:, 0], images[:, 1]
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
            pred_energy = energy(preds.astype(jnp.float32), targets).mean()
            context = context.astype(jnp.float32)
            loss = lc.token_weight * pred_energy
            aux = {"energy": pred_energy, "target_std": feature_std(full.mean(axis=1))}
            if lc.global_weight:
                # The image-level JEPA pair: x = the context, y = the whole image (or a second
                # augmented view of it), meant to force image-level content into s_x that the
                # per-token targets of a small grid may not (on mnist5k it did not lift the
                # probe: README, demo results).
                whole = full
                if other_view is not None:
                    whole, _ = encoder.apply({"params": target_params}, other_view)
                    whole = jax.lax.stop_gradient(whole.astype(jnp.float32))
                aux["global_energy"] = energy(
                    objectives.normalize_targets(context.mean(axis=1)),
                    objectives.normalize_targets(whole.mean(axis=1)),
                ).mean()
                loss = loss + lc.global_weight * aux["global_energy"]
        # SIGReg directions: re-drawn every step, the same on every device (one key per step).
        terms = information_terms(
            regularizer_samples(context, lc.regularize), lc, jax.random.fold_in(base_key, step)
        )
        # Each term is named after its weight's key in config.loss.
        loss = loss + sum(lc[name] * value for name, value in terms.items())
        return loss, {**aux, **terms}

    return loss_fn


def make_train_step(config, tx: optax.GradientTransformation):
    """The un-jitted step ``(state, batch) → (state, metrics)``."""
    loss_fn = make_loss_fn(config)
    schedules = optim.schedules_from_config(config)

    def train_step(state: TrainState, batch):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.target_params, batch, state.step
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


def batch_shardings(mesh, image_rank: int = 4) -> dict:
    return {
        "image": sharding.batch_sharding(mesh, image_rank),
        "context": sharding.batch_sharding(mesh, 2),
        "targets": sharding.batch_sharding(mesh, 3),
    }


def jit_train_step(config, tx, mesh, state_shardings: TrainState):
    """``jax.jit`` of the step with the state donated and every input/output sharding fixed,
    so the step compiles exactly once per run."""
    return jax.jit(
        make_train_step(config, tx),
        in_shardings=(state_shardings, batch_shardings(mesh, 4 + (config.data.num_views > 1))),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )
