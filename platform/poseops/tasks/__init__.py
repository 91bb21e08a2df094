"""Task registry: one module per kind of data, the only place that knows that kind.

    task = get_task("topdown_crop")
    task.Options            # the family `data` block's pydantic options (a config.FamilyData subclass)
    task.rows               # row schema and derive plan (poseops.datasets.derive.RowPlan)
    task.train_loader(cfg, model, rank, world); task.train_losses(model, batch); task.validate(model, val)
    task.example_batch(model, batch_size)   # synthetic loader-form batch (tests)
    task.evaluate(family, fam, model, dataset_url, split, card)   # predict -> score -> baselines
    task.artefacts          # the report files write_report writes and dvc.yaml declares
    task.predictor(model, name, version, settings)                # the serving adapter
    task.network_inputs(model, dataset_url, split, settings)      # a split as the network sees it

Tasks register like models do (`poseops.models.register_model`): a module calls `register_task` when
imported, and the registry imports the in-tree modules on first use. A family row names its task
(`poseops.families.Family.task`); the kind is that name and is stored nowhere else.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Union

from pydantic import Field
from torch import nn

from poseops.config import FamilyData, FamilyParams
from poseops.datasets.derive import RowPlan
from poseops.errors import ConfigError

# In-tree task modules; imported on first registry use (no import-time side effects elsewhere).
_TASK_MODULES = (
    "poseops.tasks.topdown_crop",
    "poseops.tasks.bottomup_image",
    "poseops.tasks.lifting_sequence",
    "poseops.tasks.multiview_group",
)


@dataclass(frozen=True)
class Artefact:
    """One file of an evaluation report under metrics/<family>/, and how dvc.yaml declares it.

    role: "metrics" (DVC metrics) or "plot" (DVC plots); plot: the DVC plot options (x, y, template).
    """

    name: str
    role: str = "plot"
    plot: dict[str, str] = field(default_factory=dict)


@dataclass
class Evaluation:
    """What a task's `evaluate` hands the report writer: the report (metrics.json) and the files beside it.

    files: name -> JSON-able rows (written as JSON) or a callable `path -> None` (plots, images).
    """

    report: dict[str, Any]
    files: dict[str, Any]


class Task:
    """The base of every task. A method a kind has not implemented yet raises ConfigError naming it."""

    name: ClassVar[str]
    Options: ClassVar[type[FamilyData]]
    rows: ClassVar[RowPlan]
    artefacts: ClassVar[tuple[Artefact, ...]] = (Artefact("metrics.json", "metrics"),)
    # metrics.json keys a summary shows for a family of this task, with their labels (first: primary)
    headline: ClassVar[tuple[tuple[str, str], ...]] = ()
    count_key: ClassVar[str] = "num_samples"  # metrics.json's count of scored samples
    # the annotate stage's file under data/annotations/ that derive reads (dvc.yaml declares it)
    annotations_file: ClassVar[str] = "labels.json"

    def _missing(self, what: str):
        return ConfigError(
            f"task {self.name!r} has no {what} yet: a family of this kind cannot run that stage"
        )

    # training (Ray Train workers; cfg is the plain dict of poseops.train.fit.make_loop_config)
    def train_loader(self, cfg: dict, model: nn.Module, rank: int, world: int) -> tuple[Any, Any]:
        raise self._missing("training loader")

    def load_validation(self, cfg: dict) -> Any:
        raise self._missing("validation split")

    def train_losses(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        """The model in train mode on one loader batch -> its loss terms as tensors ("loss": the total);
        the optimiser step (mixed precision, accumulation, DDP) is the train workload's."""
        raise self._missing("train_step (train_losses)")

    def train_step(self, model: nn.Module, batch: Any, optimizer) -> dict[str, float]:
        """One plain optimisation step on a loader batch; returns the loss terms as floats."""
        terms = self.train_losses(model, batch)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        return {name: float(value.detach()) for name, value in terms.items()}

    def example_batch(self, model: nn.Module, batch_size: int, seed: int = 0) -> Any:
        """A synthetic batch in the training loader's form for `model` (random images and labels): what
        tests of the train workload feed every family without a derived dataset."""
        raise self._missing("example batch")

    def validate(self, model: nn.Module, val: Any) -> dict[str, float]:
        raise self._missing("validate")

    def inference(self, fam: FamilyParams, model_defaults: dict[str, Any]) -> dict[str, Any]:
        """The inference settings a checkpoint records (its manifest's `extra.inference`)."""
        raise self._missing("inference settings")

    # evaluation
    def evaluate(
        self,
        family,
        fam: FamilyParams,
        model: nn.Module,
        dataset_url: str,
        split: str,
        card: dict,
        settings: dict[str, Any],
    ) -> Evaluation:
        raise self._missing("evaluation")

    # serving
    def predictor(self, model: nn.Module, name: str, version: str, settings: dict[str, Any]):
        raise self._missing("serving predictor")

    def network_inputs(
        self,
        model: nn.Module,
        dataset_url: str,
        split: str,
        settings: dict[str, Any],
        limit: int | None = None,
    ) -> Any:
        """A split's samples as the predictor feeds them to the network: uint8 RGB [N, S, S, 3]
        (what an ONNX export is checked on, poseops.onnx_models)."""
        raise self._missing("network inputs")


_REGISTRY: dict[str, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: register one instance of a Task subclass under `cls.name`."""
    if cls.Options.model_fields["kind"].default != cls.name:
        raise TypeError(f"task {cls.name!r}: Options.kind must default to {cls.name!r}")
    _REGISTRY[cls.name] = cls()
    return cls


def _load() -> dict[str, Task]:
    for module in _TASK_MODULES:
        importlib.import_module(module)
    return _REGISTRY


def list_tasks() -> list[str]:
    return sorted(_load())


def get_task(name: str) -> Task:
    registry = _load()
    if name not in registry:
        raise ConfigError(f"unknown task {name!r}; tasks: {', '.join(sorted(registry))}")
    return registry[name]


def options_union() -> Any:
    """Every registered task's options as one pydantic type, discriminated on `kind` (a TypeAdapter
    validates a data block with an explicit kind through it)."""
    classes = tuple(task.Options for task in _load().values())
    return Annotated[Union[classes], Field(discriminator="kind")]  # noqa: UP007 (a runtime tuple of classes)
