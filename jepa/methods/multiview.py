"""``objective="multiview"``: the LeJEPA-style loss on views of an image. Every view v, global
or local, gives s_v = Proj(mean of Enc(view) tokens); each predicts the mean of the global
views' s (no stop-gradient, no EMA: LeJEPA's choice), and the information terms (SIGReg,
VICReg) on each view's batch of s keep the embedding spread out, so that agreeing is not
trivial. ``params`` = {"encoder", "projector"}; the EMA copy of the encoder is kept as a weight
average the loss does not read."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jepa import objectives, sharding
from jepa.methods import base
from jepa.methods.base import Method, register
from jepa.models import build_encoder, build_projector

VIEW_KEYS = ("num_views", "local_views", "local_size", "local_crop_scale")


def defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            # Global crops at model.image_size; local ones (a part of the image, which must
            # predict the embedding of the whole) at local_size px, local_crop_scale of the area.
            num_views=1,
            local_views=0,
            local_size=0,
            local_crop_scale=(0.05, 0.3),
            # The MLP to the space where views are compared and regularized.
            projector=ml_collections.ConfigDict(dict(hidden=512, depth=2, out=64)),
            loss=base.loss_defaults(view_weight=1.0),  # the view-prediction energy's weight
        )
    )


def init_params(config, rng) -> dict:
    m = config.model
    k_enc, k_proj = jax.random.split(rng)
    images = jnp.zeros((1, m.image_size, m.image_size, m.channels), jnp.float32)
    pooled = jnp.zeros((1, m.width), jnp.float32)
    return {
        "encoder": build_encoder(config).init(k_enc, images)["params"],
        "projector": build_projector(config).init(k_proj, pooled)["params"],
    }


def make_loss_fn(config):
    encoder, projector = build_encoder(config), build_projector(config)
    lc = config.method.loss
    energy = objectives.energy_fn(lc.energy)
    rules = sharding.rules_of(config)
    base_key = jax.random.PRNGKey(config.seed)

    def embed(params, views):
        """[batch, n_views, h, w, c] → [n_views, batch, out]: batch-major reshapes, so the
        batch axis keeps its sharding."""
        b, v = views.shape[:2]
        flat = views.reshape(b * v, *views.shape[2:])
        tokens, _ = encoder.apply({"params": params["encoder"]}, flat)
        z = projector.apply({"params": params["projector"]}, tokens.astype(jnp.float32).mean(1))
        return jnp.swapaxes(z.astype(jnp.float32).reshape(b, v, -1), 0, 1)

    def loss_fn(params, target_params, batch, step=0):
        del target_params  # the multiview loss has no target encoder
        global_views = batch["image"]
        if global_views.ndim == 4:
            global_views = global_views[:, None]
        with nn.logical_axis_rules(rules):
            z = embed(params, global_views)
            if "local" in batch:
                z = jnp.concatenate([z, embed(params, batch["local"])])
        center = z[: global_views.shape[1]].mean(0)
        view_energy = energy(z, center[None]).mean()
        key = jax.random.fold_in(base_key, step)
        terms = objectives.mean_terms(
            [
                objectives.information_terms(z[v], lc, jax.random.fold_in(key, v))
                for v in range(len(z))
            ]
        )
        loss = lc.view_weight * view_energy + objectives.weighted_sum(terms, lc)
        aux = {"energy": view_energy, "embedding_std": objectives.feature_std(center)}
        return loss, {**aux, **terms}

    return loss_fn


def batch_ndims(config) -> dict:
    """The global views ([batch, views, h, w, c]; [batch, h, w, c] for one) and the local ones."""
    v = config.method
    out = {"image": 4 + (v.num_views > 1)}
    if v.local_views:
        out["local"] = 5
    return out


def validate(config) -> None:
    v, m = config.method, config.model
    if v.num_views < 1 or v.local_views < 0 or v.num_views + v.local_views < 2:
        raise ValueError(
            f"method.num_views={v.num_views}, method.local_views={v.local_views}: the "
            "multiview objective needs at least one global view and two views in all"
        )
    if v.local_views and (v.local_size <= 0 or v.local_size % m.patch_size):
        raise ValueError(
            f"method.local_size={v.local_size} must be a positive multiple of "
            f"model.patch_size={m.patch_size}"
        )
    base.check_pair(v.local_crop_scale, "method.local_crop_scale")
    if not v.loss.view_weight:
        raise ValueError("method.loss.view_weight=0: nothing to predict; valid: > 0")
    p = v.projector
    if p.hidden <= 0 or p.out <= 0 or p.depth < 0:
        raise ValueError(f"method.projector={dict(p)}: sizes must be positive")


METHOD = register(
    Method(
        name="multiview",
        init_params=init_params,
        make_loss_fn=make_loss_fn,
        batch_ndims=batch_ndims,
        defaults=defaults,
        validate=validate,
        # The views the input pipeline crops.
        pipeline=lambda config: {k: config.method[k] for k in VIEW_KEYS},
        # No EMA encoder enters the loss: the online encoder is the representation trained.
        eval_weights=lambda config: "context",
    )
)
