"""A minimal JEPA defined outside the package, to prove that a new method needs no change to
the trainer, the input pipeline or the evaluations: it registers itself as ``objective="toy"``
when imported.

Two augmented views of an image (asked of the input pipeline): the online encoder's mean token
of view 1, through an MLP predictor (``method.mlp``, its own config section), predicts the EMA
target encoder's LayerNorm'd mean token of view 2 (an L2 energy), and VICReg's variance and
covariance terms on the online embeddings keep them spread out. ``params`` = {"encoder",
"predictor"}.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jepa import methods, objectives, sharding
from jepa.methods.base import Method
from jepa.models import build_encoder
from jepa.models.projector import Projector


def build_mlp(config) -> Projector:
    """The predictor: an MLP from the pooled embedding back to the encoder's width."""
    p = config.method.mlp
    return Projector(hidden=p.hidden, depth=p.depth, out=config.model.width)


def init_params(config, rng):
    m = config.model
    k_enc, k_pred = jax.random.split(rng)
    images = jnp.zeros((1, m.image_size, m.image_size, m.channels), jnp.float32)
    pooled = jnp.zeros((1, m.width), jnp.float32)
    return {
        "encoder": build_encoder(config).init(k_enc, images)["params"],
        "predictor": build_mlp(config).init(k_pred, pooled)["params"],
    }


def make_loss_fn(config):
    encoder, mlp = build_encoder(config), build_mlp(config)
    rules = sharding.rules_of(config)

    def loss_fn(params, target_params, batch, step=0):
        del step  # nothing random
        views = batch["image"]  # [batch, 2, h, w, c]
        with nn.logical_axis_rules(rules):
            sx = encoder.apply({"params": params["encoder"]}, views[:, 0])[0].mean(1)
            sy = encoder.apply({"params": target_params}, views[:, 1])[0].mean(1)
            pred = mlp.apply({"params": params["predictor"]}, sx.astype(jnp.float32))
        sx = sx.astype(jnp.float32)
        sy = jax.lax.stop_gradient(objectives.normalize_targets(sy.astype(jnp.float32)))
        energy = objectives.l2_energy(pred.astype(jnp.float32), sy).mean()
        var, cov = objectives.vicreg_variance(sx), objectives.vicreg_covariance(sx)
        aux = {"energy": energy, "vicreg_var": var, "vicreg_cov": cov}
        return energy + var + 0.04 * cov, aux

    return loss_fn


def validate(config):
    if config.method.mlp.hidden < 1 or config.method.mlp.depth < 0:
        raise ValueError(f"method.mlp={dict(config.method.mlp)}: valid: hidden >= 1, depth >= 0")


METHOD = methods.register(
    Method(
        name="toy",
        init_params=init_params,
        make_loss_fn=make_loss_fn,
        batch_ndims=lambda config: {"image": 5},  # [batch, 2 views, h, w, c]
        defaults=lambda: ml_collections.ConfigDict(dict(mlp=dict(hidden=512, depth=2))),
        validate=validate,
        pipeline=lambda config: {"num_views": 2},
    )
)
