"""Ray Train wiring: fit a family on its derived dataset, log to MLflow, publish the chosen checkpoint."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from poseops.config import FamilyParams
from poseops.families import Family
from poseops.paths import state_dir
from poseops.ray_cluster import attach_ray
from poseops.train.loop import train_loop_per_worker


def make_loop_config(
    family: Family,
    fam: FamilyParams,
    dataset_url: str,
    storage_path: str | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Plain data handed to every Ray Train worker. `storage_path` and `run_name` say where the run's
    checkpoints go, so that a restarted worker group finds the newest one (see train.loop)."""
    return {
        "storage_path": storage_path,
        "run_name": run_name,
        "family": family.name,
        "task": family.task,
        "val_metric": family.val_metric,
        "model_name": family.model,
        "model_config": fam.model.model_dump(mode="json"),
        "dataset_url": str(dataset_url),
        # crop side of image models; None for models without one (the lifter's input is T frames of 2D)
        "input_size": getattr(fam.model, "input_size", None),
        "data": fam.data.model_dump(mode="json"),
        "threads_per_worker": max(1, int(fam.train.cpus_per_worker)),
        **fam.train.model_dump(
            mode="json",
            exclude={
                "num_workers",
                "cpus_per_worker",
                "gpus_per_worker",
                "max_failures",
                "storage_path",
                "placement_strategy",
            },
        ),
    }


def storage_for(fam: FamilyParams, storage_path: str | None = None) -> str:
    """Where Ray Train keeps a family's runs: the argument, else `train.storage_path`, else
    .poseops/ray_results (a folder or an fsspec URL such as s3://bucket/prefix)."""
    return storage_path or fam.train.storage_path or str(state_dir() / "ray_results")


def ray_storage(storage_path: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Ray Train's RunConfig: a local folder as it is; an fsspec
    URL (s3://bucket/prefix, ...) as its path inside the fsspec filesystem, wrapped for pyarrow, so Ray
    Train reads and writes checkpoints through fsspec (s3fs for S3) like the rest of the project.

    The filesystem travels to the Train workers pickled without credentials: each process takes them
    from its own environment (AWS_* variables, a profile or an instance role)."""
    from fsspec.implementations.local import LocalFileSystem

    from poseops.storage import filesystem

    fs, path = filesystem(storage_path)
    if isinstance(fs, LocalFileSystem):
        return storage_path, None
    import pyarrow.fs

    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def latest_run_name(storage_path: str, family_name: str) -> str:
    """The newest run of a family under `storage_path` (run names are `<family>-<UTC time>`, so the
    newest sorts last); CheckpointError when there is none to resume."""
    from poseops.errors import CheckpointError
    from poseops.storage import filesystem

    fs, root = filesystem(storage_path)
    try:
        entries = fs.ls(root, detail=False)
    except FileNotFoundError:
        entries = []
    names = sorted(
        name
        for name in (entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)
        if name.startswith(f"{family_name}-")
    )
    if not names:
        raise CheckpointError(f"{storage_path}: no run of family {family_name!r} to resume")
    return names[-1]


def last_train_state(storage_path: str, run_name: str) -> dict[str, Any] | None:
    """The newest checkpoint's `train_state.json` of a run (the one with the highest epoch), or None
    when the run has written none (poseops.train.state describes the file)."""
    from poseops.storage import filesystem
    from poseops.train.state import checkpoint_states

    fs, root = filesystem(storage_path)
    states = [state for state, _ in checkpoint_states(fs, f"{root.rstrip('/')}/{run_name}")]
    return max(states, key=lambda s: s["epoch"], default=None)


def refuse_finished_run(storage_path: str, run_name: str, fam: FamilyParams) -> None:
    """CheckpointError when a run to resume has already finished: its last checkpoint is after the last
    epoch of `train.epochs`, or after the epoch where its validation plateaued. Raising `train.epochs`
    makes the same run resumable again."""
    from poseops.errors import CheckpointError

    state = last_train_state(storage_path, run_name)
    if state is None:
        return
    history = state.get("history") or [{}]
    plateaued = bool(history[-1].get("plateau"))
    if state["epoch"] >= fam.train.epochs or plateaued:
        why = (
            f"its validation plateaued after epoch {state['epoch']}"
            if plateaued and state["epoch"] < fam.train.epochs
            else f"it trained {state['epoch']} of train.epochs = {fam.train.epochs} epochs"
        )
        raise CheckpointError(
            f"{storage_path}/{run_name}: the run already finished ({why}); --resume has nothing "
            "to continue. Train anew without --resume, or raise train.epochs to train it further."
        )


def new_run_name(family_name: str) -> str:
    """`<family>-<UTC time to the millisecond>`: a fresh name (Ray Train would restore a run of an
    existing name), sorting in time order."""
    now = time.time()
    return f"{family_name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{int(now * 1000) % 1000:03d}"


def fit(
    family: Family,
    fam: FamilyParams,
    dataset_url: str,
    run_name: str | None = None,
    storage_path: str | None = None,
    resume: bool = False,
    callbacks: list | None = None,
    loop: Callable[[dict], None] = train_loop_per_worker,
):
    """Run Ray Train; returns the ray.train.Result (best checkpoint by the family's `val_metric`).

    Each epoch's checkpoint goes to `storage_for(fam, storage_path)`; a failed worker group restarts
    from the latest one up to `train.max_failures` times. `resume`: continue the family's newest run
    there (Ray Train restores a run of the same name and storage path from its last checkpoint); a
    run that already finished is refused with a CheckpointError before Ray starts.
    `callbacks`: ray.train.UserCallback instances (run in the Train controller); `loop`: the worker
    loop (benchmarks wrap the standard one).
    """
    storage = storage_for(fam, storage_path)
    if run_name is None:
        run_name = latest_run_name(storage, family.name) if resume else new_run_name(family.name)
    loop_config = make_loop_config(family, fam, dataset_url, storage, run_name)
    if resume:
        refuse_finished_run(storage, run_name, fam)
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    attach_ray(include_dashboard=None)
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    path, storage_filesystem = ray_storage(storage)
    train = fam.train
    resources = {"CPU": train.cpus_per_worker}
    if train.use_gpu:
        resources["GPU"] = train.gpus_per_worker
    trainer = TorchTrainer(
        loop,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if train.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=train.num_workers,
            use_gpu=train.use_gpu,
            resources_per_worker=resources,
            placement_strategy=train.placement_strategy,
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=path,
            storage_filesystem=storage_filesystem,
            failure_config=FailureConfig(max_failures=train.max_failures),
            callbacks=callbacks,
            checkpoint_config=CheckpointConfig(
                num_to_keep=1,  # the best; Ray Train keeps the latest too, to resume from
                checkpoint_score_attribute=family.val_metric,
                checkpoint_score_order=family.metric_mode,
            ),
        ),
    )
    return trainer.fit()


def best_checkpoint(result):
    """The best `ray.train.Checkpoint` of a Result (by the val metric; CheckpointConfig keeps only it)."""
    best = result.best_checkpoints[0][0] if result.best_checkpoints else result.checkpoint
    if best is None:
        from poseops.errors import CheckpointError

        raise CheckpointError(f"training run {result.path} reported no checkpoint")
    return best


def history(result) -> list[dict[str, float]]:
    """Per-epoch metrics as a list of dicts, from the latest checkpoint's train_state.json (every epoch
    of the run, resumed ones included), since Ray Train V2's metrics dataframe keeps the last report
    only; without a checkpoint, that dataframe."""
    from poseops.train.state import STATE

    latest = result.checkpoint
    if latest is not None:
        with latest.filesystem.open_input_stream(f"{latest.path}/{STATE}") as stream:
            return json.loads(stream.read())["history"]
    frame = result.metrics_dataframe
    keys = [
        k
        for k in frame.columns
        if k in ("epoch", "train_loss", "lr", "plateau") or k.startswith("val_")
    ]
    return frame[keys].to_dict("records")
