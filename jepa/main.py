"""``jepa-train``: pretrain a JEPA. Thin entry point; the logic lives in :mod:`jepa.train`.

  jepa-train --config experiments/mnist_ijepa.py --workdir /tmp/run [--config.total_steps=100]

Rerunning with the same ``--workdir`` resumes from its latest good checkpoint. Exit status: 0 when
training finished or was stopped by SIGTERM/SIGINT (a checkpoint was saved at the step reached;
rerun to continue), 1 on an error, e.g. a non-finite loss (the message names the step).
"""

from __future__ import annotations

import difflib
import glob
import importlib.util
import logging
import os

import jax
from absl import app, flags
from ml_collections import config_flags

from jepa import checkpointing, cli, console, sharding, train
from jepa import config as config_lib

WORKDIR_HELP = "checkpoints, metrics and plots (local or gs://)"
CONFIG_HELP = "override any config key, e.g. --config.batch_size=64"
USAGE = f"""\
usage: jepa-train --config experiments/NAME.py[:ARGS] --workdir DIR [--config.KEY=VALUE ...]
                  [--debug] [multi-host flags]

Pretrain a JEPA. Rerunning with the same --workdir resumes from its latest good checkpoint.

flags:
  --config FILE[:ARGS]  an experiment in experiments/, with its arguments, e.g.
                        experiments/mnist_ijepa.py:steps=300
{cli.common_usage(WORKDIR_HELP, CONFIG_HELP, "WORKDIR/train.log")}\
  --coordinator, --num_processes, --process_id, --distributed
                        multi-host runs (jepa/sharding.py)

examples:
  jepa-train --config experiments/mnist_ijepa.py --workdir runs/mnist
  jepa-data ./my_images --name my_images --data_dir ./tfds --size 32 --test_fraction 0.2
  jepa-train --config experiments/mnist_ijepa.py --workdir runs/mine \\
      --config.data.dataset=my_images --config.data.data_dir=./tfds \\
      --config.model.image_size=32 --config.model.channels=3
"""
VALID_FLAGS = (
    "--config --workdir --config.KEY=VALUE --debug --verbose --coordinator --num_processes "
    "--process_id --distributed"
)


def define_flags(values: flags.FlagValues, sys_argv: list[str] | None = None) -> None:
    """jepa-train's flags on ``values`` (``sys_argv``: where config_flags reads the
    ``--config.*`` overrides; None: ``sys.argv``)."""
    config_flags.DEFINE_config_file(
        "config",
        None,
        "experiments/NAME.py[:ARGS]",
        flag_values=values,
        lock_config=True,
        sys_argv=sys_argv,
    )
    cli.define_common(values, WORKDIR_HELP, "WORKDIR/train.log")
    flags.DEFINE_string(
        "coordinator", None, "multi-host: coordinator address host:port", flag_values=values
    )
    flags.DEFINE_integer(
        "num_processes", None, "multi-host: number of processes", flag_values=values
    )
    flags.DEFINE_integer("process_id", None, "multi-host: this process's id", flag_values=values)
    flags.DEFINE_enum(
        "distributed",
        None,
        ["auto", "on", "off"],
        "multi-host: auto (default, or $JEPA_DISTRIBUTED) starts JAX's distributed runtime under "
        "a SLURM step of several tasks or on a TPU pod listing its workers; on: always, values "
        "auto-detected by JAX (TPU VM pods); off: never. --coordinator etc. override.",
        flag_values=values,
    )


define_flags(flags.FLAGS)
FLAGS = flags.FLAGS
# Errors whose message says what is wrong and what is valid: one line, no traceback (--debug
# shows it). Anything else is a bug and keeps its traceback.
EXPLAINED = (ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError)


def main(argv):
    del argv
    console.configure(os.path.join(FLAGS.workdir, "train.log"), verbose=FLAGS.verbose)

    sharding.maybe_initialize_distributed(
        FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id, FLAGS.distributed
    )
    if jax.process_index() != 0:
        # Process 0 alone reports progress (metrics, plots and the progress bar are its too);
        # the others still report warnings and errors.
        console.configure(None, verbose=FLAGS.verbose, level=logging.WARNING)
    # Faults the message explains fully: exit 1 with it, without a traceback.
    faults = (train.NonFiniteLossError, checkpointing.CheckpointCorruptError, *EXPLAINED)
    with cli.one_line_errors("jepa-train", FLAGS.debug, faults):
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


def unknown_override(argv: list[str]) -> str | None:
    """The first ``--config.KEY=VALUE`` whose KEY is not a key of the experiment's config, as a
    message naming it, the closest key and the valid keys at that level (None when every key
    exists)."""
    base = experiment_config(argv)
    for arg in [a for a in argv if a.startswith("--config.")]:
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


def parse_flags(argv: list[str], values: flags.FlagValues | None = None) -> list[str]:
    """The shared parsing (``cli``: usage, one-line errors), plus what loading the experiment
    can meet: a missing file, and an override of a key the config lacks (ml_collections raises
    a bare AttributeError for it), named with the valid ones."""
    values = FLAGS if values is None else values
    cli.help_or_usage(argv, USAGE)
    problem = missing_experiment(argv)
    if problem:
        raise SystemExit(f"jepa-train: {problem}")
    explained = EXPLAINED + (AttributeError, OSError, SyntaxError)
    with cli.one_line_errors("jepa-train", cli.is_debug(argv), explained):
        try:
            rest = cli.parse(argv, values, "jepa-train", VALID_FLAGS)
            values["config"].value  # noqa: B018 - loads the experiment: its errors are raised here
        except (AttributeError, KeyError):
            message = unknown_override(argv)
            if message is not None:
                raise SystemExit(f"jepa-train: {message}") from None
            raise
    missing = [f"--{name}" for name in ("config", "workdir") if values[name].value is None]
    if missing:
        raise SystemExit(
            f"jepa-train: {' and '.join(missing)} required; e.g. jepa-train --config "
            "experiments/mnist_ijepa.py --workdir runs/mnist (--help for more)"
        )
    return rest


def config_arg(argv: list[str]) -> str | None:
    """The value of ``argv``'s ``--config`` (``FILE[:ARGS]``), if given."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg[len("--config=") :]
    return None


def experiment_config(argv: list[str]):
    """``argv``'s ``--config FILE[:ARGS]`` before the overrides (no file: the shared core)."""
    value = config_arg(argv)
    if value is None:
        return config_lib.base_config()
    path, _, args = value.partition(":")
    spec = importlib.util.spec_from_file_location("experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(args or None)


def missing_experiment(argv: list[str]) -> str | None:
    """Why the ``--config`` file of ``argv`` cannot be read (None when it exists or is not
    given), with the experiments there are."""
    value = config_arg(argv)
    path = value.split(":", 1)[0] if value is not None else None
    if path is None or os.path.isfile(path):
        return None
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        folder = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments")
    known = sorted(glob.glob(os.path.join(folder, "*.py")))
    close = difflib.get_close_matches(path, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"--config {value}: no such file {path!r}; {hint}valid: {known}"


def run():
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
