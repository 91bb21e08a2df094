"""The evaluate workload, one skeleton for every task: load -> task.evaluate (predict, score, baselines)
-> write_report, which writes exactly the task's declared artefacts (the files dvc.yaml lists for the
family; `poseops pipeline render` takes them from the same declaration).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from poseops.config import FamilyParams
from poseops.datasets.loader import read_card
from poseops.errors import ConfigError
from poseops.families import Family, inference_settings
from poseops.numerics import fingerprint
from poseops.storage import write_json_atomic
from poseops.tasks import Evaluation, Task


def write_report(task: Task, evaluation: Evaluation, out_dir: str | Path) -> list[Path]:
    """Write metrics.json and every other artefact the task declares to out_dir, and nothing else.

    A declared artefact the evaluation did not produce, or a produced file the task does not declare,
    is a ConfigError (dvc.yaml would track a missing file, or miss one)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    declared = [a.name for a in task.artefacts if a.name != "metrics.json"]
    if set(declared) != set(evaluation.files):
        raise ConfigError(
            f"task {task.name!r}: evaluation produced {sorted(evaluation.files)}, "
            f"but the task declares {sorted(declared)}"
        )
    written = [out_dir / "metrics.json"]
    write_json_atomic(written[0], evaluation.report)
    for name in declared:
        content, path = evaluation.files[name], out_dir / name
        if callable(content):
            content(path)
        else:
            write_json_atomic(path, content)
        written.append(path)
    return written


def evaluate_model(
    family: Family,
    fam: FamilyParams,
    model: torch.nn.Module,
    dataset_url: str,
    out_dir: str | Path,
    split: str = "test",
    card: dict | None = None,
    **task_options: Any,
) -> dict[str, Any]:
    """Score `model` and its task's baselines on `split` (the test split: validation picked the
    checkpoint, so it would flatter it); write the task's report to out_dir; return metrics.json's
    content (numbers with their protocols, the split and how it was drawn)."""
    task = family.task_module
    settings = inference_settings(model, family.model)
    card = card or read_card(dataset_url)
    if not card.get("counts", {}).get(split):
        raise ConfigError(
            f"{dataset_url}: the dataset has no {split!r} samples (counts {card.get('counts')}); "
            "data.split.test_fraction needs 3 or more subjects or sequences"
        )
    evaluation = task.evaluate(
        family, fam, model, dataset_url, split, card, settings, **task_options
    )
    evaluation.report["split"] = split
    describe = getattr(model, "loss_description", None)
    evaluation.report["loss"] = describe() if callable(describe) else None
    evaluation.report["split_rule"] = split_rule(card, split)
    # which machine's bits these are: equal digests reproduce a run to the bit (poseops.numerics)
    evaluation.report["numerics_fingerprint"] = fingerprint()
    write_report(task, evaluation, out_dir)
    return evaluation.report


def split_rule(card: dict, split: str) -> str:
    """How `split` was drawn, from the dataset card: the line every report states beside its numbers."""
    rule = card.get("source", {}).get("split") or {}
    units = len(card.get("splits", {}).get(split, {}).get("units", []))
    total = sum(len(body.get("units", [])) for body in card.get("splits", {}).values())
    by = rule.get("by", "subject")
    return (
        f"{split}: {card.get('counts', {}).get(split)} samples from {units} of {total} units "
        f"(by {by}; test_fraction {rule.get('test_fraction')}, val_fraction {rule.get('val_fraction')}, "
        f"split seed {rule.get('seed')}); no {by} is in two splits"
    )


def log_evaluation(run_id: str, report: dict[str, Any], out_dir: str | Path) -> None:
    """Attach evaluation numbers and images to the training run in MLflow."""
    import mlflow

    from poseops.tracking.store import configure

    configure()
    numbers = {f"eval_{k}": float(v) for k, v in report.items() if isinstance(v, (int, float))}
    numbers.update({f"eval_{k}": float(v) for k, v in report["baselines"].items()})
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(numbers)
        for path in sorted(Path(out_dir).iterdir()):
            if path.suffix in (".json", ".png") and path.name != "promotion.json":
                mlflow.log_artifact(str(path), "evaluation")
