"""The one seam between Ray Tune and the training code: everything the tune package needs from it.

When the training code changes shape, only this module changes. It makes these calls:
  - `poseops.families.get_family(name)` and `poseops.families.model_schemas()`;
  - `poseops.config.validate_params(raw, schemas)` (the same validation as `families.load_params`);
  - `poseops.train.fit.make_loop_config(family, family_params, dataset_url)` and
    `poseops.train.loop.train_loop_per_worker` (run by a `TorchTrainer` built here, because Ray Tune needs
    `TuneReportCallback` in the trainer's RunConfig, which `poseops.train.fit.fit` does not take);
  - `poseops.pipeline.layout/capture/annotate/derive`, only for a row that changes the data (label noise).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from poseops.config import Params, validate_params
from poseops.families import get_family, model_schemas


def validated(raw: Mapping[str, Any], source: str) -> Params:
    """A params mapping validated like params.yaml (ConfigError names `source` and the key)."""
    return validate_params(raw, model_schemas(), source=source)


def val_metric(family_name: str) -> str:
    return get_family(family_name).val_metric


def data_fingerprint(params: Params, family_name: str) -> str:
    """SHA-256 (16 hex) of everything the family's derived data depends on: capture, annotations, split,
    and the family's data block without augmentation (applied at training time)."""
    fam = params.families[family_name]
    content = {"data": params.data.model_dump(mode="json"),
               "family_data": fam.data.model_dump(mode="json", exclude={"augment"})}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def derive_variant(params: Params, family_name: str, root: Path) -> str:
    """Capture, annotate and derive the family's data for these params under `root` (skipped when its
    card exists: a dataset exists only once its card is written); returns the derived dataset's URL."""
    from poseops import pipeline

    where = pipeline.layout(root)
    if not (where.derived(family_name) / "card.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        pipeline.capture(params, where)
        pipeline.annotate(params, where)
        pipeline.derive(family_name, params, where)
    return str(where.derived(family_name))


def project_dataset(project_root: Path, family_name: str) -> str:
    """The pipeline's own derived dataset of the family (what `derive@<family>` wrote)."""
    from poseops import pipeline

    return str(pipeline.layout(project_root).derived(family_name))


def dataset_card(dataset_url: str) -> dict:
    from poseops.datasets.loader import read_card

    return read_card(dataset_url)


def dataset_checksum(card: Mapping[str, Any]) -> str:
    from poseops.datasets.derive import dataset_checksum as checksum

    return checksum(card)


def train_trial(params: Params, family_name: str, dataset_url: str, run_name: str, storage_path: str):
    """One Ray Train run inside a Ray Tune trial: every epoch's metrics (and the checkpoint's path) reach
    Tune through `TuneReportCallback`. Returns the `ray.train.Result`."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from poseops.train.fit import make_loop_config
    from poseops.train.loop import train_loop_per_worker

    family, fam = get_family(family_name), params.families[family_name]
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=make_loop_config(family, fam, dataset_url),
        scaling_config=ScalingConfig(num_workers=fam.train.num_workers,
                                     resources_per_worker={"CPU": fam.train.cpus_per_worker}),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=family.val_metric,
                                               checkpoint_score_order="max"),
            callbacks=[TuneReportCallback()],
        ),
    )
    return trainer.fit()


def epochs_of(result) -> list[dict[str, Any]]:
    """Per-epoch metrics of a finished training run (rank 0's last report carries every epoch)."""
    from poseops.train.fit import history

    return history(result)
