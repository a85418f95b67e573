"""Export one encoder of a training run as a params-only checkpoint (no optimizer state, no
predictor): a fraction of the run's checkpoint, and what ``jepa.load_encoder`` needs.

  python scripts/export.py --workdir DIR [--step N] [--weights target|context] --out OUT
  python -c "import jepa; enc = jepa.load_encoder('OUT'); print(enc.config.model)"
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jepa import hub  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a jepa-train run directory")
    parser.add_argument("--out", required=True, help="new (or empty) directory to write")
    parser.add_argument("--step", type=int, default=None, help="default: the latest")
    parser.add_argument(
        "--weights",
        default=None,
        choices=sorted(hub.WEIGHTS),
        help="default: the encoder the run's probes read (as jepa.load_encoder)",
    )
    args = parser.parse_args(argv)
    info = hub.export_encoder(args.workdir, args.out, args.step, args.weights)
    size = sum(
        os.path.getsize(os.path.join(root, f))
        for root, _, files in os.walk(args.out)
        for f in files
    )
    print(json.dumps({**info, "out": os.path.abspath(args.out), "bytes": size}))


if __name__ == "__main__":
    main()
