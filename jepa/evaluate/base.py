"""Evaluators: each protocol of ``jepa-eval --protocol NAME`` and of ``config.evals`` during
training is a class (or factory) registered here under its name (``register``, also from
outside the package; docs/evaluation.md has an example).

An evaluator is built once from the run's config (overrides applied), the workdir (None during
training: nothing cached, no checkpoint read) and keyword options of the command line
(``baselines``, ``level``, ``overrides``, ``progress``: it takes what it uses and ``**_``),
and checks there what it can, before anything compiles. ``run(encoder)`` reads a frozen
``hub.PretrainedEncoder`` (``params``, ``step``, ``weights``, ``config``, callable on images)
and returns a flat JSON-able dict whose ``top1`` (percent), if any, is the headline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import ml_collections

from jepa import config as config_lib
from jepa import hub, methods


class Evaluator(Protocol):
    def __init__(self, config, workdir: str | None, **options) -> None: ...

    def run(self, encoder) -> dict: ...


EVALUATORS: dict[str, Callable[..., Evaluator]] = {}


def register(name: str, factory: Callable[..., Evaluator] | None = None):
    """``register(name, factory)``, or ``@register(name)`` on a class."""

    def add(f):
        EVALUATORS[name] = f
        return f

    return add if factory is None else add(factory)


def lookup(name: str, key: str = "--protocol") -> Callable[..., Evaluator]:
    """The evaluator registered as ``name``; a ValueError naming ``key`` and the valid names."""
    if name not in EVALUATORS:
        raise ValueError(f"{key}={name!r}; valid: {tuple(EVALUATORS)}")
    return EVALUATORS[name]


def load_run(workdir: str, step: int | None, overrides: dict):
    """(config with ``overrides`` applied, the encoder it names in ``eval.weights``) of a run's
    checkpoint ``step`` (None: the newest that reads)."""
    enc = hub.load_encoder(workdir, step)
    config = ml_collections.ConfigDict(enc.config.to_dict())
    config_lib.apply_overrides(config, overrides)
    config = config_lib.absolute_paths(config)  # a relative override: from here
    config.eval.weights = methods.eval_weights(config)  # "" → the method's, as load_encoder
    if config.eval.weights != enc.weights:
        enc = hub.load_encoder(workdir, enc.step, weights=config.eval.weights)
    return config, enc


def metric_values(name: str, result: dict) -> dict[str, float]:
    """The numbers of a result as ``NAME/KEY`` metrics (strings, lists and the step left out)."""
    return {
        f"{name}/{k}": float(v)
        for k, v in result.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k != "step"
    }


class TrainingEvals:
    """``config.evals`` every ``config.eval_every`` steps of training, on the encoder the probes
    read (``eval.weights``), as ``NAME/KEY`` metrics and one terminal line per evaluator. Built
    before anything compiles, so a bad name or dataset stops the run at once."""

    def __init__(self, config):
        self.every, self.config = config.eval_every, config
        if self.every < 0:
            raise ValueError(f"eval_every={self.every}; valid: 0 (off) or a number of steps")
        if config.evals and not self.every:
            raise ValueError(
                f"evals={tuple(config.evals)} with eval_every=0 never runs; valid: "
                "--config.eval_every=N (steps), or evals=()"
            )
        self.evaluators = {
            name: lookup(name, "evals")(config, None, progress=False) for name in config.evals
        }

    def due(self, step: int) -> bool:
        return bool(self.evaluators) and step % self.every == 0

    def run(self, step: int, params) -> dict[str, float]:
        """The metrics of every evaluator at ``step``."""
        encoder = hub.PretrainedEncoder(
            self.config, params, step, weights=methods.eval_weights(self.config)
        )
        values = {}
        for name, evaluator in self.evaluators.items():
            t0 = time.perf_counter()
            result = evaluator.run(encoder)
            values.update(metric_values(name, result))
            top1 = f" top-1 {result['top1']:.2f}%" if "top1" in result else ""
            logging.info("step %d: %s%s (%.1fs)", step, name, top1, time.perf_counter() - t0)
        return values
