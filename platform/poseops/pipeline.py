"""The DVC stages as functions over the library: capture, annotate, derive, train, evaluate, promote.

Each stage reads validated `Params`, writes only its own outputs (see `Layout`), and publishes them
last, so a failed stage leaves nothing that a later stage could mistake for a result.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from poseops.config import Params
from poseops.families import get_family
from poseops.paths import repo_root

console = Console(stderr=True)


@dataclass(frozen=True)
class Layout:
    """Where every stage's outputs live, relative to the project root (dvc.yaml uses the same paths)."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw" / "synthetic"

    @property
    def annotations(self) -> Path:
        return self.root / "data" / "annotations" / "labels.json"

    def derived(self, family: str) -> Path:
        return self.root / "data" / "derived" / family

    def model(self, family: str) -> Path:
        return self.root / "models" / family

    def metrics(self, family: str) -> Path:
        return self.root / "metrics" / family

    def plots(self, family: str) -> Path:
        return self.root / "plots" / family


def layout(root: str | Path | None = None) -> Layout:
    return Layout(Path(root).resolve() if root else repo_root())


def dvc_repro(*args: str, root: str | Path | None = None) -> None:
    """`dvc repro` with this interpreter's environment first on PATH, so its stages run the same poseops
    (a Ray job's or a cron's PATH may not hold the virtual environment)."""
    import os
    import subprocess
    import sys

    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    subprocess.run([sys.executable, "-m", "dvc", "repro", *args], cwd=root or repo_root(), env=env, check=True)


def capture(params: Params, where: Layout) -> dict[str, dict]:
    """Render the configured synthetic captures into the capture root (`hands/`, `bodies/`; a part set
    to null is an empty folder, since dvc.yaml lists both as outputs)."""
    from poseops.capture import write_captures

    with console.status("capture: rendering") as status:
        manifests = write_captures(where.raw, params.data.capture, keep_empty=True,
                                   on_part=lambda part: status.update(f"capture: rendering synthetic {part}"))
    for part, manifest in manifests.items():
        counts = manifest["counts"]
        console.print(f"capture: {part}: {counts['sequences']} sequences, {counts.get('images', counts['frames'])} "
                      f"images -> {where.raw / part}")
    return manifests


def annotate(params: Params, where: Layout) -> dict:
    from poseops.annotations.internal import build_annotations

    summary = build_annotations(where.raw, params.data.annotations, where.annotations)
    console.print(f"annotate: {summary} -> {where.annotations}")
    return summary


def derive(family_name: str, params: Params, where: Layout) -> dict:
    """derive@<family>: the same derive_dataset as `poseops data derive` (Ray when attached or large)."""
    from poseops.datasets.derive import derive_dataset
    from poseops.paths import append_run_log

    family, fam = get_family(family_name), params.families[family_name]
    with console.status(f"derive@{family_name}: cutting {family.dataset_kind} shards"):
        card = derive_dataset(
            family.dataset_kind, where.annotations, str(where.derived(family_name)), fam.data, params.data.split,
            skeleton=family.skeleton, repo_root=where.root,
            run_log=lambda facts: append_run_log("derive", {"family": family_name, **facts}, where.root),
        )
    console.print(f"derive@{family_name}: {card.get('counts')} -> {where.derived(family_name)}")
    return card


def train(family_name: str, params: Params, where: Layout) -> dict:
    """Fit with Ray Train, log the run to MLflow, publish the best checkpoint (by the family's
    `val_metric`) to models/<family>/."""
    from safetensors.torch import load_file

    from poseops.checkpoints import save_checkpoint
    from poseops.train.fit import best_checkpoint, fit, history
    from poseops.train.hooks import hooks_for
    from poseops.paths import append_run_log
    from poseops.tracking.runs import WEIGHTS_TAG
    from poseops.train.report import log_training_run

    family, fam = get_family(family_name), params.families[family_name]
    metric = family.val_metric
    run_name = f"{family_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    console.print(f"train@{family_name}: Ray Train, {fam.train.num_workers} worker(s), {fam.train.epochs} epochs")
    result = fit(family, fam, str(where.derived(family_name)), run_name)
    epochs = history(result)
    best_epoch = max(epochs, key=lambda e: e.get(metric, float("-inf"))) if epochs else {}
    with best_checkpoint(result).as_directory() as folder:
        best = Path(folder)
        manifest = save_checkpoint(
            where.model(family_name), family_name, family.model, load_file(str(best / "weights.safetensors")),
            json.loads((best / "config.json").read_text())["config"],
            extra={"best_epoch": best_epoch, "inference": hooks_for(family.dataset_kind).inference(fam)},
        )
        weights_sha256 = manifest["files"]["weights.safetensors"]["sha256"]
        run_id = log_training_run(family, fam, best, epochs, where.plots(family_name),
                                  tags={WEIGHTS_TAG: weights_sha256, "ray_run": str(result.path)})
    append_run_log("train", {"family": family_name, "mlflow_run_id": run_id, "ray_run": str(result.path),
                             "weights_sha256": weights_sha256}, where.root)
    console.print(f"train@{family_name}: best {metric} {best_epoch.get(metric, float('nan')):.3f} "
                  f"-> {where.model(family_name)} (MLflow run {run_id})")
    return {"run_id": run_id, "best_epoch": best_epoch}


def evaluate(family_name: str, params: Params, where: Layout) -> dict:
    from poseops.checkpoints import build_model_from_checkpoint, load_checkpoint
    from poseops.evaluate import evaluate_model
    from poseops.evaluate import log_evaluation
    from poseops.tracking.runs import find_training_run

    family, fam = get_family(family_name), params.families[family_name]
    model = build_model_from_checkpoint(where.model(family_name))
    _, info = load_checkpoint(where.model(family_name))
    with console.status(f"evaluate@{family_name}: scoring the checkpoint and baselines"):
        report = evaluate_model(family, fam, model, str(where.derived(family_name)), where.metrics(family_name))
    run_id = find_training_run(family_name, info["weights_sha256"])
    if run_id:
        log_evaluation(run_id, report, where.metrics(family_name))
    primary = family.primary_metric
    console.print(
        f"evaluate@{family_name}: {primary} {report[primary]:.3f} (baselines {report['baselines']}, "
        f"margin {report['margin_over_best_baseline']:+.3f})"
    )
    return report


def promote(family_name: str, params: Params, where: Layout) -> dict:
    """Register the checkpoint, check the gate, and move the `champion` alias (or refuse).

    `metrics/<family>/promotion.json` (a DVC output) holds only what follows from the stage's inputs:
    the outcome, the gate and the metric values it judged, and the content checksums of the model and
    of the evaluation data. Registry facts (version, run id, time) are tags in the registry, and are
    returned with the record."""
    from poseops.checkpoints import load_checkpoint
    from poseops.packaging import log_and_register
    from poseops.storage import read_json, write_json_atomic
    from poseops.tracking.registry import promote as promote_version
    from poseops.tracking.runs import find_training_run

    fam = params.families[family_name]
    report = read_json(where.metrics(family_name) / "metrics.json")
    _, info = load_checkpoint(where.model(family_name))
    numbers = {k: v for k, v in report.items() if isinstance(v, (int, float))}
    run_id = find_training_run(family_name, info["weights_sha256"])
    version = log_and_register(where.model(family_name), family_name, run_id=run_id)
    outcome = promote_version(family_name, version["version"], numbers, fam.gate)
    record = {
        "family": family_name,
        "promoted": True,
        "alias": outcome["alias"],
        "weights_sha256": info["weights_sha256"],
        "dataset_checksum": report.get("dataset_checksum"),
        "gate": fam.gate,
        "metrics": numbers,
    }
    write_json_atomic(where.metrics(family_name) / "promotion.json", record)
    console.print(f"promote@{family_name}: {version['name']} v{version['version']} is champion")
    return {**record, "version": version, "outcome": outcome}
