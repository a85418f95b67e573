"""``jepa-eval``: evaluate a pretrained checkpoint (flags: ``USAGE``; protocols: the evaluators
registered in ``base.py``). Prints progress, then one final JSON line, also written to
``DIR/eval/<protocol>_step<N>.json``."""

from __future__ import annotations

import json
import os
import sys

from absl import flags

from jepa import cli, console, hub
from jepa.checkpointing import CheckpointCorruptError
from jepa.evaluate import base
from jepa.plots import plot_probe_vs_step

WORKDIR_HELP = "the run (its checkpoints/), from any working directory"
CONFIG_HELP = """override the stored config, e.g. --config.eval.pooling=flatten;
                        --config.eval.dataset=NAME --config.eval.data_dir=DIR probe another
                        (labelled) dataset than the one pretrained on"""
USAGE = f"""\
usage: jepa-eval --workdir DIR [--step N | --all-steps] [--protocol P] [--baselines]
                 [--level N] [--config.KEY=VALUE ...] [--debug]

Evaluate the frozen encoder of a jepa-train run; prints progress, then one JSON line.

flags:
{cli.common_usage(WORKDIR_HELP, CONFIG_HELP, "DIR/eval/eval.log")}\
  --step N              this checkpoint step (default: the newest that reads)
  --all-steps           every step, plus DIR/eval/probe_vs_step.png
  --protocol P          linear (default), knn, attentive, fewshot, levels, energy, transfer,
                        planning, or one added with jepa.evaluate.base.register
  --baselines           also probe raw pixels and a random encoder (planning: random
                        actions and the true dynamics)
  --level N             a hierarchy run: level N's report (--protocol levels)

examples:
  jepa-eval --workdir runs/mnist
  jepa-eval --workdir runs/frames --config.eval.dataset=pics --config.eval.data_dir=./tfds
"""
VALID_FLAGS = (
    "--workdir --step --protocol --level --all-steps --baselines --debug --verbose "
    "--config.KEY=VALUE"
)


def parse_args(argv: list[str]) -> tuple[dict, dict]:
    """(flags, ``--config.KEY=VALUE`` overrides) of a jepa-eval command line (no program
    name); a bad one ends in a one-line ``SystemExit``."""
    values = flags.FlagValues()
    cli.define_common(values, WORKDIR_HELP, "DIR/eval/eval.log")
    flags.DEFINE_string("step", None, "checkpoint step", flag_values=values)
    flags.DEFINE_string("protocol", None, "evaluator name", flag_values=values)
    flags.DEFINE_string("level", None, "hierarchy level", flag_values=values)
    flags.DEFINE_bool("all_steps", False, "every saved step", flag_values=values)
    flags.DEFINE_bool("baselines", False, "pixels and a random encoder too", flag_values=values)
    overrides = {}
    cli.parse(["jepa-eval", *argv], values, "jepa-eval", VALID_FLAGS, overrides)
    parsed = {name: values[name].value for name in values}
    if not parsed["workdir"]:
        raise SystemExit(
            "jepa-eval: --workdir is required; valid: the --workdir of a jepa-train run"
        )
    for key in ("step", "level"):
        if parsed[key] is not None:
            try:
                parsed[key] = int(parsed[key])
            except ValueError:
                raise SystemExit(f"jepa-eval: --{key}={parsed[key]!r}; valid: an integer") from None
    parsed["protocol"] = parsed["protocol"] or (
        "levels" if parsed["level"] is not None else "linear"
    )
    try:
        base.lookup(parsed["protocol"])
    except ValueError as e:
        raise SystemExit(f"jepa-eval: {e}") from None
    return parsed, overrides


def main(argv: list[str] | None = None) -> list[dict]:
    """``jepa-eval``: a bad command line, run, config or dataset ends in a one-line message
    (``SystemExit``); ``--debug`` shows the traceback instead."""
    argv = sys.argv[1:] if argv is None else argv
    cli.help_or_usage(["jepa-eval", *argv], USAGE)
    explained = (ValueError, KeyError, FileNotFoundError, CheckpointCorruptError)
    with cli.one_line_errors("jepa-eval", cli.is_debug(["jepa-eval", *argv]), explained):
        return evaluate(*parse_args(argv))


def evaluate(flags: dict, overrides: dict) -> list[dict]:
    """What the parsed command line asks for; the results, last one printed as JSON."""
    workdir, protocol = flags["workdir"], flags["protocol"]
    steps = hub.open_run(workdir).all_steps() if flags["all_steps"] else [flags["step"]]
    options = dict(baselines=flags["baselines"], level=flags["level"], overrides=overrides)
    results = []
    for step in steps:
        config, encoder = base.load_run(workdir, step, overrides)
        evaluator = base.lookup(protocol)(config, workdir, **options)
        result = {"protocol": protocol, "step": encoder.step, **evaluator.run(encoder)}
        out_dir = os.path.join(workdir, "eval")
        os.makedirs(out_dir, exist_ok=True)
        stem = getattr(evaluator, "stem", protocol)
        with open(os.path.join(out_dir, f"{stem}_step{result['step']}.json"), "w") as f:
            json.dump(result, f, indent=1)
        results.append(result)
        if flags["all_steps"]:
            print(json.dumps(result), file=sys.stderr, flush=True)
    if flags["all_steps"] and all("top1" in r for r in results):
        plot_probe_vs_step(workdir, results)
    print(json.dumps(results[-1]), flush=True)
    return results


def run():
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
