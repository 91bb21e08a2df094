"""MLflow runs for poseops: one experiment per family (`poseops-<family>`), flat params, epoch metrics.

with start_run("handmle", "train-smoke", tags={"stage": "train"}) as run:
    log_params_flat({"train": {"lr": 1e-3, "epochs": 2}})   # -> train.lr, train.epochs
    log_epoch_metrics({"loss": 0.4, "val": {"pck": 0.8}}, step=0)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow.entities import Experiment, Run
from mlflow.exceptions import MlflowException

from poseops.errors import DataError
from poseops.tracking import store

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value


def experiment_name(family: str) -> str:
    return f"poseops-{family}"


def ensure_experiment(family: str) -> Experiment:
    """The family's experiment, created if missing (local store: artifacts under `.poseops/mlartifacts`)."""
    name = experiment_name(family)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment
    location = store.artifact_location() if store.is_local_store() else None
    try:
        mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by another process
        pass
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        raise DataError(
            f"MLflow store {store.tracking_uri()}: could not create experiment {name!r}"
        )
    return experiment


@contextmanager
def start_run(
    family: str, run_name: str, tags: dict[str, Any] | None = None, nested: bool = False
) -> Iterator[mlflow.ActiveRun]:
    """A run in experiment `poseops-<family>`, tagged `family=<family>`; ends FAILED on an exception.

    `nested=True` makes it a child of the active run (tune trials under a sweep's parent run).
    """
    store.configure()
    experiment = ensure_experiment(family)
    all_tags = {"family": family, **{k: str(v) for k, v in (tags or {}).items()}}
    with mlflow.start_run(
        experiment_id=experiment.experiment_id, run_name=run_name, tags=all_tags, nested=nested
    ) as run:
        yield run


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > MAX_PARAM_LENGTH:
        text = text[: MAX_PARAM_LENGTH - 3] + "..."
    return text


def log_params_flat(params: Mapping[str, Any]) -> dict[str, str]:
    """Log nested params as dotted keys (lists as JSON, values cut to MLflow's 6000 chars); returns them."""
    flat = {k: _param_text(v) for k, v in flatten(params).items()}
    if flat:
        mlflow.log_params(flat)
    return flat


def log_epoch_metrics(metrics: Mapping[str, Any], step: int) -> dict[str, float]:
    """Log the numeric (nested: dotted) entries of `metrics` at `step`; non-numbers are skipped."""
    numbers = {
        k: float(v)
        for k, v in flatten(metrics).items()
        if (isinstance(v, (int, float)) and not isinstance(v, bool)) or _is_scalar_tensor(v)
    }
    numbers = {k: v for k, v in numbers.items() if not math.isnan(v)}
    if numbers:
        mlflow.log_metrics(numbers, step=step)
    return numbers


def _is_scalar_tensor(value: Any) -> bool:
    """numpy / torch scalars (duck-typed: no torch import here)."""
    return hasattr(value, "item") and getattr(value, "ndim", 1) == 0


def log_artifact_file(path: str | os.PathLike, artifact_path: str | None = None) -> None:
    """Attach a local file (or folder) to the active run."""
    if os.path.isdir(path):
        mlflow.log_artifacts(str(path), artifact_path)
    else:
        mlflow.log_artifact(str(path), artifact_path)


def find_run(family: str, run_id: str) -> Run:
    """The run `run_id`, which must belong to experiment `poseops-<family>`."""
    store.configure()
    try:
        run = mlflow.get_run(run_id)
    except MlflowException:
        raise DataError(f"MLflow run {run_id!r} not found in {store.tracking_uri()}") from None
    experiment = mlflow.get_experiment(run.info.experiment_id)
    if experiment.name != experiment_name(family):
        raise DataError(
            f"MLflow run {run_id!r} belongs to experiment {experiment.name!r}, not {experiment_name(family)!r}"
        )
    return run


WEIGHTS_TAG = "weights_sha256"


def find_training_run(family: str, weights_sha256: str) -> str | None:
    """The id of the newest finished run of `poseops-<family>` tagged with these weights' SHA-256, or
    None (e.g. an empty store on a fresh machine). Published checkpoints hold no run ids (they would make
    identical weights differ), so evaluation and promotion find their training run by content."""
    store.configure()
    experiment = mlflow.get_experiment_by_name(experiment_name(family))
    if experiment is None:
        return None
    found = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string=f"tags.{WEIGHTS_TAG} = '{weights_sha256}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return found[0].info.run_id if found else None
