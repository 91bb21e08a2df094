"""Ablation grids and search spaces as data: one YAML file per family (`poseops/grids/<family>.yaml`).

A grid names its axes; each axis has levels, each level a set of `params.yaml` overrides written as
dotted keys (the form `dvc exp run -S key=value` takes). A row is one combination of levels (its name
joins the level names with "/"); a trial is a row at one training seed. The file also carries what the
grid reproduces: the paper's table, its rows and numbers (numbers only) and a citation.

    grid = load_grid("handmle", "noise")
    grid.rows()       # 6 rows: mle/clean, integral_l1/clean, ...
    grid.trials()     # 18 trials: every row at seeds 0, 1, 2 (seed-major)
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from poseops.errors import ConfigError

ROW_SEPARATOR = "/"
SEED_KEY = "families.{family}.train.seed"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputFrom(Strict):
    """A row whose input is another family's predictions (e.g. a lifter fed by a 2D family's variant)."""

    family: str
    grid: str | None = Field(
        None, description="the other family's grid holding the variant (None: its params.yaml)"
    )
    row: str | None = Field(
        None, description="that grid's row (None: the other family as configured)"
    )


class Level(Strict):
    set: dict[str, Any] = Field(
        default_factory=dict, description="params.yaml overrides, dotted keys"
    )
    input_from: InputFrom | None = None


class Axis(Strict):
    name: str
    levels: dict[str, Level]

    @model_validator(mode="after")
    def _levels(self) -> Axis:
        if len(self.levels) < 2:
            raise ValueError(f"axis {self.name!r} needs at least 2 levels, got {list(self.levels)}")
        for level in self.levels:
            if ROW_SEPARATOR in level:
                raise ValueError(
                    f"axis {self.name!r}: level name {level!r} must not contain {ROW_SEPARATOR!r}"
                )
        return self


class PaperGap(Strict):
    a: str
    b: str
    metric: str
    value: float = Field(description="a minus b, in the paper's units")


class Paper(Strict):
    citation: str
    table: str
    dataset: str
    metrics: list[str]
    rows: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="row name -> {metric: value}"
    )
    gaps: list[PaperGap] = []
    claims: list[str] = []


class Grid(Strict):
    """One ablation: axes (cartesian product = rows), seeds, and the paper's numbers they reproduce."""

    family: str
    name: str
    description: str = ""
    paper: Paper
    axes: list[Axis]
    fixed: dict[str, Any] = Field(default_factory=dict, description="overrides every row shares")
    seeds: list[int] = [0]
    compare: list[tuple[str, str]] = Field(
        default_factory=list, description="row pairs whose gap is tested"
    )
    metric: str = "pck"
    paper_scale: float = 1.0
    protocol: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Grid:
        names = set(self.row_names())
        for row in self.paper.rows:
            if row not in names:
                raise ValueError(
                    f"paper.rows: {row!r} is not a row of this grid (rows: {sorted(names)})"
                )
        for gap in self.paper.gaps:
            for side in (gap.a, gap.b):
                if not any(side in r.split(ROW_SEPARATOR) or side == r for r in names):
                    raise ValueError(f"paper.gaps: {side!r} names no row or level of this grid")
        for a, b in self.compare:
            for side in (a, b):
                if side not in names:
                    raise ValueError(
                        f"compare: {side!r} is not a row of this grid (rows: {sorted(names)})"
                    )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        if len({a.name for a in self.axes}) != len(self.axes):
            raise ValueError("axis names must be distinct")
        return self

    @property
    def val_metric(self) -> str:
        return f"val_{self.metric}"

    def row_names(self) -> list[str]:
        return [
            ROW_SEPARATOR.join(combo)
            for combo in itertools.product(*(list(a.levels) for a in self.axes))
        ]

    def rows(self) -> list[Row]:
        rows = []
        for combo in itertools.product(*(list(a.levels.items()) for a in self.axes)):
            overrides: dict[str, Any] = dict(self.fixed)
            inputs = [level.input_from for _, level in combo if level.input_from is not None]
            for _, level in combo:
                overrides.update(level.set)
            rows.append(
                Row(
                    name=ROW_SEPARATOR.join(name for name, _ in combo),
                    labels={axis.name: name for axis, (name, _) in zip(self.axes, combo)},
                    overrides=overrides,
                    input_from=inputs[-1] if inputs else None,
                )
            )
        return rows

    def trials(self, seeds: list[int] | None = None) -> list[Trial]:
        """Every row at every seed, seed-major: a grid stopped early still covers every row once."""
        seed_key = SEED_KEY.format(family=self.family)
        return [
            Trial(
                name=f"{row.name}@s{seed}",
                row=row.name,
                seed=seed,
                labels=row.labels,
                overrides={**row.overrides, seed_key: seed},
                input_from=row.input_from,
            )
            for seed in (seeds if seeds is not None else self.seeds)
            for row in self.rows()
        ]


@dataclass(frozen=True)
class Row:
    name: str
    labels: dict[str, str]
    overrides: dict[str, Any]
    input_from: InputFrom | None = None


@dataclass(frozen=True)
class Trial:
    name: str
    row: str
    seed: int
    labels: dict[str, str]
    overrides: dict[str, Any] = field(default_factory=dict)
    input_from: InputFrom | None = None

    def as_config(self) -> dict[str, Any]:
        """Plain data for a Tune trial's config (kept in Tune's experiment state, so a restore has it)."""
        return {
            "name": self.name,
            "row": self.row,
            "seed": self.seed,
            "labels": dict(self.labels),
            "overrides": dict(self.overrides),
            "input_from": self.input_from.model_dump() if self.input_from else None,
        }


# ---------------------------------------------------------------- search spaces (random / optuna)
class Dimension(Strict):
    """One searched key: `uniform`/`loguniform` over [low, high], `randint` over [low, high), or `choice`."""

    kind: Literal["uniform", "loguniform", "randint", "choice"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Dimension:
        if self.kind == "choice":
            if not self.values:
                raise ValueError("choice needs a non-empty `values`")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{self.kind} needs low < high, got low={self.low}, high={self.high}")
        elif self.kind == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")
        return self


class Space(Strict):
    description: str = ""
    fixed: dict[str, Any] = Field(default_factory=dict)
    dimensions: dict[str, Dimension]


class TuneSettings(Strict):
    """How a family's trials run; CLI options override these."""

    max_concurrent_trials: int = Field(2, ge=1)
    cpus_per_trial: float | None = Field(
        None,
        gt=0,
        description="CPUs of a trial's Ray Train workers together (split over train.num_workers); "
        "None: the family's train.cpus_per_worker as in params.yaml",
    )
    trial_retries: int = Field(
        1,
        ge=0,
        description="times a failed trial runs again; its Ray Train run (same name and storage) "
        "restores from its last registered checkpoint, so a lost worker group costs an epoch at most",
    )
    scheduler: Literal["fifo", "asha"] = "fifo"
    asha_grace_epochs: int = Field(2, ge=1)
    asha_reduction_factor: int = Field(2, ge=2)


class FamilyGrids(Strict):
    family: str
    metric: str
    paper_scale: float = 1.0
    protocol: str = ""
    fixed: dict[str, Any] = Field(default_factory=dict)
    tune: TuneSettings = TuneSettings()
    grids: dict[str, dict[str, Any]]
    spaces: dict[str, Space] = Field(default_factory=dict)


def grids_dir() -> Path:
    return Path(str(resources.files("poseops") / "grids"))


def grid_file(family: str, folder: str | Path | None = None) -> Path:
    path = Path(folder or grids_dir()) / f"{family}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in Path(folder or grids_dir()).glob("*.yaml"))
        raise ConfigError(
            f"{path}: no grid file for family {family!r}; grid files: {', '.join(known) or 'none'}"
        )
    return path


def _describe(exc: ValidationError, source: str) -> str:
    return "\n".join(
        f"{source}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
    )


def load_family_grids(family: str, folder: str | Path | None = None) -> FamilyGrids:
    """The family's grid file, validated (ConfigError names the file and the key)."""
    path = grid_file(family, folder)
    try:
        raw = yaml.safe_load(path.read_text())
        found = FamilyGrids.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path))) from None
    if found.family != family:
        raise ConfigError(f"{path}: family: says {found.family!r}, the file is for {family!r}")
    for name in found.grids:  # every grid validates on load, not only the one asked for
        _grid(found, name, path)
    return found


def _grid(found: FamilyGrids, name: str, path: Path) -> Grid:
    body = dict(found.grids[name])
    body["fixed"] = {**found.fixed, **body.get("fixed", {})}
    try:
        return Grid.model_validate(
            {
                "family": found.family,
                "name": name,
                "metric": found.metric,
                "paper_scale": found.paper_scale,
                "protocol": found.protocol,
                **body,
            }
        )
    except ValidationError as exc:
        raise ConfigError(_describe(exc, f"{path}: grids.{name}")) from None


def load_grid(family: str, name: str, folder: str | Path | None = None) -> Grid:
    found = load_family_grids(family, folder)
    if name not in found.grids:
        raise ConfigError(
            f"{grid_file(family, folder)}: no grid {name!r}; grids: {', '.join(found.grids)}"
        )
    return _grid(found, name, grid_file(family, folder))


def load_space(family: str, name: str, folder: str | Path | None = None) -> Space:
    found = load_family_grids(family, folder)
    if name not in found.spaces:
        raise ConfigError(
            f"{grid_file(family, folder)}: no search space {name!r}; spaces: "
            f"{', '.join(found.spaces) or 'none'}"
        )
    return found.spaces[name]


def list_grids(folder: str | Path | None = None) -> dict[str, list[str]]:
    """family -> its grid names, for every grid file."""
    return {
        p.stem: list(load_family_grids(p.stem, folder).grids)
        for p in sorted(Path(folder or grids_dir()).glob("*.yaml"))
    }


# ---------------------------------------------------------------- overrides on params
def apply_overrides(
    raw_params: Mapping[str, Any], overrides: Mapping[str, Any], source: str = "grid"
) -> dict[str, Any]:
    """A deep copy of a params mapping with dotted-key overrides set; ConfigError for a key whose parent
    is missing (a typo would otherwise add a key the schema then rejects without naming the grid)."""
    params = copy.deepcopy(dict(raw_params))
    for key, value in overrides.items():
        node: Any = params
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(
                    f"{source}: override {key!r}: params has no {'.'.join(parts[: depth + 1])!r}"
                )
            node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(
                f"{source}: override {key!r}: {'.'.join(parts[:-1])!r} is not a mapping"
            )
        node[parts[-1]] = copy.deepcopy(value)
    return params


def data_overrides(overrides: Mapping[str, Any], family: str) -> dict[str, Any]:
    """The overrides that change a family's training data (capture, split or its data block)."""
    return {
        k: v
        for k, v in overrides.items()
        if k.startswith(("data.", f"families.{family}.data."))
        and not k.startswith(f"families.{family}.data.augment.")
    }
