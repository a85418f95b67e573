"""I-JEPA: masked prediction on images with multi-block masks (``objective="masked"``,
``method.mask.kind="multiblock"``).

One step, as in ``src/train.py`` of facebookresearch/ijepa:
  1. targets: the EMA target encoder on the full image, LayerNorm (no affine) per token,
     gathered at each target block's indices, under ``stop_gradient``;
  2. context: the online encoder on the context tokens only, then the predictor per target block;
  3. energy (smooth-L1 by default) averaged over blocks, tokens and features, plus the optional
     information regularizers on the context embeddings s_x (VICReg variance/covariance,
     SIGReg), which keep s_x informative where the EMA target alone lets it partially collapse;
  4. AdamW update, then the EMA of the updated encoder into the target encoder (``jepa/step.py``).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jepa import config as config_lib
from jepa import masking, objectives, sharding
from jepa.models import build_encoder, build_predictor
from jepa.models.vit import gather_tokens


def predictor_grid(config) -> tuple[int, ...]:
    """The image's (h, w) patch grid."""
    return config_lib.grid_of(config)


MASK_KEYS = tuple(f.name for f in dataclasses.fields(masking.MultiBlockSpec) if f.name != "grid")


def mask_defaults() -> ml_collections.ConfigDict:
    """``method.mask`` without its tube keys: I-JEPA's multi-block masks (4 target blocks of
    15-20 % of the grid, one context block of 85-100 % without them), token counts fixed per
    config so that the step compiles once (``masking.MultiBlockSpec``)."""
    ref = masking.REFERENCE_CONTEXT_TOKENS, masking.REFERENCE_TARGET_TOKENS
    spec = masking.MultiBlockSpec((0, 0), *ref)
    return ml_collections.ConfigDict({k: getattr(spec, k) for k in MASK_KEYS})


def mask_spec(config) -> masking.MultiBlockSpec:
    m = config.method.mask
    values = {k: tuple(m[k]) if isinstance(m[k], (tuple, list)) else m[k] for k in MASK_KEYS}
    return masking.MultiBlockSpec(grid=config_lib.grid_of(config), **values)


def init_masked_params(config, rng, images, grid, n_ctx: int, n_blocks: int, n_tgt: int):
    """Boxed params: the encoder on ``images``, the predictor on ``grid`` for (n_ctx context,
    n_blocks × n_tgt target) tokens."""
    m = config.model
    k_enc, k_pred = jax.random.split(rng)
    ctx_idx = jnp.zeros((1, n_ctx), jnp.int32)
    tgt_idx = jnp.zeros((1, n_blocks, n_tgt), jnp.int32)
    context = jnp.zeros((1, n_ctx, m.width), jnp.float32)
    predictor = build_predictor(config, grid)
    return {
        "encoder": build_encoder(config).init(k_enc, images)["params"],
        "predictor": predictor.init(k_pred, context, ctx_idx, tgt_idx)["params"],
    }


def init_params(config, rng) -> dict:
    m, mk = config.model, config.method.mask
    images = jnp.zeros((1, m.image_size, m.image_size, m.channels), jnp.float32)
    grid = predictor_grid(config)
    return init_masked_params(
        config, rng, images, grid, mk.context_tokens, mk.num_targets, mk.target_tokens
    )


def masked_prediction_fn(config, grid):
    """``(params, target_params, inputs, pairs) → (s_y, energies, contexts)``: s_y [batch,
    tokens, width] from the EMA target encoder under stop-gradient (I-JEPA), or with
    ``method.loss.target_encoder="online"`` from the online encoder, gradients on both sides (no
    EMA: the information terms must then prevent collapse); per (context [batch, Kc], targets
    [batch, blocks, Kt]) pair of indices, the energy of predicting the LayerNorm'd s_y at the
    targets from the context tokens, and those context embeddings (float32)."""
    encoder = build_encoder(config)
    predictor = build_predictor(config, grid)
    energy = objectives.energy_fn(config.method.loss.energy)
    online_targets = config.method.loss.target_encoder == "online"

    def predict_pairs(params, target_params, inputs, pairs):
        if online_targets:
            full = encoder.apply({"params": params["encoder"]}, inputs)[0].astype(jnp.float32)
        else:
            full, _ = encoder.apply({"params": target_params}, inputs)
            full = jax.lax.stop_gradient(full.astype(jnp.float32))
        h = objectives.normalize_targets(full)
        energies, contexts = [], []
        for ctx_idx, tgt_idx in pairs:
            b, n_blocks, n_tgt = tgt_idx.shape
            targets = gather_tokens(h, tgt_idx.reshape(b, n_blocks * n_tgt))
            targets = targets.reshape(b, n_blocks, n_tgt, -1)
            context, _ = encoder.apply({"params": params["encoder"]}, inputs, ctx_idx)
            preds = predictor.apply({"params": params["predictor"]}, context, ctx_idx, tgt_idx)
            energies.append(energy(preds.astype(jnp.float32), targets).mean())
            contexts.append(context.astype(jnp.float32))
        return full, energies, contexts

    return predict_pairs


def make_loss_fn(config):
    """The I-JEPA loss (module docstring) with the optional information terms."""
    predict_pairs = masked_prediction_fn(config, predictor_grid(config))
    lc = config.method.loss
    rules = sharding.rules_of(config)
    base_key = jax.random.PRNGKey(config.seed)

    def loss_fn(params, target_params, batch, step=0):
        pairs = [(batch["context"], batch["targets"])]
        # Logical-axis rules are read while tracing; entering them here keeps the function pure.
        with nn.logical_axis_rules(rules):
            full, (pred_energy,), (context,) = predict_pairs(
                params, target_params, batch["image"], pairs
            )
        aux = {"energy": pred_energy, "target_std": objectives.feature_std(full.mean(axis=1))}
        # SIGReg directions: re-drawn every step, the same on every device (one key per step).
        key = jax.random.fold_in(base_key, step)
        weighted, terms = objectives.regularizer_terms(context, lc, key)
        return pred_energy + weighted, {**aux, **terms}

    return loss_fn


def batch_ndims(config) -> dict:
    """Images and the block masks."""
    return {"image": 4, "context": 2, "targets": 3}


def step_inputs(config):
    """The step's multi-block masks for the global batch, from (seed, step)."""
    spec = mask_spec(config)

    def draw(seed: int, step: int, batch: int) -> dict:
        masks = masking.masks_for_step(seed, step, batch, spec)
        return {"context": masks.context, "targets": masks.targets}

    return draw


def validate(config) -> None:
    if config.model.num_frames:
        raise ValueError(
            f'objective="masked" on clips (model.num_frames={config.model.num_frames}) needs '
            f"V-JEPA's 3D masks; method.mask.kind={config.method.mask.kind!r}: valid: "
            'method.mask.kind="tube", or model.num_frames=0 for images'
        )
    mask_spec(config).validate()
