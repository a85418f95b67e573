"""The command line ``jepa-train`` and ``jepa-eval`` share: their common flags (``--workdir``,
``--debug``, ``--verbose``, ``--config.KEY=VALUE``, ``-h`` / ``--help``), defined once, and one
parser (absl's) in which every mistake is one line naming the flag and what would be valid;
``--debug`` shows the traceback instead."""

from __future__ import annotations

import contextlib
import sys

from absl import flags

HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull", "-?")
DEBUG_HELP = "show tracebacks instead of one-line errors"


def define_common(values: flags.FlagValues, workdir_help: str, log_file: str) -> None:
    """``--workdir``, ``--debug`` and ``--verbose`` on ``values``."""
    flags.DEFINE_string("workdir", None, workdir_help, flag_values=values)
    flags.DEFINE_bool("debug", False, DEBUG_HELP, flag_values=values)
    flags.DEFINE_bool(
        "verbose",
        False,
        f"also print the libraries' log records (Orbax, TFDS, JAX); they always go to {log_file}",
        flag_values=values,
    )


def common_usage(workdir: str, config: str, log: str) -> str:
    """The ``--help`` lines of the common flags (``config``'s continuation lines indented)."""
    return (
        f"  --workdir DIR         {workdir}\n"
        f"  --config.KEY=VALUE    {config}\n"
        f"  --debug               {DEBUG_HELP}\n"
        f"  --verbose             print the libraries' log lines too (always in {log})\n"
    )


def is_debug(argv: list[str]) -> bool:
    return any(a in ("--debug", "--debug=true", "--debug=True") for a in argv[1:])


def help_or_usage(argv: list[str], text: str) -> None:
    """No arguments: the usage on stderr, exit 2; ``-h`` / ``--help``: on stdout, exit 0."""
    if len(argv) <= 1:
        print(text, end="", file=sys.stderr)
        raise SystemExit(2)
    if any(a in HELP_FLAGS for a in argv[1:]):
        print(text, end="")
        raise SystemExit(0)


@contextlib.contextmanager
def one_line_errors(tool: str, debug: bool, kinds: tuple):
    """Errors of ``kinds`` (whose message explains them) end the process with one line,
    ``TOOL: Type: message`` (a KeyError's message without the repr quotes)."""
    try:
        yield
    except kinds as e:
        if debug:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise SystemExit(f"{tool}: {type(e).__name__}: {message}") from None


def parse(argv, values: flags.FlagValues, tool: str, valid: str, overrides: dict | None = None):
    """Parse ``argv`` (program name first) into ``values``; returns the positional arguments.
    ``--some-flag`` is read as ``--some_flag``. With an ``overrides`` dict, ``--config.KEY=VALUE``
    arguments are collected into it as strings instead of being parsed (jepa-eval applies them
    to the config stored with a checkpoint); otherwise they are the config file flag's."""
    kept = [argv[0]]
    for arg in argv[1:]:
        if arg.startswith("--config.") and overrides is not None:
            key, eq, value = arg[len("--config.") :].partition("=")
            if not eq:
                raise SystemExit(f"{tool}: {arg}: config overrides need --config.KEY=VALUE")
            overrides[key] = value
            continue
        if arg.startswith("--") and not arg.startswith("--config."):
            name, eq, value = arg[2:].partition("=")
            arg = f"--{name.replace('-', '_')}{eq}{value}"
        kept.append(arg)
    try:
        rest = values(kept)
    except flags.Error as e:
        if is_debug(argv):
            raise
        raise SystemExit(f"{tool}: {parse_error(e, valid)}") from None
    if len(rest) > 1:
        raise SystemExit(f"{tool}: unexpected argument {rest[1]!r}; valid: {valid}")
    return rest


def parse_error(e: Exception, valid: str) -> str:
    """absl's flag error on one line: the offending flag, and what it accepts. An experiment
    whose ``get_config`` raised arrives with the traceback inside the message: its last line
    is the error."""
    text = str(e)
    if "Traceback (most recent call last)" in text:
        head = text.split(": Error whilst", 1)[0]  # "flag --config=FILE:ARGS"
        last = [line.strip() for line in text.splitlines() if line.strip()][-1]
        return f"{head}: {last}"
    text = " ".join(text.split())
    if text.startswith("Unknown command line flag"):
        text += f"; valid: {valid} (--help for more)"
    return text
