"""Ray Train wiring: fit a family on its derived dataset, log to MLflow, publish the chosen checkpoint."""

from __future__ import annotations

import json
import os
from typing import Any

from poseops.config import FamilyParams
from poseops.families import Family
from poseops.paths import state_dir
from poseops.train.loop import train_loop_per_worker


def make_loop_config(family: Family, fam: FamilyParams, dataset_url: str) -> dict[str, Any]:
    """Plain data handed to every Ray Train worker."""
    return {
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
        **fam.train.model_dump(mode="json", exclude={"num_workers", "cpus_per_worker"}),
    }


def ensure_ray() -> None:
    """Attach to `$RAY_ADDRESS` when set (the Makefile's shared instance), else start a local one."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local")


def fit(
    family: Family,
    fam: FamilyParams,
    dataset_url: str,
    run_name: str,
    storage_path: str | None = None,
):
    """Run Ray Train; returns the ray.train.Result (best checkpoint by the family's `val_metric`)."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    ensure_ray()
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=make_loop_config(family, fam, dataset_url),
        scaling_config=ScalingConfig(
            num_workers=fam.train.num_workers,
            resources_per_worker={"CPU": fam.train.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path or str(state_dir() / "ray_results"),
            checkpoint_config=CheckpointConfig(
                num_to_keep=1,
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
    """Per-epoch metrics as a list of dicts: rank 0's last report carries every epoch (`history`, JSON),
    since Ray Train V2's metrics dataframe keeps the last report only."""
    if result.metrics and "history" in result.metrics:
        return json.loads(result.metrics["history"])
    frame = result.metrics_dataframe
    keys = [
        k
        for k in frame.columns
        if k in ("epoch", "train_loss", "lr", "plateau") or k.startswith("val_")
    ]
    return frame[keys].to_dict("records")
