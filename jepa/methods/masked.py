"""``objective="masked"``: masked prediction in latent space, I-JEPA's multi-block masks on
images (``methods/ijepa.py``) or V-JEPA's tube masks on clips (``methods/vjepa.py``), as
``method.mask.kind`` says. Both share the recipe (EMA target encoder, predictor, energy,
information terms), the params layout and every ``method.loss`` key, so they stay one
objective."""

from __future__ import annotations

import ml_collections

from jepa.methods import base, ijepa, vjepa
from jepa.methods.base import Method, register

MASK_KINDS = ("multiblock", "tube")


def defaults() -> ml_collections.ConfigDict:
    mask = ijepa.mask_defaults()
    # "multiblock": I-JEPA's 2D masks (the keys above). "tube": V-JEPA's 3D multi-block masks
    # on the tubelet grid (model.num_frames > 0), one (context, target) pair per generator
    # (masking.sample_tube_masks), from ``tube``.
    mask.kind = "multiblock"
    mask.tube = vjepa.tube_defaults()
    return ml_collections.ConfigDict(
        dict(
            predictor=base.predictor_defaults(),
            mask=mask,
            loss=base.loss_defaults(target_encoder="ema", regularize="pooled"),
        )
    )


def validate(config) -> None:
    mask = config.method.mask
    if mask.kind not in MASK_KINDS:
        raise ValueError(f"method.mask.kind={mask.kind!r}; valid: {MASK_KINDS}")
    for key in ("target_scale", "target_aspect", "context_scale", "context_aspect"):
        base.check_pair(mask[key], f"method.mask.{key}")
    _by_mask_kind("validate")(config)


def _by_mask_kind(name: str):
    """The function ``name`` of the module that implements ``config.method.mask.kind``."""

    def call(config, *args):
        module = vjepa if config.method.mask.kind == "tube" else ijepa
        return getattr(module, name)(config, *args)

    return call


METHOD = register(
    Method(
        name="masked",
        init_params=_by_mask_kind("init_params"),
        make_loss_fn=_by_mask_kind("make_loss_fn"),
        batch_ndims=_by_mask_kind("batch_ndims"),
        defaults=defaults,
        validate=validate,
        step_inputs=_by_mask_kind("step_inputs"),
        # Windows of a video dataset: the clips of a video encoder (0: images).
        pipeline=lambda config: {"sequence_frames": config.model.num_frames},
        predictor_grid=_by_mask_kind("predictor_grid"),
        eval_weights=base.target_or_context,
    )
)
