"""The DVC stages as functions over the library: capture, annotate, derive, train, evaluate, promote,
predict.

Each stage reads validated `Params`, writes only its own outputs (see `Layout`), and publishes them
last, so a failed stage leaves nothing that a later stage could mistake for a result. A stage function
imports what it runs, so its import closure is its own: dvc.yaml's deps for it come from that closure
(`poseops.dvc_yaml`), and editing one family's model or task re-runs only the stages that run it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from poseops.config import Params
from poseops.paths import repo_root
from poseops.skeletons import SKELETONS

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

    def task_annotations(self, file_name: str) -> Path:
        """The annotations file a task derives from (`poseops.tasks.Task.annotations_file`)."""
        return self.root / "data" / "annotations" / file_name

    def derived(self, family: str) -> Path:
        return self.root / "data" / "derived" / family

    def model(self, family: str) -> Path:
        return self.root / "models" / family

    def predicted(self, family: str) -> Path:
        """predict@<family>'s 2D tracks of the long sequences (poseops.datasets.tracks)."""
        return self.root / "data" / "predicted" / family

    def metrics(self, family: str) -> Path:
        return self.root / "metrics" / family

    def plots(self, family: str) -> Path:
        return self.root / "plots" / family

    def report(self, family: str) -> Path:
        return self.root / "reports" / f"{family}.md"


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
    subprocess.run(
        [sys.executable, "-m", "dvc", "repro", *args], cwd=root or repo_root(), env=env, check=True
    )


def capture(params: Params, where: Layout) -> dict[str, dict]:
    """Render the configured synthetic captures into the capture root (`hands/`, `bodies/`; a part set
    to null is an empty folder, since dvc.yaml lists both as outputs)."""
    from poseops.capture import write_captures

    with console.status("capture: rendering") as status:
        manifests = write_captures(
            where.raw,
            params.data.capture,
            keep_empty=True,
            on_part=lambda part: status.update(f"capture: rendering synthetic {part}"),
        )
    for part, manifest in manifests.items():
        counts = manifest["counts"]
        console.print(
            f"capture: {part}: {counts['sequences']} sequences, {counts.get('images', counts['frames'])} "
            f"images -> {where.raw / part}"
        )
    return manifests


def annotate(params: Params, where: Layout) -> dict:
    """labels.json (the image parts and extra sources, merged) and sequences.json (the labels-only long
    sequences, for lifting; empty when that part is not configured)."""
    from poseops.annotations.internal import build_annotations
    from poseops.annotations.sequences import write_sequence_annotations
    from poseops.annotations.sources import untracked_sources
    from poseops.families import get_family

    for file in untracked_sources([s.file for s in params.data.annotations], where.root):
        console.print(
            f"[yellow]annotate: warning:[/] source {file} is not under data/raw/: DVC does not track it, "
            "so a change to it re-runs nothing (`poseops data add` brings it in)",
            highlight=False,
        )
    families = {name: get_family(name).skeleton for name in params.families}
    summary = build_annotations(
        where.raw, params.data.annotations, where.annotations, families=families
    )
    counts = {k: summary[k] for k in ("images", "annotations", "sources")}
    console.print(f"annotate: {counts} -> {where.annotations}")
    print_coverage("annotate", summary)
    sequences = write_sequence_annotations(
        where.raw / "sequences", where.task_annotations("sequences.json")
    )
    console.print(f"annotate: sequences {sequences} -> {where.task_annotations('sequences.json')}")
    return summary


def print_coverage(stage: str, summary: dict) -> None:
    """Per source and category, what each family took and why it skipped the rest; repairs; warnings."""
    for source, repairs in summary.get("repairs", {}).items():
        console.print(f"{stage}: {source}: repaired {repairs}", highlight=False)
    for line in summary.get("coverage", []):
        console.print(f"{stage}: {line}", highlight=False)
    for warning in summary.get("warnings", []):
        console.print(f"[yellow]{stage}: warning:[/] {warning}", highlight=False)


def derive(family_name: str, params: Params, where: Layout) -> dict:
    """derive@<family>: the same derive_dataset as `poseops data derive` (Ray when attached or large)."""
    from poseops.annotations.internal import load_annotations
    from poseops.annotations.keypoint_sets import coverage_lines, family_coverage
    from poseops.datasets.derive import cap_lines, derive_dataset
    from poseops.families import get_family
    from poseops.paths import append_run_log

    family, fam = get_family(family_name), params.families[family_name]
    annotations = where.task_annotations(family.task_module.annotations_file)
    if (
        family.skeleton in SKELETONS
    ):  # a user's own set is read from the annotations by derive itself
        lines, _ = coverage_lines(
            family_coverage(load_annotations(annotations), {family_name: family.skeleton})
        )
        print_coverage(f"derive@{family_name}", {"coverage": lines})
    with console.status(f"derive@{family_name}: cutting {family.task} shards"):
        card = derive_dataset(
            family.task_module.rows,
            annotations,
            str(where.derived(family_name)),
            fam.data,
            params.data.split,
            skeleton=family.skeleton,
            repo_root=where.root,
            source_weights=params.data.weights,
            run_log=lambda facts: append_run_log(
                "derive", {"family": family_name, **facts}, where.root
            ),
        )
    console.print(f"derive@{family_name}: {card.get('counts')} -> {where.derived(family_name)}")
    for line in cap_lines(card):
        console.print(f"derive@{family_name}: {line}", highlight=False)
    return card


def predict(family_name: str, params: Params, where: Layout) -> dict:
    """predict@<family>: the trained 2D model's tracks of the long sequences (every selected sequence,
    view and frame), for the families that declare it as an input (poseops.predict)."""
    from poseops.predict import predict_sequence_tracks

    settings = params.families[family_name].predict
    with console.status(f"predict@{family_name}: drawing and predicting the sequences") as status:
        manifest = predict_sequence_tracks(
            where.model(family_name),
            where.raw / "sequences",
            where.predicted(family_name),
            settings,
            on_track=lambda seq, view, n: status.update(
                f"predict@{family_name}: {seq} {view} ({n} frames)"
            ),
        )
    counts = manifest["counts"]
    console.print(
        f"predict@{family_name}: {counts['tracks']} tracks, {counts['rows']} frames in "
        f"{manifest['seconds']:.1f} s -> {where.predicted(family_name)}"
    )
    return manifest


def train(family_name: str, params: Params, where: Layout, resume: bool = False) -> dict:
    """Fit with Ray Train, log the run to MLflow, publish the best checkpoint (by the family's
    `val_metric`) to models/<family>/. `resume`: continue the family's newest Ray Train run from its
    last checkpoint (after the driver was killed) instead of starting a new one."""
    from safetensors.torch import load_file

    from poseops.checkpoints import save_checkpoint
    from poseops.families import get_family
    from poseops.models import model_entry
    from poseops.paths import append_run_log
    from poseops.tracking.runs import WEIGHTS_TAG
    from poseops.train.fit import best_checkpoint, fit, history
    from poseops.train.report import log_training_run

    family, fam = get_family(family_name), params.families[family_name]
    metric = family.val_metric
    console.print(
        f"train@{family_name}: Ray Train, {fam.train.num_workers} worker(s), {fam.train.epochs} epochs"
        + (" (resumed)" if resume else "")
    )
    result = fit(family, fam, str(where.derived(family_name)), resume=resume)
    epochs = history(result)
    best_epoch = family.best(epochs)
    with best_checkpoint(result).as_directory() as folder:
        best = Path(folder)
        manifest = save_checkpoint(
            where.model(family_name),
            family_name,
            family.model,
            load_file(str(best / "weights.safetensors")),
            json.loads((best / "config.json").read_text())["config"],
            extra={
                "best_epoch": best_epoch,
                "inference": family.task_module.inference(fam, model_entry(family.model).inference),
            },
        )
        weights_sha256 = manifest["files"]["weights.safetensors"]["sha256"]
        run_id = log_training_run(
            family,
            fam,
            best,
            epochs,
            where.plots(family_name),
            tags={WEIGHTS_TAG: weights_sha256, "ray_run": str(result.path)},
        )
    append_run_log(
        "train",
        {
            "family": family_name,
            "mlflow_run_id": run_id,
            "ray_run": str(result.path),
            "weights_sha256": weights_sha256,
        },
        where.root,
    )
    console.print(
        f"train@{family_name}: best {metric} {best_epoch.get(metric, float('nan')):.3f} "
        f"-> {where.model(family_name)} (MLflow run {run_id})"
    )
    return {"run_id": run_id, "best_epoch": best_epoch}


def evaluate(family_name: str, params: Params, where: Layout) -> dict:
    from poseops.checkpoints import build_model_from_checkpoint, load_checkpoint
    from poseops.evaluate import evaluate_model, log_evaluation
    from poseops.families import get_family
    from poseops.tracking.runs import find_training_run

    family, fam = get_family(family_name), params.families[family_name]
    model = build_model_from_checkpoint(where.model(family_name))
    _, info = load_checkpoint(where.model(family_name))
    with console.status(f"evaluate@{family_name}: scoring the checkpoint and baselines"):
        report = evaluate_model(
            family, fam, model, str(where.derived(family_name)), where.metrics(family_name)
        )
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
    """Register the checkpoint (once per weights), judge it at the gate, move `champion` or refuse.

    A refusal is a recorded result: `promoted: false` and why, exit 0, so `dvc repro` completes; with
    `gate.strict` it raises GateRefused (the stage exits 1) after writing the record.
    `metrics/<family>/promotion.json` (a DVC output) holds only what follows from the stage's inputs: the
    outcome, the gate and the metric values it judged, the content checksums of the model and of the
    evaluation data. Registry facts (version numbers, run ids, times, who) live in the registry's history
    and are returned with the record."""
    from poseops.checkpoints import load_checkpoint
    from poseops.errors import GateRefused
    from poseops.families import get_family
    from poseops.packaging import log_and_register
    from poseops.storage import read_json, write_json_atomic
    from poseops.tracking.registry import promote as promote_version
    from poseops.tracking.registry import record_evaluation
    from poseops.tracking.runs import find_training_run

    family, fam = get_family(family_name), params.families[family_name]
    report = read_json(where.metrics(family_name) / "metrics.json")
    _, info = load_checkpoint(where.model(family_name))
    numbers = {
        k: v for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    run_id = find_training_run(family_name, info["weights_sha256"])
    version = log_and_register(where.model(family_name), family_name, run_id=run_id)
    record_evaluation(
        family_name,
        version["version"],
        numbers,
        report.get("dataset_checksum"),
        report.get("split"),
    )
    record = {
        "family": family_name,
        "promoted": True,
        "weights_sha256": info["weights_sha256"],
        "dataset_checksum": report.get("dataset_checksum"),
        "split": report.get("split"),
        "gate": fam.gate.model_dump(mode="json"),
        "metrics": numbers,
    }
    try:
        outcome = promote_version(
            family_name,
            version["version"],
            numbers,
            fam.gate,
            primary_metric=family.primary_metric,
            metric_mode=family.metric_mode,
            why="promote stage (dvc repro)",
        )
    except GateRefused as refusal:
        record.update(
            promoted=False,
            refusal={
                "metric": refusal.metric,
                "reason": getattr(refusal, "reason", "below"),
                "value": refusal.value,
                "threshold": refusal.threshold,
            },
        )
        write_json_atomic(where.metrics(family_name) / "promotion.json", record)
        console.print(f"promote@{family_name}: [yellow]refused[/]: {refusal}")
        if fam.gate.strict:
            raise
        return {**record, "version": version, "outcome": None, "message": str(refusal)}
    write_json_atomic(where.metrics(family_name) / "promotion.json", record)
    state = "is champion" if outcome["changed"] else "is champion already (same weights)"
    console.print(f"promote@{family_name}: {version['name']} v{outcome['version']} {state}")
    return {**record, "version": version, "outcome": outcome}


def report(family_name: str, params: Params, where: Layout) -> str:
    """report@<family>: reports/<family>.md, this checkpoint's test numbers beside the paper's, the grids that
    have run, learning curves and best/worst overlays (poseops.family_report)."""
    from poseops.families import get_family
    from poseops.family_report import render
    from poseops.storage import read_json

    family, fam = get_family(family_name), params.families[family_name]
    history_path = where.plots(family_name) / "train_history.json"
    text = render(
        family_name,
        params.profile,
        family.primary_metric,
        fam.model.model_dump(mode="json"),
        read_json(where.metrics(family_name) / "metrics.json"),
        read_json(history_path) if history_path.exists() else [],
        where.root,
        where.report(family_name),
    )
    console.print(
        f"report@{family_name}: {len(text.splitlines())} lines -> {where.report(family_name)}"
    )
    return text


def restore_champions(params: Params, where: Layout, alias: str = "champion") -> list[str]:
    """Register and alias each family's published model that its promotion record says was promoted,
    where the registry has no `alias` for it (an emptied `.poseops/`, a fresh machine, a new server): DVC
    skips the cached promote stage, so without this nothing would be served. Returns the restored families."""
    from poseops.checkpoints import load_checkpoint
    from poseops.packaging import log_and_register
    from poseops.storage import read_json
    from poseops.tracking.registry import get_alias_version, record_evaluation, registered_name
    from poseops.tracking.registry import promote as promote_version

    restored = []
    for name in params.families:
        record_path = where.metrics(name) / "promotion.json"
        if get_alias_version(registered_name(name), alias) is not None or not record_path.exists():
            continue
        record = read_json(record_path)
        if not record.get("promoted") or not (where.model(name) / "manifest.json").exists():
            continue
        _, info = load_checkpoint(where.model(name))
        if info["weights_sha256"] != record.get("weights_sha256"):
            continue  # models/ moved on since the record: the promote stage must judge it
        version = log_and_register(where.model(name), name)
        record_evaluation(
            name,
            version["version"],
            record["metrics"],
            record.get("dataset_checksum"),
            record.get("split"),
        )
        promote_version(
            name,
            version["version"],
            record["metrics"],
            params.families[name].gate,
            alias,
            why=f"restored from {record_path.relative_to(where.root)}",
        )
        restored.append(name)
    return restored
