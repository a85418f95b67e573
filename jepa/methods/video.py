"""``objective="future"``: the video objective. Tokens of the ``method.clip.context_frames``
context frames (each encoded alone) predict the target encoder's LayerNorm'd tokens of the frame
``method.clip.horizon`` steps after the last of them, through a latent z when
``method.latent.kind`` is set (``jepa/latent.py``: winner-take-all codes or an amortized,
information-limited z). ``params`` = {"encoder", "predictor"} plus "latent" (the codes or the
inference network) and, with ``method.latent.reference``, "reference" (a z-free predictor)."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jepa import latent, objectives, sharding
from jepa.methods import base
from jepa.methods.base import Method, register
from jepa.models import build_encoder, build_predictor


def defaults() -> ml_collections.ConfigDict:
    # The predictor's latent variable z: ``jepa.latent.LatentSpec``'s fields, and ``reference``:
    # also train a z-free predictor on the stop-gradient embeddings of the same run, the
    # baseline the free energy is compared with (evaluate/energy.py).
    lat = ml_collections.ConfigDict(dataclasses.asdict(latent.LatentSpec()))
    lat.reference = False
    return ml_collections.ConfigDict(
        dict(
            predictor=base.predictor_defaults(),
            # Clips of a video dataset (records of ``frames`` [T, H, W, C]): context frames
            # t0 … t0+C−1, target frame t0+C−1+horizon.
            clip=ml_collections.ConfigDict(dict(context_frames=2, horizon=3)),
            latent=lat,
            # target_grid G >= 1: the energy compares G × G region means of the tokens, 0: every
            # token.
            loss=base.loss_defaults(target_encoder="ema", regularize="pooled", target_grid=0),
        )
    )


def predictor_grid(config) -> tuple[int, int, int]:
    """(time, h, w): the context frames through the target frame."""
    c = config.method.clip
    g = config.model.image_size // config.model.patch_size
    return c.context_frames + c.horizon, g, g


def init_params(config, rng) -> dict:
    m = config.model
    encoder, predictor = build_encoder(config), build_predictor(config, predictor_grid(config))
    k_enc, k_pred = jax.random.split(rng)
    images = jnp.zeros((1, m.image_size, m.image_size, m.channels), jnp.float32)
    _, g, _ = predictor_grid(config)
    n_ctx = config.method.clip.context_frames * g * g
    context = jnp.zeros((1, n_ctx, m.width), jnp.float32)
    ctx_idx = jnp.zeros((1, n_ctx), jnp.int32)
    tgt_idx = jnp.zeros((1, 1, g * g), jnp.int32)
    k_pred, k_lat, k_ref = jax.random.split(k_pred, 3)
    params = {
        "encoder": encoder.init(k_enc, images)["params"],
        "predictor": predictor.init(k_pred, context, ctx_idx, tgt_idx)["params"],
    }
    spec = latent.LatentSpec.of(config.method.latent)
    if spec.kind != "none":
        model = latent.LatentJEPA(spec, None, None, None, None, None, config.method.predictor.width)
        # the inference network reads the flattened tokens of s_x and of s_y as the energy
        # compares them (``make_loss_fn``): target_grid² region means when that is set
        n_tgt = config.method.loss.target_grid**2 or g * g
        params["latent"] = model.init_latent(k_lat, n_ctx * m.width, n_tgt * m.width)
    if config.method.latent.reference:
        params["reference"] = predictor.init(k_ref, context, ctx_idx, tgt_idx)["params"]
    return params


def make_loss_fn(config):
    """The loss; ``make_loss_and_model(config)[0]``."""
    return make_loss_and_model(config)[0]


def make_loss_and_model(config):
    """(loss_fn, latent_model_for(target_params)): the second builds the ``LatentJEPA`` whose
    energy / free_energy / predict / sample_predictions evaluators call, with params
    ``{"model": params, "latent": params.get("latent", {})}``."""
    encoder = build_encoder(config)
    predictor = build_predictor(config, predictor_grid(config))
    lc = config.method.loss
    energy = objectives.energy_fn(lc.energy)
    rules = sharding.rules_of(config)
    base_key = jax.random.PRNGKey(config.seed)
    context_frames = config.method.clip.context_frames
    steps_ahead, g, _ = predictor_grid(config)
    n = g * g
    # Time-major raster indices into the predictor's (time, h, w) grid: the context frames are
    # times 0 … C−1, the target is time C−1+horizon (the grid's last).
    ctx_idx = jnp.arange(context_frames * n, dtype=jnp.int32)[None]
    tgt_idx = ((steps_ahead - 1) * n + jnp.arange(n, dtype=jnp.int32))[None, None]
    spec = latent.LatentSpec.of(config.method.latent)
    target_grid = lc.target_grid

    def to_target_space(tokens):
        """[b, n, width] → the tokens the energy compares (``method.loss.target_grid``)."""
        return objectives.region_means(tokens, g, target_grid) if target_grid else tokens

    def encode_frames(enc_params, frames):
        """[b, f, H, W, ch] → [b, f·n, width], each frame encoded on its own."""
        b, f = frames.shape[:2]
        tokens, _ = encoder.apply({"params": enc_params}, frames.reshape(b * f, *frames.shape[2:]))
        return tokens.astype(jnp.float32).reshape(b, f * n, -1)

    def predict(pred_params, sx, z_embedding):
        b = sx.shape[0]
        ctx = jnp.broadcast_to(ctx_idx, (b, ctx_idx.shape[1]))
        tgt = jnp.broadcast_to(tgt_idx, (b, 1, n))
        z = None if z_embedding is None else z_embedding[:, None]
        out = predictor.apply({"params": pred_params}, sx, ctx, tgt, z)
        return to_target_space(out[:, 0].astype(jnp.float32))  # [b, n or G², width]

    def latent_model_for(target_params):
        def encode_y(params, frame):
            online = lc.target_encoder == "online"
            tokens = encode_frames(params["encoder"] if online else target_params, frame[:, None])
            sy = objectives.normalize_targets(to_target_space(tokens))
            return sy if online else jax.lax.stop_gradient(sy)

        return latent.LatentJEPA(
            spec=spec,
            encode_x=lambda params, x: encode_frames(params["encoder"], x),
            encode_y=encode_y,
            predict_fn=lambda params, sx, ze: predict(params["predictor"], sx, ze),
            energy_fn=lambda pred, sy: energy(pred, sy).mean(-1),  # per sample
            # q(z | s_x, s_y) sees every token: where a digit went is in *which* tokens
            # changed, which a mean over tokens would blur.
            pool=lambda s: s.reshape(s.shape[0], -1),
            width=config.method.predictor.width,
        )

    def loss_fn(params, target_params, batch, step=0):
        frames = batch["image"]  # [b, C + 1, H, W, ch]: context frames, then the target frame
        key = jax.random.fold_in(base_key, step)
        with nn.logical_axis_rules(rules):
            model = latent_model_for(target_params)
            sx = model.encode_x(params, frames[:, :context_frames])
            sy = model.encode_y(params, frames[:, context_frames])
            full = {"model": params, "latent": params.get("latent", {})}
            loss, aux = model.loss_from_embeddings(full, sx, sy, key)
            if "reference" in params:
                # A z-free predictor on the same, frozen embeddings: the baseline min_z E is
                # compared with (its gradients reach only its own parameters).
                ref = predict(params["reference"], jax.lax.stop_gradient(sx), None)
                aux["reference_energy"] = energy(ref, jax.lax.stop_gradient(sy)).mean()
                loss = loss + aux["reference_energy"]
        aux["target_std"] = objectives.feature_std(sy.mean(1))
        weighted, terms = objectives.regularizer_terms(sx, lc, jax.random.fold_in(key, 1))
        return loss + weighted, {**aux, **terms}

    return loss_fn, latent_model_for


def validate(config) -> None:
    c = config.method.clip
    if c.context_frames < 1:
        raise ValueError(f"method.clip.context_frames={c.context_frames} must be >= 1")
    if c.horizon < 1:
        raise ValueError(f"method.clip.horizon={c.horizon} must be >= 1")
    if config.method.predictor.width % 8:
        raise ValueError(
            f"method.predictor.width={config.method.predictor.width} must be divisible by 8 "
            "(3D sin-cos embedding of the (time, h, w) grid)"
        )
    target_grid = config.method.loss.target_grid
    grid = config.model.image_size // config.model.patch_size
    if target_grid < 0 or (target_grid and grid % target_grid):
        raise ValueError(
            f"method.loss.target_grid={target_grid} must be 0 (every token) or divide the "
            f"{grid} × {grid} token grid"
        )


METHOD = register(
    Method(
        name="future",
        init_params=init_params,
        make_loss_fn=make_loss_fn,
        # [batch, context frames + 1, h, w, c]: the clip
        batch_ndims=lambda config: {"image": 5},
        defaults=defaults,
        validate=validate,
        # Clips of a video dataset: the context frames, then the target frame.
        pipeline=lambda config: {
            "clip_context_frames": config.method.clip.context_frames,
            "clip_horizon": config.method.clip.horizon,
        },
        predictor_grid=predictor_grid,
        eval_weights=base.target_or_context,
    )
)
