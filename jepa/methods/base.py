"""A training method as one record of functions, and the registry ``config.objective`` names.

The trainer (``jepa/train.py``, ``jepa/step.py``), the state, the optimizer, validation and
preflight know no method by name: they look the config's method up here and call what it
owns. A method added outside the package (a test, an experiment file) calls ``register`` when
its module is imported, and is then trained and probed like the built-in ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


def _no_check(config) -> None:
    del config


def _no_pipeline_keys(config) -> dict:
    del config
    return {}


def target_or_context(config) -> str:
    """The encoder a method that trains against an EMA target is probed on: "target", the EMA
    copy I-JEPA and V-JEPA evaluate, unless ``loss.target_encoder="online"`` puts no EMA encoder
    in the loss (the EMA copy is then only a lagging average nobody was trained against)."""
    return "context" if config.loss.target_encoder == "online" else "target"


@dataclasses.dataclass(frozen=True)
class Method:
    """What one objective owns; every callable takes the run's config first."""

    name: str  # the config.objective that selects it
    # (config, rng) → fresh params in flax's partitioning boxes; "encoder" is what the EMA copies
    init_params: Callable
    # config → loss_fn(params, target_params, batch, step) → (loss, aux), pure
    make_loss_fn: Callable
    batch_ndims: Callable  # config → {batch key: ndim}, each sharded over the batch axis
    validate: Callable = _no_check  # raises ValueError naming the key
    # config → fn(seed, step, batch_size) → {key: [batch, ...]}: what the host adds to a global
    # batch from (seed, step) alone (masks), the same whatever the hosts or the resume point
    step_inputs: Callable | None = None
    pipeline: Callable = _no_pipeline_keys  # config → entries of the input pipeline's config
    predictor_grid: Callable | None = None  # config → the token grid predictor positions index
    optimizer_tail: Callable | None = None  # config → optax transform after AdamW
    ema_scale: Callable | None = None  # (config, step) → factor on the target encoder's EMA step
    # (config, state, shardings, load_params) → the state a fresh run starts from; load_params
    # is jepa.hub.load_model_params
    load_at_start: Callable | None = None
    eval_weights: Callable = target_or_context  # the encoder probes read when eval.weights=""
    # Keys only some methods read (validation.METHOD_KEYS): set on another method, an error
    reads: tuple[str, ...] = ()
    # The config.model groups besides the encoder that shape its params (a checkpoint's other
    # groups may differ)
    model_parts: tuple[str, ...] = ("predictor",)


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
