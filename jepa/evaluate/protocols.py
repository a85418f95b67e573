"""The built-in evaluators (``base.py``): the probes on frozen features (``linear``, ``knn``,
``attentive``, ``fewshot``), a hierarchy run's per-level report (``levels``), a latent-variable
run's energies (``energy``), the held-out digits check (``transfer``) and a world model's
planning in Two Rooms (``planning``)."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time

import flax.linen as nn
import jax
import ml_collections

from jepa import config as config_lib
from jepa import methods
from jepa.data import pipeline
from jepa.evaluate import (
    attentive_probe,
    base,
    energy,
    features,
    fewshot,
    knn,
    levels,
    linear_probe,
    transfer,
    world_model,
)
from jepa.methods import data_config
from jepa.models import build_encoder
from jepa.state import init_boxed_params


def make_classifier(protocol: str, config):
    """(train_x, train_y, test_x, test_y) → result dict (``top1`` in [0, 1]) for ``protocol``."""
    e = config.eval
    if protocol == "knn":
        return functools.partial(knn.knn_probe, k=e.knn_k, temperature=e.knn_temperature)
    if protocol == "fewshot":
        return functools.partial(
            fewshot.fewshot_probe,
            subsets=tuple(e.fewshot),
            seeds=e.fewshot_seeds,
            batchnorm=e.batchnorm,
            seed=config.seed,
        )
    grid = dict(val_fraction=e.val_fraction, seed=config.seed)
    if protocol == "attentive":
        return functools.partial(
            attentive_probe.attentive_probe,
            num_heads=e.attentive_heads or config.model.num_heads,
            lrs=tuple(e.attentive_lrs),
            wds=tuple(e.attentive_wds),
            epochs=e.attentive_epochs,
            batch_size=e.attentive_batch_size,
            **grid,
        )
    return functools.partial(
        linear_probe.linear_probe,
        lrs=tuple(e.lrs),
        wds=tuple(e.wds),
        epochs=e.probe_epochs,
        batch_size=e.probe_batch_size,
        batchnorm=e.batchnorm,
        **grid,
    )


def summarize(protocol: str, out: dict) -> dict:
    """The JSON-worthy part of a classifier's result, accuracies in percent."""
    pct = lambda v: round(100 * v, 2)
    if protocol in ("linear", "attentive"):
        return dict(
            val_top1=pct(out["val_top1"]), lr=out["lr"], wd=out["wd"], compiles=out["compiles"]
        )
    if protocol == "knn":
        return dict(k=out["k"], temperature=out["temperature"])
    return {
        "subsets": {
            spec: dict(top1=pct(r["top1"]), top1_std=pct(r["top1_std"]), labels=r["labels"])
            for spec, r in out["subsets"].items()
        }
    }


EVAL_CHOICES = {
    "weights": ("", "target", "context"),
    "layers": features.LAYERS,
    "pooling": features.POOLINGS,
    "dtype": ("", *config_lib.DTYPES),
}
NON_EMPTY = ("lrs", "wds", "attentive_lrs", "attentive_wds", "fewshot")
POSITIVE = (
    "knn_k probe_epochs attentive_epochs attentive_batch_size fewshot_seeds batch_size".split()
)


def validate_eval(config) -> None:
    """The ``eval.*`` keys, checked before any feature is extracted."""
    e = config.eval
    for key, valid in EVAL_CHOICES.items():
        if e[key] not in valid:
            raise ValueError(f"eval.{key}={e[key]!r}; valid: {valid}")
    for key in NON_EMPTY:
        if not len(e[key]):
            raise ValueError(f"eval.{key} is empty")
    for key in POSITIVE:
        if e[key] <= 0:
            raise ValueError(f"eval.{key}={e[key]} must be positive")
    if not 0 < e.val_fraction < 1:
        raise ValueError(f"eval.val_fraction={e.val_fraction} must be in (0, 1)")
    heads = e.attentive_heads or config.model.num_heads
    width = config.model.width * (4 if e.layers == "last4" else 1)
    if width % heads:
        raise ValueError(f"eval.attentive_heads={heads} does not divide the feature width {width}")
    for spec in e.fewshot:
        fewshot.parse_subset(spec)


class Probe:
    """Features of the frozen encoder (and of the baselines) on the train and test splits, then
    the ``protocol``'s classifier (``make_classifier``; its module's docstring describes it).
    Features are cached under ``WORKDIR/eval/features`` when there is a workdir."""

    def __init__(
        self, config, workdir=None, *, protocol="linear", baselines=False, progress=True, **_
    ):
        config = ml_collections.ConfigDict(config.to_dict())  # this probe's own settings
        if protocol == "attentive":
            config.eval.pooling = "none"  # the probe attends over tokens
        validate_eval(config)
        config.eval.weights = methods.eval_weights(config)
        e = config.eval
        if e.dtype:
            config.model.dtype = e.dtype
        self.config, self.protocol, self.baselines = config, protocol, baselines
        to_stderr = functools.partial(print, file=sys.stderr, flush=True)
        self.log = to_stderr if progress else logging.debug  # quiet during training
        self.module = build_encoder(config)
        # Each eval.KEY that is set replaces the pretraining data's; errors name the one read.
        key = lambda name: f"{'eval' if e[name] else 'data'}.{name}"
        self.data = data_cfg = data_config(config)
        data_cfg.dataset = e.dataset or data_cfg.dataset
        data_cfg.data_dir = e.data_dir or data_cfg.data_dir
        self.splits = (
            e.train_split or config.data.train_split,
            e.test_split or config.data.test_split,
        )
        # Before any feature is computed: the probe needs labels and both splits.
        splits = {key("train_split"): self.splits[0], key("test_split"): self.splits[1]}
        pipeline.check_labelled(
            data_cfg.dataset, data_cfg.data_dir, splits, key("dataset"), f"the {protocol} probe"
        )
        self.cache = os.path.join(workdir, "eval", "features") if workdir else None
        self.classify = make_classifier(protocol, config)

    def probe(self, params, key, label):
        """The classifier on the features of the encoder ``params`` (cached under ``key``)."""
        e, t = self.config.eval, time.perf_counter()
        kw = dict(
            depth=self.config.model.depth,
            layers=e.layers,
            pooling=e.pooling,
            batch_size=e.batch_size,
            cache_dir=self.cache if key else None,
            cache_key=key,
        )
        tr, te = (
            features.extract_features(self.module, params, self.data, s, **kw) for s in self.splits
        )
        self.log(
            f"[{label}] features {tr[0].shape} train, {te[0].shape} test "
            f"({time.perf_counter() - t:.1f}s); running the {self.protocol} probe…"
        )
        return self.classify_and_log(tr, te, label)

    def classify_and_log(self, train, test, label):
        """The classifier on (features, labels) of the train and test splits."""
        out = self.classify(*train, *test)
        summary = json.dumps(summarize(self.protocol, out))
        self.log(f"[{label}] top-1 {100 * out['top1']:.2f}% {summary}")
        return out

    def run(self, encoder) -> dict:
        config, e, protocol = self.config, self.config.eval, self.protocol
        t0 = time.perf_counter()
        key = {"step": encoder.step, "weights": e.weights, "dtype": config.model.dtype}
        out = self.probe(encoder.params, key if self.cache else None, f"step {encoder.step}")
        result = {
            "protocol": protocol,
            "step": encoder.step,
            "dataset": self.data.dataset,
            "top1": round(100 * out["top1"], 2),
            "layers": e.layers,
            "pooling": e.pooling,
            "weights": e.weights,
            **summarize(protocol, out),
        }
        if self.baselines:
            result["baselines"] = self.run_baselines()
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        return result

    def run_baselines(self) -> dict:
        """The same probe on raw pixels and on a randomly initialized encoder."""
        config, e, protocol = self.config, self.config.eval, self.protocol
        patch = config.model.patch_size if e.pooling == "none" else None
        px_tr, px_te = (
            features.pixel_features(self.data, s, e.batch_size, patch) for s in self.splits
        )
        px = self.classify_and_log(px_tr, px_te, "pixels")
        random_params = nn.unbox(
            init_boxed_params(config, jax.random.PRNGKey(config.seed + 1))["encoder"]
        )
        rnd = self.probe(random_params, None, "random encoder")
        results = {"pixels": px, "random_encoder": rnd}
        out = {name: round(100 * r["top1"], 2) for name, r in results.items()}
        if protocol == "fewshot":
            out["subsets"] = {
                name: summarize(protocol, r)["subsets"] for name, r in results.items()
            }
        return out


for _name in ("linear", "knn", "attentive", "fewshot"):
    base.register(_name, functools.partial(Probe, protocol=_name))


def needs_workdir(name: str, workdir: str | None) -> str:
    if workdir is None:
        raise ValueError(
            f"evals=({name!r},) reads more of a saved checkpoint than the encoder; valid: "
            f"jepa-eval --workdir W --protocol {name} after training"
        )
    return workdir


@base.register("levels")
class Levels:
    """A hierarchy run's level ``--level N`` (``levels.py``); the whole model from the step's
    checkpoint. Results go to ``level<N>_step<S>.json``."""

    def __init__(self, config, workdir, *, level=None, overrides=None, **_):
        self.workdir = needs_workdir("levels", workdir)
        if level is None:
            raise ValueError("--protocol levels needs --level N; valid: a level of the hierarchy")
        self.level, self.overrides, self.stem = level, overrides or {}, f"level{level}"

    def run(self, encoder) -> dict:
        return levels.evaluate(self.workdir, encoder.step, self.level, self.overrides)


@base.register("energy")
class Energy:
    """A latent-variable (``future``) run's energies on the test clips (``energy.py``)."""

    def __init__(self, config, workdir, **_):
        self.workdir = needs_workdir("energy", workdir)
        self.split = config.eval.test_split or None

    def run(self, encoder) -> dict:
        return {"protocol": "energy", **energy.evaluate(self.workdir, encoder.step, self.split)}


base.register("planning", world_model.Planning)


@base.register("transfer")
class Transfer:
    """Held-out digits (``transfer.py``): the pooled embedding against raw pixels; ``top1``
    is the pooled embedding's."""

    def __init__(self, config, workdir=None, **_):
        m = config.model
        if (m.image_size, m.channels) != (28, 1):
            raise ValueError(
                f"model.image_size={m.image_size}, model.channels={m.channels}: the transfer "
                "check reads 28-px grayscale digits; valid: a 28-px grayscale encoder"
            )

    def run(self, encoder) -> dict:
        result = transfer.transfer_check(encoder)
        return {"protocol": "transfer", "step": encoder.step, "top1": result["pooled"], **result}
