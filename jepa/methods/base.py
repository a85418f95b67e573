"""A training method as one record of functions, and the registry ``config.objective`` names.

The trainer (``jepa/train.py``, ``jepa/step.py``), the state, the optimizer, validation and
preflight know no method by name: they look the config's method up here and call what it
owns. A method added outside the package (a test, an experiment file) calls ``register`` when
its module is imported, and is then trained and probed like the built-in ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections

from jepa import latent, objectives

# ``method.loss``'s keys with a fixed set of values, where a method's section has them.
LOSS_CHOICES = {
    "energy": tuple(objectives.ENERGY_FNS),
    "target_encoder": ("ema", "online"),
    "regularize": ("pooled", "tokens"),
}


def target_or_context(config) -> str:
    """The encoder a method that trains against an EMA target is probed on: "target", the EMA
    copy I-JEPA and V-JEPA evaluate, unless ``method.loss.target_encoder="online"`` puts no EMA
    encoder in the loss (the EMA copy is then only a lagging average nobody was trained
    against)."""
    return "context" if config.method.loss.target_encoder == "online" else "target"


def check_pair(value, key: str) -> None:
    """``value`` is a (low, high) pair of numbers (a single number from the command line,
    ``--config.KEY=0.2``, arrives as a 1-tuple)."""
    if len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
        raise ValueError(f"{key}={tuple(value)!r}; valid: a pair of numbers (low, high)")


def predictor_defaults() -> ml_collections.ConfigDict:
    """``method.predictor`` (``jepa.models.build_predictor``), I-JEPA's ViT-S size."""
    return ml_collections.ConfigDict(dict(width=384, depth=6, num_heads=6))


def loss_defaults(**extra) -> ml_collections.ConfigDict:
    """``method.loss``: the energy between prediction and target and the information
    regularizers on the context embeddings (0 disables a term), plus a method's ``extra`` keys
    (``target_encoder``, ``regularize``, …: docs/methods.md, "The loss")."""
    return ml_collections.ConfigDict(
        dict(
            energy="smooth_l1",
            vicreg_var=0.0,  # VICReg variance hinge, with target std vicreg_gamma
            vicreg_gamma=1.0,
            vicreg_cov=0.0,
            sigreg=0.0,  # LeJEPA's
            sigreg_slices=256,
            **extra,
        )
    )


def validate_shared(config) -> None:
    """The sections of ``config.method`` built by the helpers above (and ``latent``), where the
    method has them; the rest of its section is its own ``validate``'s."""
    section = config.method
    for key, valid in LOSS_CHOICES.items():
        if key in section.get("loss", {}) and section.loss[key] not in valid:
            raise ValueError(f"method.loss.{key}={section.loss[key]!r}; valid: {valid}")
    p = section.get("predictor")
    if p is not None and (p.width % p.num_heads or p.width % 4):
        raise ValueError(
            f"method.predictor.width={p.width} must be divisible by 4 and by "
            f"method.predictor.num_heads={p.num_heads}"
        )
    if "latent" in section:
        latent.LatentSpec.of(section.latent).validate()


@dataclasses.dataclass(frozen=True)
class Method:
    """What one objective owns; every callable takes the run's config first."""

    name: str  # the config.objective that selects it
    # (config, rng) → fresh params in flax's partitioning boxes; "encoder" is what the EMA copies
    init_params: Callable
    # config → loss_fn(params, target_params, batch, step) → (loss, aux), pure
    make_loss_fn: Callable
    batch_ndims: Callable  # config → {batch key: ndim}, each sharded over the batch axis
    # () → the defaults of ``config.method``, the section this method owns (every key it reads
    # besides the shared core); ``validation`` checks a config's section key by key against them
    defaults: Callable = ml_collections.ConfigDict
    validate: Callable = lambda config: None  # raises ValueError naming the full key
    # config → fn(seed, step, batch_size) → {key: [batch, ...]}: what the host adds to a global
    # batch from (seed, step) alone (masks), the same whatever the hosts or the resume point
    step_inputs: Callable | None = None
    pipeline: Callable = lambda config: {}  # config → entries of the input pipeline's config
    predictor_grid: Callable | None = None  # config → the token grid predictor positions index
    optimizer_tail: Callable | None = None  # config → optax transform after AdamW
    ema_scale: Callable | None = None  # (config, step) → factor on the target encoder's EMA step
    # The encoder probes read when eval.weights="": "target" (the EMA copy) or "context"
    eval_weights: Callable = lambda config: "target"
    # True: the encoder is config.model's ViT (its keys are checked); False: the method
    # builds its own from its section, and config.model gives only image_size and channels
    vit: bool = True
    protocol: str = "linear"  # the jepa-eval protocol that reads what the method trains


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` under ``method.name`` (replacing one of that name: re-imported modules)."""
    REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    """The method ``config.objective=name`` selects."""
    if name not in REGISTRY:
        raise ValueError(f"objective={name!r}; valid: {tuple(REGISTRY)}")
    return REGISTRY[name]
