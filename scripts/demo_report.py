"""Summarize the demo: probe.json (contract format) and a table of the three numbers."""

import argparse
import json
import os
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--start", type=float, required=True, help="unix time the demo began")
    parser.add_argument("--config", default="", help="the pretraining config, for the record")
    args = parser.parse_args()
    with open(os.path.join(args.workdir, "eval_linear.json")) as f:
        result = json.load(f)
    probe = {
        "top1": result["top1"],
        # probe.json names the linear probe on pixels "pixels_logreg": a logistic regression.
        "baselines": {
            "pixels_logreg": result["baselines"]["pixels"],
            "random_encoder": result["baselines"]["random_encoder"],
        },
        "wall_s": round(time.time() - args.start, 1),
        "workdir": os.path.abspath(args.workdir),
        "pooling": result["pooling"],
        "step": result["step"],
        "config": args.config,
    }
    with open(os.path.join(args.workdir, "probe.json"), "w") as f:
        json.dump(probe, f, indent=1)
    print()
    print(f"linear probe on mnist5k test (1,000 digits), top-1 %  [features: {result['pooling']}]")
    print(f"  pretrained encoder          {probe['top1']:6.2f}   ({args.config})")
    print(f"  randomly initialized encoder{probe['baselines']['random_encoder']:7.2f}")
    print(f"  logistic regression, pixels {probe['baselines']['pixels_logreg']:6.2f}")
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


if __name__ == "__main__":
    main()
