"""The one seam between Ray Tune and the training code: everything the tune package needs from it.

When the training code changes shape, only this module changes. It makes these calls:
  - `poseops.families.get_family(name)` and `poseops.families.validate_params(raw)` (the same validation
    as `families.load_params`: model blocks by their Config, data blocks by their task's options);
  - `poseops.train.fit.make_loop_config(family, family_params, dataset_url, storage, run)`,
    `fit.ray_storage` and `poseops.train.loop.train_loop_per_worker` (run by a `TorchTrainer` built
    here, because Ray Tune needs a callback in the trainer's RunConfig that forwards each epoch's
    report, which `poseops.train.fit.fit` does not take; each worker records its node id first), and
    `poseops.train.fit.history(result)`;
  - `poseops.capture.write_captures`, `poseops.annotations.internal.build_annotations` and
    `poseops.datasets.derive.derive_dataset` (what the capture, annotate and derive stages call), only
    for a row that changes the data (label noise), and `datasets.loader.read_card` / `derive.dataset_checksum`;
  - `poseops.checkpoints.save_checkpoint`, publishing each row's selected trial checkpoint under
    models/grids/ (`publish_trial_checkpoint`), and for a row whose input is another family's variant
    (`input_from`) `poseops.predict.predict_sequence_tracks` on the checkpoint that variant's grid
    published (what the predict stage calls), see `variant_tracks`.
  - `poseops.evaluate.evaluate_model` (what the evaluate stage calls) on a trial's selected checkpoint,
    rebuilt by `poseops.models.build_from_config` with the inference settings the train stage publishes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from poseops.config import Params
from poseops.families import get_family, validate_params

# The pipeline's layout (dvc.yaml), relative to a project root.
RAW = Path("data") / "raw" / "synthetic"
ANNOTATIONS = Path("data") / "annotations" / "labels.json"
DERIVED = Path("data") / "derived"


def safe_name(name: str) -> str:
    """`name` with every character but letters, digits, '-', '_' and '.' made '_': a folder or run name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def validated(raw: Mapping[str, Any], source: str) -> Params:
    """A params mapping validated like params.yaml (ConfigError names `source` and the key)."""
    return validate_params(raw, source=source)


def val_metric(family_name: str) -> str:
    return get_family(family_name).val_metric


def best_epoch(family_name: str, epochs: list[dict]) -> dict:
    """The epoch with the best val metric ({} when none)."""
    return get_family(family_name).best(epochs)


def metric_mode(family_name: str) -> str:
    """ "max" or "min": which way the family's val metric improves."""
    return get_family(family_name).metric_mode


def data_fingerprint(params: Params, family_name: str) -> str:
    """SHA-256 (16 hex) of everything the family's derived data depends on: capture, annotations, split,
    and the family's data block without augmentation (applied at training time)."""
    fam = params.families[family_name]
    content = {
        "data": params.data.model_dump(mode="json"),
        "family_data": fam.data.model_dump(mode="json", exclude={"augment"}),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def derive_variant(
    params: Params, family_name: str, root: Path, annotations: Path | None = None
) -> str:
    """Capture, annotate and derive the family's data for these params under `root`, in the pipeline's
    layout (skipped when the card exists: a dataset exists only once its card is written); returns the
    derived dataset's URL. The same library calls as the capture, annotate and derive stages.
    `annotations`: the task's annotations file to derive from instead (a row that changes only the
    family's data block reuses the project's), so nothing is captured."""
    from poseops.annotations.internal import build_annotations
    from poseops.annotations.sequences import write_sequence_annotations
    from poseops.capture import write_captures
    from poseops.datasets.derive import derive_dataset

    family, fam = get_family(family_name), params.families[family_name]
    out = root / DERIVED / family_name
    if not (out / "card.json").exists():
        if annotations is None:
            capture = params.data.capture
            if (
                family.skeleton == "hand21"
            ):  # hand crops read only the hand sequences: skip the bodies
                capture = capture.model_copy(update={"bodies": None})
            write_captures(root / RAW, capture, keep_empty=True)
            build_annotations(root / RAW, params.data.annotations, root / ANNOTATIONS)
            annotations = root / ANNOTATIONS.parent / family.task_module.annotations_file
            if annotations != root / ANNOTATIONS:  # the long sequences (lifting)
                write_sequence_annotations(root / RAW / "sequences", annotations)
        derive_dataset(
            family.task_module.rows,
            annotations,
            str(out),
            fam.data,
            params.data.split,
            skeleton=family.skeleton,
            repo_root=root,
        )
    return str(out)


def project_dataset(project_root: Path, family_name: str) -> str:
    """The pipeline's own derived dataset of the family (what `derive@<family>` wrote)."""
    return str(project_root / DERIVED / family_name)


def dataset_card(dataset_url: str) -> dict:
    from poseops.datasets.loader import read_card

    return read_card(dataset_url)


def dataset_checksum(card: Mapping[str, Any]) -> str:
    from poseops.datasets.derive import dataset_checksum as checksum

    return checksum(card)


def train_trial(
    params: Params, family_name: str, dataset_url: str, run_name: str, storage_path: str
):
    """One Ray Train run inside a Ray Tune trial; every epoch's metrics (and the checkpoint's path) are
    reported to Tune from the trial's own thread as they arrive. Returns the `ray.train.Result`.

    Ray Tune's `TuneReportCallback` is not used: it hands each report to the trial actor's main thread,
    which pushes it into the session's one-slot result queue, the queue the trainable's own thread
    reports into. When the last epoch's report is still in flight as `fit()` returns, the trainable's
    next report (its summary, or Tune's end-of-function report) and the forwarded one both block on that
    full queue, and the trial never ends. Here the Train controller only appends reports to an unbounded
    queue; the trainable's thread drains it and is the only one that reports to Tune."""
    import threading

    import ray.tune
    from ray.util.queue import Empty, Queue

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    reports = Queue(actor_options={"num_cpus": 0})
    outcome: dict[str, Any] = {}
    trainer = make_trial_trainer(
        params, family_name, dataset_url, run_name, storage_path, forward_reports(reports)
    )

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # re-raised in the trainable's thread
            outcome["error"] = exc

    runner = threading.Thread(target=fit, name=f"fit-{run_name}", daemon=True)
    runner.start()
    while True:
        try:
            ray.tune.report(reports.get(timeout=0.5))
        except Empty:
            if not runner.is_alive() and reports.empty():
                break
    runner.join()
    reports.shutdown()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def forward_reports(queue):
    """A Ray Train callback (it runs in the Train controller): each report of rank 0, with the persisted
    checkpoint's path, appended to `queue` (a `ray.util.queue.Queue`) for the Tune trainable to report."""
    from ray.train import UserCallback

    class ForwardReports(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            item = dict(metrics[0])
            if checkpoint is not None:
                item["checkpoint_path"] = checkpoint.path
            queue.put(item)

    return ForwardReports()


def make_trial_trainer(
    params: Params,
    family_name: str,
    dataset_url: str,
    run_name: str,
    storage_path: str,
    callback: Any,
):
    """The `TorchTrainer` of one trial: the family's loop at its train settings, with `callback`."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from poseops.train.fit import make_loop_config, ray_storage

    family, fam = get_family(family_name), params.families[family_name]
    path, storage_filesystem = ray_storage(storage_path)
    return TorchTrainer(
        train_worker,
        train_loop_config={
            **make_loop_config(family, fam, dataset_url, storage_path, run_name),
            PLACEMENT_KEY: placement_folder(storage_path, run_name),
        },
        scaling_config=ScalingConfig(
            num_workers=fam.train.num_workers,
            resources_per_worker={"CPU": fam.train.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=path,
            storage_filesystem=storage_filesystem,
            checkpoint_config=CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute=family.val_metric,
                checkpoint_score_order=family.metric_mode,
            ),
            callbacks=[callback],
        ),
    )


PLACEMENT_KEY = "tune_placement_folder"


def placement_folder(storage_path: str, run_name: str) -> str:
    return f"{storage_path.rstrip('/')}/{run_name}/placement"


def train_worker(cfg: dict[str, Any]) -> None:
    """`train_loop_per_worker`, after writing this worker's rank and Ray node id to the run's storage
    (`placement/rank<r>.json`), so a grid can show where its trials trained."""
    import fsspec
    import ray
    import ray.train

    from poseops.train.loop import train_loop_per_worker

    folder = cfg[PLACEMENT_KEY]
    rank = ray.train.get_context().get_world_rank()
    fs, path = fsspec.core.url_to_fs(folder)
    fs.makedirs(path, exist_ok=True)
    with fs.open(f"{path}/rank{rank}.json", "w") as out:
        out.write(json.dumps({"rank": rank, "node_id": ray.get_runtime_context().get_node_id()}))
    train_loop_per_worker({k: v for k, v in cfg.items() if k != PLACEMENT_KEY})


def worker_nodes(storage_path: str, run_name: str) -> list[str]:
    """The Ray node ids the run's Train workers ran on, by rank."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(placement_folder(storage_path, run_name))
    if not fs.exists(path):
        return []
    found = sorted(fs.glob(f"{path}/rank*.json"))
    return [json.loads(fs.cat_file(p))["node_id"] for p in found]


def epochs_of(result) -> list[dict[str, Any]]:
    """Per-epoch metrics of a finished training run (rank 0's last report carries every epoch)."""
    from poseops.train.fit import history

    return history(result)


def publish_trial_checkpoint(
    family_name: str,
    checkpoint_path: str,
    storage_path: str,
    folder: Path,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """Publish a trial's Ray Train checkpoint (weights.safetensors + config.json at `checkpoint_path`, on
    the grid's `storage_path`: a local folder or an fsspec URL) as a poseops checkpoint at `folder`, with
    the inference settings the train stage publishes; returns its manifest."""
    from ray.train import Checkpoint
    from safetensors.torch import load_file

    from poseops.checkpoints import save_checkpoint
    from poseops.models import model_entry
    from poseops.train.fit import ray_storage

    family = get_family(family_name)
    _, storage_filesystem = ray_storage(storage_path)
    checkpoint = Checkpoint(
        str(checkpoint_path).removeprefix("file://"), filesystem=storage_filesystem
    )
    with checkpoint.as_directory() as local:
        recorded = json.loads((Path(local) / "config.json").read_text())
        return save_checkpoint(
            folder,
            family_name,
            family.model,
            load_file(str(Path(local) / "weights.safetensors")),
            recorded["config"],
            extra={"inference": dict(model_entry(family.model).inference), **extra},
        )


def variant_checkpoint(root: Path, source) -> tuple[Path, str]:
    """(checkpoint folder, label) of another family's variant named by a grid row's `input_from`
    (poseops.tune.grids.InputFrom): the checkpoint its grid published for that row
    (reports/grids/<family>_<grid>.json `checkpoints`, under models/grids/, a DVC output of the grid's
    stage); without a grid, the project's trained model (models/<family>)."""
    from poseops.errors import ConfigError
    from poseops.storage import read_json

    if source.grid is None:
        folder = root / "models" / source.family
        if not (folder / "manifest.json").exists():
            raise ConfigError(
                f"input_from {source.family}: {folder} holds no trained model (dvc repro train@{source.family})"
            )
        return folder, source.family
    stem = f"{source.family}_{source.grid}"
    report_path = root / "reports" / "grids" / f"{stem}.json"
    rerun = f"run `dvc repro grids/dvc.yaml:grid@{stem}` (or `poseops tune {source.family} --grid {source.grid}`)"
    if not report_path.exists():
        raise ConfigError(
            f"input_from {source.family}/{source.grid}: {report_path} does not exist; {rerun}"
        )
    published = read_json(report_path).get("checkpoints", {}).get(source.row)
    if not published:
        raise ConfigError(
            f"{report_path}: no published checkpoint of row {source.row!r} (input_from); {rerun}"
        )
    folder = root / published["path"]
    if not (folder / "manifest.json").exists():
        raise ConfigError(
            f"{report_path}: row {source.row!r}: {folder} holds no checkpoint (`dvc pull` or {rerun})"
        )
    return folder, f"{stem}_{source.row}_{published['trial']}"


def variant_tracks(root: Path, base_params: Mapping[str, Any], source, out_root: Path) -> Path:
    """The 2D tracks of the project's long sequences predicted by `source`'s variant (every sequence
    and view: the consuming family derives from all of them), in `out_root/<label>-<weights sha 12>/`;
    predicted once, then reused while its manifest names the same weights. Returns the folder."""
    from poseops.checkpoints import load_checkpoint
    from poseops.config import FamilyPredict
    from poseops.predict import predict_sequence_tracks
    from poseops.storage import read_json

    checkpoint, label = variant_checkpoint(root, source)
    _, info = load_checkpoint(checkpoint)
    sha = info["weights_sha256"]
    folder = out_root / f"{safe_name(label)}-{sha[:12]}"
    manifest = folder / "manifest.json"
    if manifest.exists() and read_json(manifest)["checkpoint"]["weights_sha256"] == sha:
        return folder
    block = (base_params.get("families") or {}).get(source.family, {}).get("predict") or {}
    settings = FamilyPredict(**{**block, "sequences": None, "views": None})
    predict_sequence_tracks(checkpoint, root / RAW / "sequences", folder, settings)
    return folder


def test_split_size(dataset_url: str) -> int:
    """How many test samples the derived dataset holds (its card's count)."""
    return int(dataset_card(dataset_url).get("counts", {}).get("test") or 0)


def test_metric(family_name: str) -> str:
    """The family's headline metric as the evaluate stage names it on the test split (`pck`, `ap`, ...)."""
    return get_family(family_name).primary_metric


def evaluate_checkpoint(
    params: Params, family_name: str, dataset_url: str, checkpoint_folder: str | Path
) -> dict[str, Any]:
    """Score a training checkpoint (a local Ray Train checkpoint folder: weights.safetensors +
    config.json) on the dataset's test split with the evaluate stage's library call; returns its
    metrics.json content.

    The model is rebuilt from the checkpoint's config and carries the inference settings the train stage
    publishes with it, so the number is the one `evaluate@<family>` would report for that checkpoint."""
    import tempfile

    from safetensors.torch import load_file

    from poseops.evaluate import evaluate_model
    from poseops.models import build_from_config, model_entry

    family, fam = get_family(family_name), params.families[family_name]
    folder = Path(checkpoint_folder)
    meta = json.loads((folder / "config.json").read_text())
    config = dict(meta["config"])
    if config.get("pretrained"):  # the trained weights replace any pretrained initialisation
        config["pretrained"] = None
    model = build_from_config(meta["model"], config)
    model.load_state_dict(load_file(str(folder / "weights.safetensors")), strict=True)
    model.checkpoint_info = {
        "family": family_name,
        "model": meta["model"],
        "extra": {
            "inference": family.task_module.inference(fam, model_entry(family.model).inference)
        },
    }
    with tempfile.TemporaryDirectory() as out:
        return evaluate_model(family, fam, model.eval(), dataset_url, out, split="test")
