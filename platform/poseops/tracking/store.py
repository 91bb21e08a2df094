"""Where MLflow keeps runs, models and artifacts.

`$MLFLOW_TRACKING_URI` wins (a server such as `http://127.0.0.1:5000`, or another sqlite file);
otherwise a sqlite database under the project's `.poseops/`. MLflow 3 refuses the old `./mlruns`
file store, so nothing here ever points at it. Nothing runs at import time: call `configure()`.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

import mlflow

from poseops.paths import state_dir

_SQLITE = "sqlite:///"


def tracking_uri(root: str | os.PathLike | None = None) -> str:
    """`$MLFLOW_TRACKING_URI` if set, else `sqlite:///<repo>/.poseops/mlflow.db` (absolute)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return _SQLITE + str(state_dir(root) / "mlflow.db")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI, or None for any other store (a server, postgres)."""
    if not uri.startswith(_SQLITE):
        return None
    return Path(unquote(uri[len(_SQLITE) :].split("?", 1)[0])).resolve()


def artifact_location(root: str | os.PathLike | None = None) -> str:
    """Artifact folder for experiments created on a local sqlite store: `mlartifacts/` beside the db.

    For the default store that is `<repo>/.poseops/mlartifacts`. (A tracking server picks its own.)
    """
    db = sqlite_path(tracking_uri(root))
    folder = db.parent / "mlartifacts" if db is not None else state_dir(root) / "mlartifacts"
    return str(folder)


def is_local_store(uri: str | None = None) -> bool:
    """True when the store is a local sqlite file (so experiments get `artifact_location()`)."""
    return sqlite_path(uri or tracking_uri()) is not None


def configure(root: str | os.PathLike | None = None) -> str:
    """Point MLflow's tracking and registry at `tracking_uri(root)`; returns that URI."""
    uri = tracking_uri(root)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri
