"""V-JEPA: masked prediction on clips with 3D tube masks (``objective="masked"``,
``method.mask.kind="tube"``, ``model.num_frames`` > 0).

The targets are the EMA target encoder's LayerNorm'd tokens of the whole clip, computed once;
for each mask generator g, the context encoder sees g's context tokens and the predictor (on
the tubelet grid) predicts g's target tokens; the energy is averaged over the generators, as
V-JEPA averages its per-mask losses. The information terms, if any, are likewise the mean over
the generators' context embeddings.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jepa import config as config_lib
from jepa import masking, objectives, sharding
from jepa.methods import base, ijepa


def predictor_grid(config) -> tuple[int, ...]:
    """The encoder's (time, h, w) tubelet grid."""
    return config_lib.video_grid(config)


TUBE_KEYS = tuple(f.name for f in dataclasses.fields(masking.TubeGenerator))
TUBE_PAIR_KEYS = ("spatial_scale", "temporal_scale", "aspect")


def tube_defaults() -> ml_collections.ConfigDict:
    """``method.mask.tube``: one entry per mask generator in every key, V-JEPA's generators;
    token counts 0 = the reference's expected counts on the grid (``with_default_counts``)."""
    gens = masking.VJEPA_GENERATORS
    return ml_collections.ConfigDict({k: tuple(getattr(g, k) for g in gens) for k in TUBE_KEYS})


def tube_spec(config) -> masking.TubeSpec:
    """``method.mask.tube`` as a validated ``TubeSpec`` on the tubelet grid, counts left at 0
    filled with their defaults."""
    t = config.method.mask.tube
    n = len(t.num_blocks)
    for key in t.keys():
        if len(t[key]) != n:
            raise ValueError(
                f"method.mask.tube.{key} has {len(t[key])} entries and "
                f"method.mask.tube.num_blocks {n}; valid: one entry per generator in every "
                "method.mask.tube key"
            )
    for key in TUBE_PAIR_KEYS:
        for i, pair in enumerate(t[key]):
            base.check_pair(pair, f"method.mask.tube.{key}[{i}]")
    gens = tuple(
        masking.TubeGenerator(**{k: tuple(t[k][i]) if k in TUBE_PAIR_KEYS else t[k][i] for k in t})
        for i in range(n)
    )
    spec = masking.TubeSpec(config_lib.video_grid(config), gens)
    spec.validate(counts=False)  # the defaults need sane scales
    spec = spec.with_default_counts()
    spec.validate()
    return spec


def tube_mask_keys(config) -> list[tuple[str, str]]:
    """The batch keys of each tube-mask generator's (context [batch, Kc_g], targets
    [batch, 1, Kt_g]) pair: one pair of keys per generator, as their token counts differ."""
    return [
        (f"context_{g}", f"targets_{g}") for g in range(len(config.method.mask.tube.num_blocks))
    ]


def init_params(config, rng) -> dict:
    """Encoder on clips; the predictor's params fit every generator's pair (they do not depend
    on the token counts), so the first generator's shapes initialize it."""
    m = config.model
    gen = tube_spec(config).generators[0]
    clips = jnp.zeros((1, m.num_frames, m.image_size, m.image_size, m.channels), jnp.float32)
    grid = predictor_grid(config)
    return ijepa.init_masked_params(
        config, rng, clips, grid, gen.context_tokens, 1, gen.target_tokens
    )


def make_loss_fn(config):
    """V-JEPA's loss on clips ``[batch, T, H, W, C]`` (module docstring)."""
    predict_pairs = ijepa.masked_prediction_fn(config, predictor_grid(config))
    lc = config.method.loss
    rules = sharding.rules_of(config)
    base_key = jax.random.PRNGKey(config.seed)
    keys = tube_mask_keys(config)

    def loss_fn(params, target_params, batch, step=0):
        key = jax.random.fold_in(base_key, step)
        pairs = [(batch[ctx_key], batch[tgt_key]) for ctx_key, tgt_key in keys]
        with nn.logical_axis_rules(rules):
            full, energies, contexts = predict_pairs(params, target_params, batch["image"], pairs)
        pred_energy = jnp.mean(jnp.stack(energies))
        aux = {"energy": pred_energy, "target_std": objectives.feature_std(full.mean(axis=1))}
        aux.update({f"energy_{g}": e for g, e in enumerate(energies)})
        # Generator g's SIGReg directions: key (step, 2 + g).
        terms = objectives.mean_terms(
            [
                objectives.regularizer_terms(c, lc, jax.random.fold_in(key, 2 + g))[1]
                for g, c in enumerate(contexts)
            ]
        )
        return pred_energy + objectives.weighted_sum(terms, lc), {**aux, **terms}

    return loss_fn


def batch_ndims(config) -> dict:
    """Clips, and one (context, targets) pair of keys per mask generator."""
    out = {"image": 5}
    for ctx_key, tgt_key in tube_mask_keys(config):
        out[ctx_key], out[tgt_key] = 2, 3
    return out


def step_inputs(config):
    """The step's tube masks for the global batch, one pair per generator, from (seed, step)."""
    spec, keys = tube_spec(config), tube_mask_keys(config)

    def draw(seed: int, step: int, batch: int) -> dict:
        out = {}
        tube = masking.tube_masks_for_step(seed, step, batch, spec)
        for (ctx_key, tgt_key), masks in zip(keys, tube, strict=True):
            out[ctx_key], out[tgt_key] = masks.context, masks.targets
        return out

    return draw


def validate(config) -> None:
    m = config.model
    if not m.num_frames:
        raise ValueError(
            'method.mask.kind="tube" masks the tubelet grid; model.num_frames=0: valid: '
            "num_frames > 0"
        )
    tube_spec(config)
