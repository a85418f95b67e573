"""``jepa-train``: pretrain a JEPA. Thin entry point; the logic lives in :mod:`jepa.train`.

  jepa-train --config experiments/mnist_ijepa.py --workdir /tmp/run [--config.total_steps=100]

Rerunning with the same ``--workdir`` resumes from its latest good checkpoint. Exit status: 0 when
training finished or was stopped by SIGTERM/SIGINT (a checkpoint was saved at the step reached;
rerun to continue), 1 on an error, e.g. a non-finite loss (the message names the step).
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
flags.DEFINE_enum(
    "distributed",
    None,
    ["auto", "on", "off"],
    "multi-host: auto (default, or $JEPA_DISTRIBUTED) starts JAX's distributed runtime under a "
    "SLURM step of several tasks or on a TPU pod listing its workers; on: always, values "
    "auto-detected by JAX (TPU VM pods); off: never. --coordinator etc. override.",
)
flags.DEFINE_bool(
    "verbose",
    False,
    "also print the libraries' log records (Orbax, TFDS, JAX) to the terminal; they always go "
    "to WORKDIR/train.log",
)
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import os

    from jepa import console, sharding

    console.configure(os.path.join(FLAGS.workdir, "train.log"), verbose=FLAGS.verbose)

    sharding.maybe_initialize_distributed(
        FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id, FLAGS.distributed
    )
    import jax

    if jax.process_index() != 0:
        # Process 0 alone reports progress (metrics, plots and the progress bar are its too);
        # the others still report warnings and errors.
        console.configure(None, verbose=FLAGS.verbose, level=logging.WARNING)
    from jepa import checkpointing, train
    from jepa.data import records

    try:
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (
        train.NonFiniteLossError,
        checkpointing.CheckpointCorruptError,
        records.TooManyBadRecordsError,
    ) as e:
        # Faults the message explains fully: exit 1 with it, without a traceback.
        raise SystemExit(f"jepa-train: {type(e).__name__}: {e}") from None


def unknown_override(argv: list[str]) -> str | None:
    """The first ``--config.KEY=VALUE`` whose KEY is not a config key, as a message naming it,
    the closest key and the valid keys at that level (None when every key exists)."""
    import difflib

    from jepa import config as config_lib

    base = config_lib.base_config()
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        node, prefix = base, ""
        for part in arg[len("--config.") :].split("=", 1)[0].split("."):
            keys = sorted(node.keys()) if hasattr(node, "keys") else []
            if part not in keys:
                close = difflib.get_close_matches(part, keys, n=1)
                hint = f"did you mean --config.{prefix}{close[0]}? " if close else ""
                where = f"under {prefix[:-1]}" if prefix else "at the top level"
                return f"unknown config key {prefix}{part} ({arg}); {hint}valid {where}: {keys}"
            node, prefix = node[part], f"{prefix}{part}."
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, except that an override of a key the config lacks (ml_collections raises
    a bare AttributeError for it) becomes a one-line error naming the key and the valid ones."""
    try:
        return FLAGS(argv)
    except (AttributeError, KeyError):
        message = unknown_override(argv)
        if message is None:
            raise
        raise SystemExit(f"jepa-train: {message}") from None


def run():
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
