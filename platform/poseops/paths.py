"""Where the project and its local state live. Nothing here runs at import time."""

from __future__ import annotations

import os
from pathlib import Path

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
        candidates += [root.parent / "shared" / "fixtures" / "real", root / "shared" / "fixtures" / "real"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None
