"""The toy method (``tests/toy_method.py``) on mnist5k as an experiment file: importing it
registers the method, and ``method_file`` lets jepa-eval and load_encoder find it again:

  jepa-train --config tests/toy_method_experiment.py:data_dir=DIR,steps=4 --workdir W
  jepa-eval --workdir W --protocol linear
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import toy_method  # noqa: E402
from helpers import tiny_mnist_config  # noqa: E402

from jepa import config as config_lib  # noqa: E402


def get_config(arg=None):
    args = config_lib.parse_arg(arg, data_dir="", steps=4)
    config = tiny_mnist_config(
        args.data_dir,
        objective=toy_method.METHOD.name,
        method_file=os.path.abspath(toy_method.__file__),
        total_steps=args.steps,
        checkpoint_every=args.steps,
        **{"method.mlp.hidden": 32, "method.mlp.depth": 1},
    )
    return config_lib.finalize(config)
