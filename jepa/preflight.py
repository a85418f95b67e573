"""Checks of what a run needs outside its config, made before anything is built or compiled.

:func:`jepa.validation.validate` checks the config on its own; these check it against the world:
the dataset can be read (or, for jepa's own builders, prepared), ``data.data_dir`` exists, the
workdir can be written, and a checkpoint already in the workdir is of the model being trained
(otherwise the strict restore would fail later, after the data pipeline and the abstract state
were built). Each error names the config key or path and says what would be valid.
Remote paths (``gs://…``) are left to the libraries that read them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile

import tensorflow_datasets as tfds
from flax.traverse_util import flatten_dict

from jepa import checkpointing
from jepa.data import pipeline, records
from jepa.data.builders import BUILDERS

# TFDS's stand-in for "the default data directory" in our messages.
DEFAULT_DATA_DIR = "~/tensorflow_datasets"


def _remote(path: str) -> bool:
    return "://" in str(path)


def _nearest_existing(path: str) -> str:
    """``path`` or its closest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _writable_dir(path: str) -> str | None:
    """None if a file can be created in the directory ``path``; else the reason it cannot.

    Writes a probe file rather than asking ``os.access``: that answers "yes" to root on a
    read-only mount, and knows nothing of quotas or full disks."""
    if not os.path.isdir(path):
        return f"{path} is not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".jepa-write-probe-"):
            pass
    except OSError as e:
        return f"cannot create a file in {path} ({type(e).__name__}: {e.strerror or e})"
    return None


def check_workdir(workdir: str) -> None:
    """``workdir`` is a writable directory, or can be created as one."""
    if _remote(workdir):
        return
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(
            f"workdir={workdir!r} is a file; valid: a directory you can write to (it is created "
            "if missing)"
        )
    base = _nearest_existing(workdir)
    problem = _writable_dir(base)
    if problem:
        what = "is not writable" if base == os.path.abspath(workdir) else "cannot be created"
        raise ValueError(
            f"workdir={workdir!r} {what}: {problem}; valid: a directory you can write to, or a "
            "new path under one"
        )


def check_data(config) -> None:
    """``data.dataset`` names a dataset that can be read from ``data.data_dir`` ("": none,
    the method generates its batches)."""
    name, data_dir = config.data.dataset, config.data.data_dir
    if not name:
        return
    _check_not_a_folder(name)
    base, _, builder_config = name.partition("/")
    ours = base in BUILDERS
    new_dir = bool(data_dir) and not _remote(data_dir) and not os.path.isdir(data_dir)
    if new_dir and not ours:
        raise ValueError(
            f"data.data_dir={data_dir!r} does not exist (data.dataset={name!r} must already "
            f"be prepared there); valid: the TFDS data directory holding it, or '' for "
            f"TFDS's default {DEFAULT_DATA_DIR}"
        )
    if new_dir:  # jepa's own are prepared on first use: data_dir may be new, if it can be made
        problem = _writable_dir(_nearest_existing(data_dir))
        if problem:
            raise ValueError(
                f"data.data_dir={data_dir!r} does not exist and cannot be created to prepare "
                f"{name!r} in: {problem}; valid: an existing directory, a new path under a "
                f"writable one, or '' for TFDS's default {DEFAULT_DATA_DIR}"
            )
    if ours:
        configs = [c.name for c in BUILDERS[base].BUILDER_CONFIGS or ()]
        if builder_config and builder_config not in configs:
            valid = [f"{base}/{c}" for c in configs] or [base]
            raise ValueError(
                f"data.dataset={name!r}: {base} has no config {builder_config!r}; valid: {valid}"
            )
        if new_dir:
            return  # the pipeline prepares the dataset there
        kwargs = {"config": builder_config} if builder_config else {}
        builder = BUILDERS[base](data_dir=data_dir or None, **kwargs)
    else:
        try:
            builder = tfds.builder(name, data_dir=data_dir or None)
        except tfds.core.registered.DatasetNotFoundError:
            if os.path.isdir(name):
                _check_not_a_folder(f"./{name}")
            raise ValueError(
                f"data.dataset={name!r} is not a dataset jepa or TFDS knows in data.data_dir="
                f"{data_dir or DEFAULT_DATA_DIR!r}; valid: one of jepa's builders "
                f"{sorted(BUILDERS)} (prepared on first use), a TFDS name such as 'cifar10' "
                "prepared in data.data_dir, or a folder of your images made a dataset with "
                "`jepa-data FOLDER --name NAME --data_dir DIR`"
            ) from None
        if not builder.is_prepared():
            raise ValueError(
                f"data.dataset={name!r} is not prepared under data.data_dir="
                f"{data_dir or DEFAULT_DATA_DIR!r} (looked in {builder.data_dir}); valid: a "
                f"data_dir where it is prepared, or prepare it once with tfds.builder({name!r}, "
                "data_dir=...).download_and_prepare(file_format='array_record'), or one of "
                f"jepa's builders {sorted(BUILDERS)}"
            )
    _check_pixels(config, builder)  # known from the builder's code, prepared or not
    # Only the split pretraining reads: data.test_split is checked by the evaluation that reads
    # it (a dataset without one still pretrains). One of jepa's own not prepared yet: the
    # pipeline prepares it, its splits are known after that.
    if builder.is_prepared():
        pipeline.check_splits(
            builder.info, {"data.train_split": config.data.train_split}, "data.dataset", name
        )


def _check_not_a_folder(name: str) -> None:
    """A path given as the dataset's name: the user's own images, not yet a dataset."""
    path = os.path.expanduser(name)
    # A bare name is looked up as a dataset first (a folder "pics" may sit next to the dataset
    # "pics"); only a name that can be nothing but a path is caught here.
    if name.startswith(("/", "./", "../", "~")) or (os.sep in name and os.path.isdir(path)):
        stem = "".join(c if c.isalnum() else "_" for c in os.path.basename(path.rstrip("/")))
        stem = stem.lower().strip("_") or "my_images"
        raise ValueError(
            f"data.dataset={name!r} is a path, not a dataset name; valid: a dataset name. Make "
            f"a folder of images one with `jepa-data {name} --name {stem} --data_dir DIR`, then "
            f"--config.data.dataset={stem} --config.data.data_dir=DIR"
        )


def _check_pixels(config, builder) -> None:
    """The dataset's channels are the model's, and ``data.mean`` / ``data.std`` have one value
    per channel: otherwise the first batch fails inside the model (a parameter shape error),
    after compiling."""
    d, m = config.data, config.model
    features = builder.info.features
    key = next((k for k in records.PIXEL_KEYS if k in features), None)
    shape = tuple(features[key].shape) if key else ()
    if shape and shape[-1] not in (None, m.channels):
        raise ValueError(
            f"data.dataset={d.dataset!r} has {shape[-1]}-channel images (shape {shape}) but "
            f"model.channels={m.channels}; valid: --config.model.channels={shape[-1]}, or "
            f"rewrite the dataset with `jepa-data … --channels {m.channels}`"
        )
    for k in ("mean", "std"):
        values = tuple(d[k])
        if values and len(values) != m.channels:
            raise ValueError(
                f"data.{k}={values} has {len(values)} values for {m.channels}-channel images "
                f"(model.channels={m.channels}); valid: {m.channels} values, one per channel, or "
                "() for the defaults"
            )
    if key == "image" and None not in shape[:2] and min(shape[:2]) < m.image_size:
        logging.warning(
            f"data.dataset={d.dataset!r} has {shape[0]}x{shape[1]} images, smaller than "
            f"model.image_size={m.image_size}: they are upsampled"
        )


def _stored_signature(workdir: str) -> tuple[int | None, dict]:
    """(step, model signature) of the newest checkpoint whose metadata reads; (None, {})."""
    root = os.path.join(workdir, "checkpoints")
    steps = sorted((int(s) for s in os.listdir(root) if s.isdigit()), reverse=True)
    for step in steps:
        # The layout of Orbax's JSON item (checkpointing.ITEMS "metadata"): STEP/ITEM/ITEM.
        path = os.path.join(root, str(step), "metadata", "metadata")
        try:
            with open(path) as f:
                return step, json.load(f)["model"]
        except (OSError, ValueError, KeyError):
            continue  # unreadable: the restore skips such a step too
    return None, {}


def check_checkpoint(config, workdir: str) -> None:
    """A checkpoint in ``workdir`` (which the run would resume from) is of this model."""
    if _remote(workdir) or not checkpointing.has_checkpoints(workdir):
        return
    step, saved = _stored_signature(workdir)
    # Through JSON, as it was stored: tuples become lists on both sides.
    want = flatten_dict(json.loads(json.dumps(checkpointing.model_signature(config))), sep=".")
    got = flatten_dict(saved, sep=".")
    # A part only one side has (a method's predictor or projector): the objectives differ.
    differ = [k for k in sorted(set(want) & set(got)) if want[k] != got[k]]
    if differ:
        keys = "; ".join(
            f"{k}={got[k]!r} in the checkpoint, {want[k]!r} in this config" for k in differ
        )
        raise ValueError(
            f"workdir={workdir!r} holds checkpoints of another model (newest: step {step}): "
            f"{keys}. Valid: set these keys to the checkpoint's values to resume it, or use a "
            "new --workdir to start a fresh run"
        )


def check_init(config) -> None:
    """``init.path``, when set, holds a run's checkpoints or an encoder export."""
    path = config.init.path
    if not path or _remote(path) or checkpointing.has_checkpoints(path):
        return
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(
            f"init.path={path!r} holds no checkpoints and no encoder export; valid: a jepa-train "
            "--workdir with checkpoints, a directory written by export_encoder, or '' (fresh)"
        )


def check(config, workdir: str) -> None:
    """Every check above, cheapest first."""
    check_workdir(workdir)
    check_init(config)
    check_data(config)
    check_checkpoint(config, workdir)
