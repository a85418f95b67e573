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
    """What one objective owns; every callable takes the run's config first.

    Required:
      name: the ``config.objective`` that selects it.
      init_params: (config, rng) → freshly initialized params, still in flax's
        logical-partitioning boxes; ``params["encoder"]`` is what the target encoder copies.
      make_loss_fn: config → ``loss_fn(params, target_params, batch, step) → (loss, aux)``,
        pure (for ``jax.grad``, accumulation and tests).
      batch_ndims: config → {batch key: ndim}; every key sharded over the batch axis.
    Optional:
      validate: raises ``ValueError`` naming the key for a setting this method cannot run.
      step_inputs: config → ``fn(seed, step, batch_size) → {key: [batch, ...] array}``, what the
        host adds to each global batch from (seed, step) alone (masks), so that they do not
        depend on the number of hosts or on where a run resumed.
      pipeline: config → entries of the input pipeline's config (``data_config``): clip or
        sequence lengths the method reads from a video dataset.
      predictor_grid: config → the token grid the predictor's positions index.
      optimizer_tail: config → an optax transform applied after AdamW (which parameters move
        at a step).
      ema_scale: (config, step) → the factor on the target encoder's EMA step (0: it stays).
      load_at_start: (config, state, shardings, load_params) → the state a fresh run starts
        from, given ``load_params(workdir) → (config, step, params, target_params)``.
      eval_weights: config → the encoder its probes read when ``eval.weights`` is "".
      reads: optional config keys (dotted) that only some methods read; set on a method that
        does not list them, validation stops the run rather than ignoring them.
      model_parts: the ``config.model`` groups besides the encoder whose settings shape its
        params (a checkpoint's other groups may differ).
      check_trainer: checks that hold only when ``jepa-train`` feeds the batches.
    """

    name: str
    init_params: Callable
    make_loss_fn: Callable
    batch_ndims: Callable
    validate: Callable = _no_check
    step_inputs: Callable | None = None
    pipeline: Callable = _no_pipeline_keys
    predictor_grid: Callable | None = None
    optimizer_tail: Callable | None = None
    ema_scale: Callable | None = None
    load_at_start: Callable | None = None
    eval_weights: Callable = target_or_context
    reads: tuple[str, ...] = ()
    model_parts: tuple[str, ...] = ("predictor",)
    check_trainer: Callable = _no_check


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
