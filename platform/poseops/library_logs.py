"""Keep Ray's and MLflow's log noise off the console: it goes, whole, to `.poseops/logs/<name>.log`.

A newcomer running the demo or a stage sees poseops' own lines (stages, progress, figures); the
libraries' lines are still all kept, in the log file. Inside `library_logs_to_file`:

- the `ray` and `mlflow` loggers (and their children) write to the file only, also when the library
  is imported later (Ray adds its console handler at import: that call is ignored meanwhile), and
  MLflow is told not to configure its own console logging; Python warnings go to the file too;
- lines Ray forwards from its workers and actors ("(RayTrainWorker pid=123) ...") go to the file;
  those a worker printed to its stdout (poseops' per-epoch progress) are also shown, without the
  prefix; what a worker wrote to stderr (library logs) is not;
- everything else written to stdout/stderr (poseops' console, tracebacks) reaches the console as
  before, and is copied to the file.

`tests/unit/test_library_logs.py` shows each point.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from poseops.paths import state_dir

LIBRARY_LOGGERS = ("ray", "mlflow", "alembic", "urllib3", "filelock", "py.warnings")
# Environment defaults for this process and the processes it starts (Ray's local workers, DVC stages).
QUIET_ENV = {
    "MLFLOW_CONFIGURE_LOGGING": "false",  # MLflow leaves its loggers to us (they reach the file)
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # no "Downloading artifacts" bars
}
# "(RayTrainWorker pid=25408)" or "(ServeReplica:app:Ingress pid=7, ip=10.0.0.2)", maybe in colour
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_WORKER_PREFIX = re.compile(r"^\([^()\s]+ pid=\d+(?:, ip=[0-9a-fA-F.:]+)?\)\s?")


def log_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """`.poseops/logs/<name>.log` of the project at `root` (default: the current project)."""
    return state_dir(root) / "logs" / f"{name}.log"


class _ConsoleFilter:
    """A text stream in front of stdout or stderr: every line goes to the log file; lines Ray
    forwarded from a worker reach the console only from a worker's stdout (`show_workers`), without
    their prefix; any other line reaches the console unchanged."""

    def __init__(self, console: TextIO, log: TextIO, show_workers: bool):
        self.console, self.log, self.show_workers = console, log, show_workers
        self._partial = ""

    def write(self, text: str) -> int:
        self.log.write(text)
        for piece in text.splitlines(keepends=True):
            if not self._partial and not _ANSI.sub("", piece).startswith("("):
                # cannot open a worker line: straight through, so live displays (spinners) stay live
                self.console.write(piece)
                continue
            self._partial += piece
            if self._partial.endswith("\n"):
                self._console_line(self._partial)
                self._partial = ""
        return len(text)

    def _console_line(self, line: str) -> None:
        match = _WORKER_PREFIX.match(_ANSI.sub("", line))
        if match is None:
            self.console.write(line)
        elif self.show_workers:
            self.console.write(_ANSI.sub("", line)[match.end() :])

    def flush(self) -> None:
        if self._partial:
            self._console_line(self._partial)
            self._partial = ""
        self.log.flush()
        self.console.flush()

    def isatty(self) -> bool:  # rich asks, to decide on colours and live displays
        return self.console.isatty()

    def fileno(self) -> int:  # subprocesses and faulthandler write to the real stream
        return self.console.fileno()

    def __getattr__(self, name: str):
        return getattr(self.console, name)


def _ignore_handler(handler: logging.Handler) -> None:
    """Stands in for a library logger's `addHandler` while its records go to the file."""


@contextmanager
def library_logs_to_file(name: str, root: str | os.PathLike | None = None) -> Iterator[Path]:
    """Send library logs (Ray, MLflow, warnings) to `.poseops/logs/<name>.log` instead of the console
    for the duration of the block; yields the log file's path (appended to, never truncated)."""
    path = log_path(name, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", encoding="utf-8", buffering=1)  # closed in the finally below
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    env_before = {key: os.environ.get(key) for key in QUIET_ENV}
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    saved = {}
    for logger_name in LIBRARY_LOGGERS:
        logger = logging.getLogger(logger_name)
        saved[logger_name] = (
            logger.handlers[:],
            logger.propagate,
            logger.level,
            logger.__dict__.get("addHandler"),
        )
        logger.handlers[:] = [handler]
        logger.propagate = False
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler = _ignore_handler  # type: ignore[method-assign]
    root_logger = logging.getLogger()
    root_logger.addHandler(handler)  # other libraries' warnings: the file, not Python's last resort
    logging.captureWarnings(True)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = _ConsoleFilter(stdout, log, show_workers=True)
    sys.stderr = _ConsoleFilter(stderr, log, show_workers=False)
    try:
        yield path
    finally:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _ConsoleFilter):
                stream.flush()
        sys.stdout, sys.stderr = stdout, stderr
        logging.captureWarnings(False)
        root_logger.removeHandler(handler)
        for logger_name, (handlers, propagate, level, add_handler) in saved.items():
            logger = logging.getLogger(logger_name)
            del logger.addHandler
            if add_handler is not None:
                logger.addHandler = add_handler  # type: ignore[method-assign]
            logger.handlers[:] = handlers
            logger.propagate, logger.level = propagate, level
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        handler.close()
        log.close()
