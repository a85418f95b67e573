"""``jepa-eval``: probe a pretrained checkpoint; prints progress, then one final JSON line.

  jepa-eval --workdir DIR [--step N | --all-steps] --protocol {linear,knn} \
      [--baselines] [--config.eval.pooling=flatten ...]

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

PROTOCOLS = ("linear", "knn")


def parse_args(argv: list[str]) -> tuple[dict, dict]:
    flags = {
        "workdir": None,
        "step": None,
        "protocol": "linear",
        "all_steps": False,
        "baselines": False,
    }
    overrides = {}
    joined, i = [], 0
    while i < len(argv):  # accept "--workdir DIR" as well as "--workdir=DIR"
        arg = argv[i]
        if arg in ("--workdir", "--step", "--protocol") and i + 1 < len(argv):
            arg, i = f"{arg}={argv[i + 1]}", i + 1
        joined.append(arg)
        i += 1
    for arg in joined:
        if not arg.startswith("--"):
            raise SystemExit(f"unexpected argument {arg!r}")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key.startswith("config."):
            if not eq:
                raise SystemExit(f"{arg}: config overrides need --config.KEY=VALUE")
            overrides[key[len("config.") :]] = value
        elif key in ("all_steps", "baselines"):
            flags[key] = value.lower() not in ("0", "false", "no") if eq else True
        elif key in ("workdir", "step", "protocol"):
            flags[key] = value
        else:
            raise SystemExit(
                f"unknown flag --{key}; valid: --workdir --step --protocol "
                "--all-steps --baselines --config.KEY=VALUE"
            )
    if not flags["workdir"]:
        raise SystemExit("--workdir is required")
    if flags["protocol"] not in PROTOCOLS:
        raise SystemExit(f"--protocol={flags['protocol']!r}; valid: {PROTOCOLS}")
    if flags["step"] is not None:
        flags["step"] = int(flags["step"])
    return flags, overrides


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_probe(
    workdir: str, step: int | None, overrides: dict, baselines: bool, protocol: str = "linear"
) -> dict:
    """Features of the frozen encoder (and of the baselines), then the ``protocol``'s
    classifier: ``linear`` (LR × WD grid, selection on a held-out part of train) or ``knn``
    (cosine, ``eval.knn_k`` neighbours, votes weighted by exp(sim / ``eval.knn_temperature``))."""
    import jax
    import ml_collections

    from jepa import config as config_lib
    from jepa import hub
    from jepa.evaluate import features, knn, linear_probe
    from jepa.train import data_config

    enc = hub.load_encoder(workdir, step)
    config = ml_collections.ConfigDict(enc.config.to_dict())
    config_lib.apply_overrides(config, overrides)
    e = config.eval
    if e.weights != "target":
        enc = hub.load_encoder(workdir, enc.step, weights=e.weights)
    data_cfg = data_config(config)
    if e.dataset:
        data_cfg.dataset = e.dataset
    train_split = e.train_split or config.data.train_split
    test_split = e.test_split or config.data.test_split
    cache = os.path.join(workdir, "eval", "features")
    if protocol == "knn":
        classify = functools.partial(knn.knn_probe, k=e.knn_k, temperature=e.knn_temperature)
    else:
        classify = functools.partial(
            linear_probe.linear_probe,
            lrs=tuple(e.lrs),
            wds=tuple(e.wds),
            epochs=e.probe_epochs,
            batch_size=e.probe_batch_size,
            val_fraction=e.val_fraction,
            seed=config.seed,
        )

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
        tr = features.extract_features(enc.module, params, data_cfg, train_split, **kw)
        te = features.extract_features(enc.module, params, data_cfg, test_split, **kw)
        log(
            f"[{label}] features {tr[0].shape} train, {te[0].shape} test "
            f"({time.perf_counter() - t:.1f}s); running the {protocol} probe…"
        )
        out = classify(tr[0], tr[1], te[0], te[1])
        extra = ", ".join(f"{k} {v:.4g}" for k, v in out.items() if k not in ("top1", "grid"))
        log(f"[{label}] top-1 {100 * out['top1']:.2f}% ({extra})")
        return out

    t0 = time.perf_counter()
    out = probe(enc.params, {"step": enc.step, "weights": e.weights}, f"step {enc.step}")
    result = {
        "protocol": protocol,
        "step": enc.step,
        "dataset": data_cfg.dataset,
        "top1": round(100 * out["top1"], 2),
        "layers": e.layers,
        "pooling": e.pooling,
        "weights": e.weights,
    }
    if protocol == "linear":
        result.update(val_top1=round(100 * out["val_top1"], 2), lr=out["lr"], wd=out["wd"])
    else:
        result.update(k=out["k"], temperature=out["temperature"])
    if baselines:
        import flax.linen as nn

        from jepa.state import init_boxed_params

        px_tr = features.pixel_features(data_cfg, train_split, e.batch_size)
        px_te = features.pixel_features(data_cfg, test_split, e.batch_size)
        px = classify(px_tr[0], px_tr[1], px_te[0], px_te[1])
        log(f"[pixels] top-1 {100 * px['top1']:.2f}%")
        random_params = nn.unbox(
            init_boxed_params(config, jax.random.PRNGKey(config.seed + 1))["encoder"]
        )
        rnd = probe(random_params, None, "random encoder")
        result["baselines"] = {
            ("pixels_logreg" if protocol == "linear" else "pixels_knn"): round(100 * px["top1"], 2),
            "random_encoder": round(100 * rnd["top1"], 2),
        }
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    flags, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    from jepa import checkpointing

    workdir = flags["workdir"]
    steps = [flags["step"]]
    if flags["all_steps"]:
        steps = checkpointing.Checkpointer(workdir, async_save=False).all_steps()
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
    main()


if __name__ == "__main__":
    run()
