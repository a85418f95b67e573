"""``jepa-train``: pretrain a JEPA. Thin entry point; the logic lives in :mod:`jepa.train`.

  jepa-train --config experiments/mnist_ijepa.py --workdir /tmp/run [--config.total_steps=100]

Rerunning with the same ``--workdir`` resumes from its latest good checkpoint.
"""

from __future__ import annotations

import logging

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "experiments/NAME.py[:ARGS]", lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints, metrics and plots go (local or gs://)")
flags.DEFINE_string("coordinator", None, "multi-host: coordinator address host:port")
flags.DEFINE_integer("num_processes", None, "multi-host: number of processes")
flags.DEFINE_integer("process_id", None, "multi-host: this process's id")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from jepa import sharding

    sharding.maybe_initialize_distributed(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)
    import jax

    if jax.process_index() != 0:
        logging.getLogger().setLevel(logging.WARNING)
    from jepa import train

    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
