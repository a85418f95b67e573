"""What the terminal shows: jepa's own messages and its progress bars, nothing else.

Orbax, TFDS, grain and JAX log dozens of INFO lines per run (handler registration, backend
probing, write throughput). They matter when something goes wrong, not while a run goes well,
so they go to a log file in the workdir; ``--verbose`` sends them to the terminal too. Records
at ERROR and above reach the terminal whoever logs them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from absl import logging as absl_logging
from tqdm import tqdm

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
LOG_FORMAT = "%(asctime)s %(levelname)s %(filename)s:%(lineno)d] %(message)s"  # the log file's


class _AboveProgressBars(logging.Handler):
    """Writes to stderr through tqdm, so a message lands above a running progress bar instead
    of inside its line: INFO as the bare message, other levels prefixed with their name."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno != logging.INFO:
                message = f"{record.levelname}: {message}"
            tqdm.write(message, file=sys.stderr)
        except Exception:
            self.handleError(record)


def configure(log_file: str | None, verbose: bool = False, level: int = logging.INFO) -> None:
    """Routes every log record: to ``log_file`` (all of them, appended; None for no file) and
    to stderr (jepa's own and errors, or all of them when ``verbose``).

    Call it once at the start of a command, before JAX picks its backend, so that its probing
    ("Unable to initialize backend 'tpu'") is routed too. ``level`` is the terminal's floor for
    jepa's own records (multi-host: WARNING on every process but the first).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # XLA's C++ INFO/WARNING lines
    absl_logging.set_verbosity(absl_logging.INFO)  # absl records flow on to the handlers below
    logging.captureWarnings(True)

    terminal = _AboveProgressBars()
    terminal.setLevel(logging.INFO if verbose else level)
    if not verbose:  # jepa's records (by the file that logged them) and any at ERROR or above
        terminal.addFilter(
            lambda r: r.levelno >= logging.ERROR or r.pathname.startswith(PACKAGE_DIR)
        )
    handlers = [terminal]
    # No local file for a gs:// workdir (library records are then dropped unless verbose); an
    # unwritable workdir is reported by the command's own checks, with its path.
    if log_file is not None and "://" not in log_file:
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
            handlers.append(logging.FileHandler(log_file))
    # The only handlers: those a previous call, absl or a library installed are removed.
    logging.basicConfig(level=logging.INFO, handlers=handlers, format=LOG_FORMAT, force=True)
