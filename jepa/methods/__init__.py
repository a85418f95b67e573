"""The training methods, each a ``Method`` (``base.py``) registered under its
``config.objective``: ``masked`` (I-JEPA, ``ijepa.py``; V-JEPA's tube masks, ``vjepa.py``),
``multiview``, ``future`` (``video.py``) and ``hierarchy`` (``hjepa.py``). Importing this
package registers them; ``get(config.objective)`` is how everything else reaches one."""

from __future__ import annotations

import importlib.util
import os
import sys

import ml_collections

from jepa.methods import hjepa, masked, multiview, video  # noqa: F401  (they register)
from jepa.methods.base import REGISTRY, Method, get, register  # noqa: F401


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
    method (the clip or window lengths it reads from a video dataset)."""
    d = config.data
    same = ("dataset", "train_split", "test_split", "hflip", "num_views", "local_views")
    cfg = {k: d[k] for k in (*same, "local_size", "worker_count", "max_bad_records")}
    cfg.update(
        data_dir=d.data_dir or None,
        image_size=config.model.image_size,
        crop_scale=tuple(d.crop_scale),
        local_crop_scale=tuple(d.local_crop_scale),
        mean=tuple(d.mean) or None,
        std=tuple(d.std) or None,
        clip_context_frames=0,
        clip_horizon=d.clip.horizon,
        sequence_frames=0,
    )
    cfg.update(of(config).pipeline(config))
    return ml_collections.ConfigDict(cfg)
