"""Where the project and its local state live. Nothing here runs at import time."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

_MARKERS = ("dvc.yaml", "params.yaml", ".git")


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The project root: `$POSEOPS_ROOT`, else the nearest folder upward holding dvc.yaml or params.yaml."""
    env = os.environ.get("POSEOPS_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / m).exists() for m in _MARKERS[:2]):
            return folder
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def state_dir(root: str | os.PathLike | None = None) -> Path:
    """`.poseops/` under the project root (created on demand): MLflow store, Ray storage, logs."""
    path = Path(root).resolve() if root else repo_root()
    path = path / ".poseops"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fixtures_dir() -> Path | None:
    """The real-data fixtures (`$POSEOPS_FIXTURES` or `../shared/fixtures/real`), or None if absent."""
    env = os.environ.get("POSEOPS_FIXTURES")
    candidates = [Path(env)] if env else []
    checkout = Path(__file__).resolve().parents[2]  # the source checkout, for an editable install
    for root in dict.fromkeys((repo_root(), checkout)):
        candidates += [
            root.parent / "shared" / "fixtures" / "real",
            root / "shared" / "fixtures" / "real",
        ]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def append_run_log(
    name: str, record: dict[str, Any], root: str | os.PathLike | None = None
) -> Path:
    """Append one JSON line to `.poseops/logs/<name>.jsonl`, stamped with the time and host.

    Run facts (wall times, executors, hosts, Ray run paths, MLflow run ids) go here and to MLflow,
    never into a DVC-versioned output: those stay a pure function of their inputs.
    """
    logs = state_dir(root) / "logs"
    logs.mkdir(exist_ok=True)
    path = logs / f"{name}.jsonl"
    line = {**record, "at": round(time.time(), 3), "host": socket.gethostname()}
    with open(path, "a") as f:
        f.write(json.dumps(line, default=str) + "\n")
    return path
