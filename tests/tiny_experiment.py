"""``tiny_mnist_config`` as an experiment file, for tests that launch ``jepa-train`` as a user
would and compare with an in-process run of the very same config:

  python -m jepa.main --config tests/tiny_experiment.py:data_dir=DIR,steps=8,every=2 --workdir W
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import tiny_mnist_config  # noqa: E402

from jepa import config as config_lib  # noqa: E402


def get_config(arg=None):
    args = config_lib.parse_arg(arg, data_dir="", steps=8, every=2)
    config = tiny_mnist_config(args.data_dir, total_steps=args.steps, checkpoint_every=args.every)
    return config_lib.finalize(config)
