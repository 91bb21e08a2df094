"""What a training run leaves for people: MLflow params, per-epoch metrics, checkpoint, curves."""

from __future__ import annotations

from pathlib import Path

from poseops.config import FamilyParams
from poseops.families import Family
from poseops.storage import write_json_atomic


def log_training_run(
    family: Family,
    fam: FamilyParams,
    best_dir: Path,
    epochs: list[dict],
    plots_dir: Path,
    tags: dict | None = None,
) -> str:
    """Log one finished training run to MLflow; write the training curve for DVC plots. Returns the run id.

    `tags`: extra run tags, e.g. the published weights' SHA-256 (`runs.WEIGHTS_TAG`), by which
    evaluation and promotion find this run again."""
    from poseops.tracking.runs import (
        log_artifact_file,
        log_epoch_metrics,
        log_params_flat,
        start_run,
    )
    from poseops.viz.curves import plot_panels

    plots_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(plots_dir / "train_history.json", epochs)
    xs = [int(e["epoch"]) for e in epochs]
    plot_panels(
        plots_dir / "train_curves.png",
        xs,
        {
            k: [e[k] for e in epochs if k in e]
            for k in ("train_loss", family.val_metric)
            if any(k in e for e in epochs)
        },
        "epoch",
        f"{family.name}: training",
    )
    with start_run(
        family.name,
        run_name=f"train-{family.name}",
        tags={"stage": "train", "model": family.model, **(tags or {})},
    ) as run:
        log_params_flat(
            {
                "model": fam.model.model_dump(mode="json"),
                "data": fam.data.model_dump(mode="json"),
                "train": fam.train.model_dump(mode="json"),
            }
        )
        for e in epochs:
            log_epoch_metrics(
                {k: float(v) for k, v in e.items() if k != "epoch"}, step=int(e["epoch"])
            )
        for name in ("weights.safetensors", "config.json"):
            log_artifact_file(best_dir / name, "checkpoint")
        log_artifact_file(plots_dir / "train_curves.png", "plots")
        return run.info.run_id
