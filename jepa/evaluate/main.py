"""``jepa-eval``: probe a pretrained checkpoint; prints progress, then one final JSON line.

  jepa-eval --workdir DIR [--step N | --all-steps] --protocol {linear,knn,attentive,fewshot} \
      [--baselines] [--config.eval.pooling=flatten ...]
  jepa-eval --workdir DIR --level N      # a hierarchy run: level N's probes (evaluate/levels.py)

Results are also written to ``DIR/eval/<protocol>_step<N>.json``. ``--config.KEY=VALUE``
overrides apply to the config stored with the checkpoint (``eval.*`` keys select the probe
dataset, layers, pooling and grid).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

PROTOCOLS = ("linear", "knn", "attentive", "fewshot")
USAGE = """\
usage: jepa-eval --workdir DIR [--step N | --all-steps] [--protocol P] [--baselines]
                 [--level N] [--config.KEY=VALUE ...] [--debug]

Probe the frozen encoder of a jepa-train run; prints progress, then one JSON line.

flags:
  --workdir DIR         the run (its checkpoints/), from any working directory
  --step N              this checkpoint step (default: the newest that reads)
  --all-steps           every step, plus DIR/probe_vs_step.png
  --protocol P          linear (default), knn, attentive or fewshot
  --baselines           also probe raw pixels and a random encoder
  --level N             a hierarchy run: level N's probes
  --config.KEY=VALUE    override the stored config, e.g. --config.eval.pooling=flatten;
                        --config.eval.dataset=NAME --config.eval.data_dir=DIR probe another
                        (labelled) dataset than the one pretrained on
  --debug               show tracebacks instead of one-line errors
  --verbose             print the libraries' log lines too (always in DIR/eval/eval.log)

examples:
  jepa-eval --workdir runs/mnist
  jepa-eval --workdir runs/frames --config.eval.dataset=pics --config.eval.data_dir=./tfds
"""


class UsageError(ValueError):
    """A bad command line; the message says what is valid."""


def parse_args(argv: list[str]) -> tuple[dict, dict]:
    flags = {
        "workdir": None,
        "step": None,
        "protocol": "linear",
        "all_steps": False,
        "baselines": False,
        "level": None,
        "debug": False,
        "verbose": False,
    }
    overrides = {}
    joined, i = [], 0
    while i < len(argv):  # accept "--workdir DIR" as well as "--workdir=DIR"
        arg = argv[i]
        if arg in ("--workdir", "--step", "--protocol", "--level") and i + 1 < len(argv):
            arg, i = f"{arg}={argv[i + 1]}", i + 1
        joined.append(arg)
        i += 1
    for arg in joined:
        if arg in ("-h", "--help", "--helpfull"):
            print(USAGE, end="")
            raise SystemExit(0)
        if not arg.startswith("--"):
            raise UsageError(f"unexpected argument {arg!r}; valid: flags of the form --NAME=VALUE")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key.startswith("config."):
            if not eq:
                raise UsageError(f"{arg}: config overrides need --config.KEY=VALUE")
            overrides[key[len("config.") :]] = value
        elif key in ("all_steps", "baselines", "debug", "verbose"):
            flags[key] = value.lower() not in ("0", "false", "no") if eq else True
        elif key in ("workdir", "step", "protocol", "level"):
            flags[key] = value
        else:
            raise UsageError(
                f"unknown flag --{key}; valid: --workdir --step --protocol --level "
                "--all-steps --baselines --debug --verbose --config.KEY=VALUE (--help for more)"
            )
    if not flags["workdir"]:
        raise UsageError("--workdir is required; valid: the --workdir of a jepa-train run")
    if flags["protocol"] not in PROTOCOLS:
        raise UsageError(f"--protocol={flags['protocol']!r}; valid: {PROTOCOLS}")
    for key in ("step", "level"):
        if flags[key] is not None:
            try:
                flags[key] = int(flags[key])
            except ValueError:
                raise UsageError(f"--{key}={flags[key]!r}; valid: an integer") from None
    return flags, overrides


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_classifier(protocol: str, config):
    """(train_x, train_y, test_x, test_y) → result dict (``top1`` in [0, 1]) for ``protocol``."""
    from jepa.evaluate import attentive_probe, fewshot, knn, linear_probe

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
    pct = lambda v: round(100 * v, 2)  # noqa: E731
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


def run_probe(
    workdir: str, step: int | None, overrides: dict, baselines: bool, protocol: str = "linear"
) -> dict:
    """Features of the frozen encoder (and of the baselines), then the ``protocol``'s
    classifier: ``linear`` (LR × WD grid, selection on a held-out part of train), ``knn``
    (cosine, ``eval.knn_k`` neighbours, votes weighted by exp(sim / ``eval.knn_temperature``)),
    ``attentive`` (V-JEPA's cross-attention probe on the tokens, its own grid) or ``fewshot``
    (closed-form ridge on ``eval.fewshot`` subsets of the labels)."""
    import jax
    import ml_collections

    from jepa import config as config_lib
    from jepa import hub, methods, validation
    from jepa.data import pipeline
    from jepa.evaluate import features
    from jepa.models import build_encoder

    enc = hub.load_encoder(workdir, step)
    config = ml_collections.ConfigDict(enc.config.to_dict())
    config_lib.apply_overrides(config, overrides)
    config = config_lib.absolute_paths(config)  # a relative override: from here
    if protocol == "attentive":
        config.eval.pooling = "none"  # the probe attends over tokens
    validation.validate_eval(config)
    config.eval.weights = methods.eval_weights(config)  # "" → the method's, as load_encoder
    e = config.eval
    if e.weights != enc.weights:
        enc = hub.load_encoder(workdir, enc.step, weights=e.weights)
    if e.dtype:
        config.model.dtype = e.dtype
    module = build_encoder(config)
    data_cfg = methods.data_config(config)
    if e.dataset:
        data_cfg.dataset = e.dataset
    if e.data_dir:
        data_cfg.data_dir = e.data_dir
    train_split = e.train_split or config.data.train_split
    test_split = e.test_split or config.data.test_split
    # Before any feature is computed: the probe needs labels and both splits.
    which = "eval" if e.dataset else "data"
    pipeline.check_labelled(
        data_cfg.dataset,
        data_cfg.data_dir,
        {
            f"{'eval' if e.train_split else 'data'}.train_split": train_split,
            f"{'eval' if e.test_split else 'data'}.test_split": test_split,
        },
        f"{which}.dataset",
        f"the {protocol} probe",
    )
    cache = os.path.join(workdir, "eval", "features")
    classify = make_classifier(protocol, config)

    def probe(params, key, label):
        t = time.perf_counter()
        kw = dict(
            depth=config.model.depth,
            layers=e.layers,
            pooling=e.pooling,
            batch_size=e.batch_size,
            cache_dir=cache if key else None,
            cache_key=key,
        )
        tr = features.extract_features(module, params, data_cfg, train_split, **kw)
        te = features.extract_features(module, params, data_cfg, test_split, **kw)
        log(
            f"[{label}] features {tr[0].shape} train, {te[0].shape} test "
            f"({time.perf_counter() - t:.1f}s); running the {protocol} probe…"
        )
        out = classify(tr[0], tr[1], te[0], te[1])
        log(f"[{label}] top-1 {100 * out['top1']:.2f}% {json.dumps(summarize(protocol, out))}")
        return out

    t0 = time.perf_counter()
    key = {"step": enc.step, "weights": e.weights, "dtype": config.model.dtype}
    out = probe(enc.params, key, f"step {enc.step}")
    result = {
        "protocol": protocol,
        "step": enc.step,
        "dataset": data_cfg.dataset,
        "top1": round(100 * out["top1"], 2),
        "layers": e.layers,
        "pooling": e.pooling,
        "weights": e.weights,
        **summarize(protocol, out),
    }
    if baselines:
        import flax.linen as nn

        from jepa.state import init_boxed_params

        patch = config.model.patch_size if e.pooling == "none" else None
        px_tr = features.pixel_features(data_cfg, train_split, e.batch_size, patch)
        px_te = features.pixel_features(data_cfg, test_split, e.batch_size, patch)
        px = classify(px_tr[0], px_tr[1], px_te[0], px_te[1])
        log(f"[pixels] top-1 {100 * px['top1']:.2f}% {json.dumps(summarize(protocol, px))}")
        random_params = nn.unbox(
            init_boxed_params(config, jax.random.PRNGKey(config.seed + 1))["encoder"]
        )
        rnd = probe(random_params, None, "random encoder")
        result["baselines"] = {
            "pixels": round(100 * px["top1"], 2),
            "random_encoder": round(100 * rnd["top1"], 2),
        }
        if protocol == "fewshot":
            result["baselines"]["subsets"] = {
                "pixels": summarize(protocol, px)["subsets"],
                "random_encoder": summarize(protocol, rnd)["subsets"],
            }
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    """``jepa-eval``: a bad command line, run, config or dataset ends in a one-line message
    (``SystemExit``); ``--debug`` shows the traceback instead."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(USAGE, end="", file=sys.stderr)
        raise SystemExit(2)
    debug = "--debug" in argv
    from jepa.checkpointing import CheckpointCorruptError

    try:
        return evaluate(*parse_args(argv))
    except (ValueError, KeyError, FileNotFoundError, CheckpointCorruptError) as e:
        if debug:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise SystemExit(f"jepa-eval: {type(e).__name__}: {message}") from None


def evaluate(flags: dict, overrides: dict) -> list[dict]:
    """What the parsed command line asks for; the results, last one printed as JSON."""
    from jepa import hub

    workdir = flags["workdir"]
    if flags["level"] is not None:
        from jepa.evaluate import levels

        result = levels.evaluate(workdir, flags["step"], flags["level"], overrides)
        out_dir = os.path.join(workdir, "eval")
        os.makedirs(out_dir, exist_ok=True)
        with open(
            os.path.join(out_dir, f"level{flags['level']}_step{result['step']}.json"), "w"
        ) as f:
            json.dump(result, f, indent=1)
        print(json.dumps(result), flush=True)
        return [result]
    steps = [flags["step"]]
    if flags["all_steps"]:
        steps = hub.open_run(workdir).all_steps()
    results = []
    for step in steps:
        result = run_probe(workdir, step, overrides, flags["baselines"], flags["protocol"])
        out_dir = os.path.join(workdir, "eval")
        os.makedirs(out_dir, exist_ok=True)
        with open(
            os.path.join(out_dir, f"{flags['protocol']}_step{result['step']}.json"), "w"
        ) as f:
            json.dump(result, f, indent=1)
        results.append(result)
        if flags["all_steps"]:
            log(json.dumps(result))
    if flags["all_steps"]:
        from jepa.plots import plot_probe_vs_step

        plot_probe_vs_step(workdir, results)
    print(json.dumps(results[-1]), flush=True)
    return results


def run():
    from jepa import console

    argv = sys.argv[1:]
    workdir = next((a.split("=", 1)[1] for a in argv if a.startswith("--workdir=")), None)
    if "--workdir" in argv[:-1]:
        workdir = argv[argv.index("--workdir") + 1]
    # Library records go to a log file beside the results, only in a directory that is a run
    # (main() reports a bad command line or a path that is not a run).
    is_run = workdir is not None and os.path.isdir(os.path.join(workdir, "checkpoints"))
    log_file = os.path.join(workdir, "eval", "eval.log") if is_run else None
    console.configure(log_file, verbose="--verbose" in argv)
    main()


if __name__ == "__main__":
    run()
