"""The one table of model families: model, task, skeleton, primary metric.

Adding an in-tree family of an existing task means: one model file, one row here, one block in the
profiles (see poseops/tasks/README.md). A family can also come from an installed package through the
entry point group `poseops.families` (an entry point names a `Family` object; importing its module
registers its model), so stage subprocesses and Serve replicas find it as they find in-tree families.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poseops import config as config_schema
from poseops.errors import ConfigError
from poseops.models import model_entry
from poseops.tasks import Task, get_task

if TYPE_CHECKING:
    from torch import nn

ENTRY_POINT_GROUP = "poseops.families"


@dataclass(frozen=True)
class Family:
    name: str
    model: str  # registry name in poseops.models
    task: str  # registry name in poseops.tasks: the kind of data, stored here only
    skeleton: str  # poseops.skeletons name
    primary_metric: str  # key in metrics.json the gate and checkpoint selection use
    description: str = ""
    inputs: tuple[
        str, ...
    ] = ()  # families whose predict@<family> tracks this family's derive reads
    metric_mode: str = "max"  # "min" when a lower primary metric is better (errors: MPJPE)

    def best(self, rows: list[dict], key: str | None = None) -> dict:
        """The row with the best `key` (default: the val metric) by `metric_mode` ({} when none);
        rows missing it rank last."""
        key = key or self.val_metric
        if not rows:
            return {}
        if self.metric_mode == "min":
            return min(rows, key=lambda r: r.get(key, float("inf")))
        return max(rows, key=lambda r: r.get(key, float("-inf")))

    @property
    def task_module(self) -> Task:
        return get_task(self.task)

    @property
    def val_metric(self) -> str:
        """The per-epoch validation metric training reports and selects checkpoints by (`val_<primary>`)."""
        return f"val_{self.primary_metric}"

    def make_predictor(self, model: nn.Module, version: str = "local", **settings):
        """The serving/evaluation predictor of a checkpoint-built model (`predict(image_bgr, box)`).

        settings override the checkpoint's `extra.inference` (crop_margin; input_size, flip_test).
        """
        inference = {**inference_settings(model, self.model), **settings}
        return self.task_module.predictor(model, f"poseops-{self.name}", version, inference)

    def predictor(self, model: nn.Module, crop_margin: float | None = None, version: str = "local"):
        """`records -> predictions` over a checkpoint-built model (the MLflow pyfunc's entry point).

        records: [{"image_bgr": uint8 [H,W,3], "box": [x, y, w, h] | None}]. The crop margin is the one
        the checkpoint was trained with (its manifest's `extra.inference`), unless given.
        """
        settings = {} if crop_margin is None else {"crop_margin": crop_margin}
        predictor = self.make_predictor(model, version, **settings)
        return lambda records: [predictor.predict(r["image_bgr"], r.get("box")) for r in records]


IN_TREE: tuple[Family, ...] = (
    Family(
        name="handmle",
        model="handmle",
        task="topdown_crop",
        skeleton="hand21",
        primary_metric="pck",
        description="21-keypoint hands, sequential stages, RealNVP MLE loss (Li et al. 2021, RLE)",
    ),
    Family(
        name="vmhpe",
        model="vmhpe",
        task="bottomup_image",
        skeleton="coco17",
        primary_metric="ap",
        description="bottom-up multi-person COCO-17, CID + MFCM + MFFM on HRNet",
    ),
    Family(
        name="lifter",
        model="lifter",
        task="lifting_sequence",
        skeleton="h36m17",
        primary_metric="mpjpe",
        metric_mode="min",
        inputs=("hrnet_am",),
        description="2D -> 3D lifting over T frames, PoseFormer with CrossFormer's SA and TA modules",
    ),
    Family(
        name="hrnet_am",
        model="hrnet_am",
        task="topdown_crop",
        skeleton="coco17",
        primary_metric="pck",
        description="top-down COCO-17 person crops, pose_hrnet with CAM+SAM attention modules",
    ),
)


@cache
def plugin_families() -> tuple[Family, ...]:
    """Families of installed packages (entry point group `poseops.families`; each names a Family)."""
    found = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        family = entry.load()
        if not isinstance(family, Family):
            raise ConfigError(
                f"entry point {entry.name} = {entry.value} ({ENTRY_POINT_GROUP}): "
                f"expected a poseops.families.Family, got {type(family).__name__}"
            )
        if family.name != entry.name:
            raise ConfigError(
                f"entry point {entry.name} = {entry.value}: the Family is named {family.name!r}"
            )
        found.append(family)
    return tuple(found)


def families() -> dict[str, Family]:
    """Every family: the in-tree rows, then installed plug-ins (a plug-in may not reuse a name)."""
    table = {f.name: f for f in IN_TREE}
    for family in plugin_families():
        if family.name in table:
            raise ConfigError(
                f"plug-in family {family.name!r} ({ENTRY_POINT_GROUP}) reuses an in-tree name"
            )
        table[family.name] = family
    return table


def get_family(name: str) -> Family:
    table = families()
    if name not in table:
        raise ConfigError(f"unknown family {name!r}; families: {', '.join(sorted(table))}")
    return table[name]


def model_schemas() -> dict[str, type]:
    """family name -> the pydantic Config of its model, for validating params.yaml."""
    return {name: model_entry(fam.model).config_class for name, fam in families().items()}


def data_schemas() -> dict[str, type]:
    """family name -> its task's data options (a config.FamilyData subclass), for validating params.yaml."""
    return {name: get_task(fam.task).Options for name, fam in families().items()}


def load_params(path: str | Path = "params.yaml") -> config_schema.Params:
    """Read and validate `params.yaml` (the edge): every family's model and data blocks with their own schemas."""
    return config_schema.load_params(path, model_schemas(), data_schemas())


def validate_params(raw: dict[str, Any], source: str = "params.yaml") -> config_schema.Params:
    return config_schema.validate_params(raw, model_schemas(), source, data_schemas())


def inference_settings(model: nn.Module, model_name: str | None = None) -> dict:
    """Preprocessing a checkpoint was trained with (manifest `extra.inference`), over the inference
    defaults of its model's registry entry (`model_name`, else the checkpoint's model)."""
    info = getattr(model, "checkpoint_info", None) or {}
    name = model_name or info.get("model")
    defaults = dict(model_entry(name).inference) if name else {}
    return {**defaults, **(info.get("extra", {}).get("inference") or {})}


def load_predictor(checkpoint_dir: str | Path, version: str = "local"):
    """A predictor (of the checkpoint's family's task) from a published checkpoint folder, with the
    preprocessing it was trained with."""
    from poseops.checkpoints import build_model_from_checkpoint

    model = build_model_from_checkpoint(checkpoint_dir)
    return get_family(model.checkpoint_info["family"]).make_predictor(model, version=version)
