"""``objective="masked"``: masked prediction in latent space, I-JEPA's multi-block masks on
images (``methods/ijepa.py``) or V-JEPA's tube masks on clips (``methods/vjepa.py``), as
``mask.kind`` says. Both share the recipe (EMA target encoder, predictor, energy, information
terms), the params layout and every ``loss.*`` key, so they stay one objective."""

from __future__ import annotations

from jepa.methods import ijepa, vjepa
from jepa.methods.base import Method, register


def _by_mask_kind(name: str):
    """The function ``name`` of the module that implements ``config.mask.kind``."""

    def call(config, *args):
        module = vjepa if config.mask.kind == "tube" else ijepa
        return getattr(module, name)(config, *args)

    return call


METHOD = register(
    Method(
        name="masked",
        init_params=_by_mask_kind("init_params"),
        make_loss_fn=_by_mask_kind("make_loss_fn"),
        batch_ndims=_by_mask_kind("batch_ndims"),
        validate=_by_mask_kind("validate"),
        step_inputs=_by_mask_kind("step_inputs"),
        # Windows of a video dataset: the clips of a video encoder (0: images).
        pipeline=lambda config: {"sequence_frames": config.model.num_frames},
        predictor_grid=_by_mask_kind("predictor_grid"),
        reads=("mask.kind",),
    )
)
