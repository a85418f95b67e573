"""The training methods, each a ``Method`` (``base.py``) registered under its
``config.objective``: ``masked`` (I-JEPA, ``ijepa.py``; V-JEPA's tube masks, ``vjepa.py``),
``multiview``, ``future`` (``video.py``), ``hierarchy`` (``hjepa.py``) and ``world_model``
(the Two Rooms agent, ``world_model.py``). Importing this
package registers them; ``get(config.objective)`` is how everything else reaches one, and
``with_method`` gives a config the section ``config.method`` its method owns."""

from __future__ import annotations

import importlib.util
import os
import sys

import ml_collections

from jepa import checkpointing
from jepa import config as jepa_config
from jepa.methods import hjepa, masked, multiview, video, world_model  # noqa: F401 (register)
from jepa.methods.base import REGISTRY, Method, get, register  # noqa: F401


def with_method(config, objective: str) -> ml_collections.ConfigDict:
    """``config`` (unlocked, e.g. ``jepa.config.base_config()``) with ``objective`` and
    ``method`` set to that method's defaults; returns it."""
    config.objective = objective
    config.method = of(config).defaults()
    return config


def from_stored(stored: dict) -> ml_collections.ConfigDict:
    """A config saved with a checkpoint or an export, on today's defaults (so keys added since
    it was written get their default values). A config written before the method's keys moved
    under ``config.method`` raises (``CheckpointMismatchError``: no older step is tried), naming
    what changed: it is never read in part."""
    if "method" not in stored:
        old = sorted(k for k in ("mask", "loss", "latent", "hierarchy") if k in stored)
        raise checkpointing.CheckpointMismatchError(
            f"this checkpoint's config predates config.method (it has {old} at the top level): "
            "each method's keys now live under config.method; valid: a run of this version of "
            "jepa (re-train it), or the jepa version that wrote it"
        )
    config = jepa_config.base_config()
    config.method_file = stored.get("method_file", "")  # before the lookup: it may register it
    with_method(config, stored["objective"])

    def merge(node, values):
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(node.get(key), ml_collections.ConfigDict):
                merge(node[key], value)
            else:
                node[key] = tuple(value) if isinstance(value, list) else value

    merge(config, stored)
    return config


def of(config) -> Method:
    """The method ``config.objective`` names; one defined outside jepa is first imported from
    ``config.method_file``."""
    path = config.get("method_file", "")
    if path and config.objective not in REGISTRY:
        import_method_file(path)
    return get(config.objective)


def import_method_file(path: str) -> None:
    """Run the module at ``path`` (which registers its method), under its file name."""
    if not os.path.isfile(path):
        raise ValueError(
            f"method_file={path!r} is not a file; valid: the path of a .py file that registers "
            "the method config.objective names"
        )
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)


def eval_weights(config) -> str:
    """The encoder a run's probes read: ``eval.weights``, or when it is "" the one the method
    trains as its representation (``Method.eval_weights``)."""
    return config.eval.weights or of(config).eval_weights(config)


def data_config(config) -> ml_collections.ConfigDict:
    """``config.data`` plus what the input pipeline needs from ``config.model`` and from the
    method (its views, or the clip or window lengths it reads from a video dataset)."""
    d = config.data
    same = ("dataset", "train_split", "test_split", "hflip", "worker_count", "max_bad_records")
    cfg = {k: d[k] for k in same}
    cfg.update(
        data_dir=d.data_dir or None,
        image_size=config.model.image_size,
        crop_scale=tuple(d.crop_scale),
        mean=tuple(d.mean) or None,
        std=tuple(d.std) or None,
    )
    cfg.update(of(config).pipeline(config))
    return ml_collections.ConfigDict(cfg)
