"""Model registry, timm-style: one file per family registers a builder, its `Config`, presets and
inference defaults (as timm keeps `default_cfg` beside a model: input size, crop margin, flip test).

    model = create_model("handmle", profile="smoke", num_stages=3)
    model.config  # the validated pydantic Config the model was built from

`create_model` never reads YAML: callers pass values they validated (see `poseops.families`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from torch import nn

from poseops.errors import ConfigError

# Family model files: every module of this package but `blocks`, imported on first registry use (no
# import-time side effects elsewhere), so a new model file registers itself.
# Installed packages register their models the same way: each entry point of this group names a module
# that calls `register_model` when imported (its family row comes through `poseops.families`).
ENTRY_POINT_GROUP = "poseops.models"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_class: type[BaseModel]
    presets: dict[str, dict[str, Any]]
    build: Callable[[BaseModel], nn.Module]
    # Inference defaults a checkpoint's manifest (extra.inference) overrides: crop_margin, input_size
    # (None: the Config's), flip_test.
    inference: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, config_class: type[BaseModel], presets: dict[str, dict[str, Any]],
                   inference: dict[str, Any] | None = None):
    """Decorator for a builder `fn(config) -> nn.Module`, with the model's Config, presets and inference
    defaults.

    The model contract every family keeps: `preprocess(uint8 images)`, `forward`, `loss(outputs, batch)
    -> {named terms}` (tensors; "loss" the one to minimise; each term logged) and `predict(inputs) -> task
    outputs`. The batch is what the family's task makes of a loader batch (its codec's targets).
    """

    def wrap(build: Callable[[BaseModel], nn.Module]):
        _REGISTRY[name] = ModelEntry(name, config_class, presets, build, dict(inference or {}))
        return build

    return wrap


def _load() -> dict[str, ModelEntry]:
    for found in pkgutil.iter_modules(__path__):
        if not found.ispkg and not found.name.startswith("_"):
            importlib.import_module(f"{__name__}.{found.name}")
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(entry.value)
    return _REGISTRY


def list_models() -> list[str]:
    return sorted(_load())


def model_entry(name: str) -> ModelEntry:
    registry = _load()
    if name not in registry:
        raise ConfigError(f"unknown model {name!r}; registered: {', '.join(sorted(registry))}")
    return registry[name]


def resolve_config(name: str, profile: str | None = "smoke", **overrides: Any) -> BaseModel:
    """The validated Config of `name`: preset `profile` (None: the Config's defaults) plus overrides."""
    entry = model_entry(name)
    values: dict[str, Any] = {}
    if profile is not None:
        if profile not in entry.presets:
            raise ConfigError(f"model {name!r} has no preset {profile!r}; presets: {', '.join(entry.presets)}")
        values.update(entry.presets[profile])
    values.update(overrides)
    try:
        return entry.config_class(**values)
    except ValidationError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None


def create_model(name: str, profile: str = "smoke", **overrides: Any) -> nn.Module:
    """Build model `name` at preset `profile` with `overrides`; `model.config` holds the Config."""
    config = resolve_config(name, profile, **overrides)
    model = model_entry(name).build(config)
    model.config = config
    return model


def build_from_config(name: str, config: BaseModel | dict[str, Any]) -> nn.Module:
    """Build from a full Config (e.g. a checkpoint's config.json), no preset applied."""
    entry = model_entry(name)
    if isinstance(config, dict):
        config = resolve_config(name, None, **config)
    model = entry.build(config)
    model.config = config
    return model
