"""Summarize the demo: probe.json (contract format) and the table it prints.

The headline is the linear probe on the pooled embedding, the ``pooled`` that
``jepa.load_encoder`` returns and a user takes home; the flattened token grid is a second row.
Then the held-out digits check (``jepa.evaluate.transfer``): the pooled embedding against raw
pixels on digits the encoder never saw.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def heldout_check(workdir):
    """The transfer check on the encoder ``load_encoder(workdir)`` gives, or None when the
    model does not read 28-px grayscale digits."""
    import jepa
    from jepa.evaluate import transfer

    enc = jepa.load_encoder(workdir)
    m = enc.config.model
    if (m.image_size, m.channels) != (transfer.SIZE, 1):
        return None
    return {"weights": enc.weights, **transfer.transfer_check(enc)}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--start", type=float, required=True, help="unix time the demo began")
    parser.add_argument("--config", default="", help="the pretraining config, for the record")
    args = parser.parse_args(argv)
    pooled = read_json(os.path.join(args.workdir, "eval_linear.json"))
    flat_path = os.path.join(args.workdir, "eval_linear_flatten.json")
    flat = read_json(flat_path) if os.path.exists(flat_path) else None
    heldout = heldout_check(args.workdir)
    probe = {
        "top1": pooled["top1"],
        # probe.json names the linear probe on pixels "pixels_logreg": a logistic regression.
        "baselines": {
            "pixels_logreg": pooled["baselines"]["pixels"],
            "random_encoder": pooled["baselines"]["random_encoder"],
        },
        "wall_s": round(time.time() - args.start, 1),
        "workdir": os.path.abspath(args.workdir),
        "pooling": pooled["pooling"],
        "weights": pooled["weights"],
        "step": pooled["step"],
        "config": args.config,
    }
    if flat:
        probe["flatten"] = {
            "top1": flat["top1"],
            "random_encoder": flat["baselines"]["random_encoder"],
        }
    if heldout:
        probe["heldout_digits"] = heldout
    with open(os.path.join(args.workdir, "probe.json"), "w") as f:
        json.dump(probe, f, indent=1)

    base = probe["baselines"]
    print()
    print("linear probe on mnist5k test (1,000 digits), top-1 %")
    print(f"{'':32}{'pooled':>9}{'flattened':>11}")
    rows = [
        ("pretrained encoder", probe["top1"], flat and flat["top1"]),
        (
            "randomly initialized encoder",
            base["random_encoder"],
            flat and flat["baselines"]["random_encoder"],
        ),
        (
            "logistic regression, pixels",
            base["pixels_logreg"],
            flat and flat["baselines"]["pixels"],
        ),
    ]
    for name, a, b in rows:
        print(f"  {name:30}{a:9.2f}" + (f"{b:11.2f}" if b is not None else ""))
    print(f"  ({args.config}, step {probe['step']}, {probe['weights']} encoder)")
    if heldout:
        print(
            f"held-out digits ({heldout['dataset']}; {heldout['train']} fit / {heldout['test']} "
            "test), logistic regression, top-1 %"
        )
        print(f"  pooled embedding ({heldout['pooled_dim']}-d){heldout['pooled']:9.2f}")
        print(f"  raw pixels (784-d){heldout['pixels']:15.2f}")
    with open(os.path.join(args.workdir, "metrics.jsonl")) as f:
        health = [r for r in map(json.loads, f) if "rankme" in r]
    if health:
        alarms = int(sum(r.get("collapse_alarms", 0) for r in health))
        print(
            f"health: {len(health)} readings, {alarms} collapse alarms (RankMe "
            f"{min(r['rankme'] for r in health):.1f}–{max(r['rankme'] for r in health):.1f}, "
            f"feature std ≥ {min(r['feature_std'] for r in health):.2f})"
        )
    print(f"wall time {probe['wall_s']:.0f} s; plots and probe.json in {probe['workdir']}")
    print(json.dumps(probe))
    return probe


if __name__ == "__main__":
    main()
