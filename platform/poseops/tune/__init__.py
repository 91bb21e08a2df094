"""Ray Tune runs the ablation grids (data: `poseops/grids/<family>.yaml`) and searches.

    from poseops.tune import run_grid
    report = run_grid("handmle", "a2_loss", root=Path("."))        # reports/grids/handmle_a2_loss.*

A single experiment stays `dvc exp run -S key=value`; `apply_best` writes a grid's or search's winner
into params.yaml so it goes through the pipeline's train -> evaluate -> promote like any change.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from poseops.config import read_yaml
from poseops.errors import ConfigError
from poseops.tune.grids import (
    SEED_KEY,
    Grid,
    TuneSettings,
    apply_overrides,
    load_family_grids,
    load_grid,
    load_space,
)

REPORTS = Path("reports") / "grids"
PARTS = (
    REPORTS / "parts"
)  # one JSON per (grid, seed) run alone: grids/dvc.yaml's stages, tabled together


def state_root(root: Path) -> Path:
    return root / ".poseops" / "tune"


def report_stem(root: Path, family: str, grid: str) -> Path:
    return root / REPORTS / f"{family}_{grid}"


def part_path(root: Path, family: str, grid: str, seed: int) -> Path:
    """Where `run_grid(..., part=True)` leaves one seed's trials of a grid."""
    return root / PARTS / f"{family}_{grid}" / f"s{seed}.json"


def settings_for(family: str, **overrides: Any) -> TuneSettings:
    """The family's tune settings from its grid file, with the CLI's values (None: keep) over them."""
    base = load_family_grids(family).tune
    return base.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def parse_sets(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` strings (values as YAML, like `dvc exp run -S`) -> {key: value}."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def dataset_facts(
    params_raw: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Name (synthetic, or real when annotations are imported), split and checksums of the data the rows used."""
    from poseops.tune.adapter import dataset_card, dataset_checksum

    urls = sorted({r["dataset_url"] for r in rows})
    checksums = [dataset_checksum(dataset_card(url)) for url in urls]
    real = bool(params_raw.get("data", {}).get("annotations"))
    split = params_raw.get("data", {}).get("split", {})
    return {
        "name": "real" if real else "synthetic",
        "checksums": checksums,
        "urls": urls,
        "split": f"test split scored, validation split selects (by {split.get('by', 'subject')}, "
        f"test_fraction {split.get('test_fraction')}, val_fraction {split.get('val_fraction')}, "
        f"split seed {split.get('seed')}; disjoint)",
    }


def state_key(
    base: Mapping[str, Any], trials: Sequence[Any], extra: Mapping[str, Any] | None
) -> str:
    """8 hex of what a grid's results depend on (params, every trial, the extra overrides): the same inputs
    resume the same Tune state; a changed params.yaml starts a fresh one instead of reusing stale trials."""
    content = {
        "params": base,
        "trials": [t.as_config() for t in trials],
        "extra": dict(extra or {}),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_grid(
    family: str,
    grid_name: str,
    root: Path,
    params_path: Path | None = None,
    settings: TuneSettings | None = None,
    extra_overrides: Mapping[str, Any] | None = None,
    seeds: Sequence[int] | None = None,
    storage_path: str | None = None,
    tracking: bool = True,
    rows: Sequence[str] | None = None,
    part: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a grid with Ray Tune and write its table; returns the report.

    With `part`, one seed only: its trials go to `part_path(...)` and its checkpoints under
    models/grids/<family>_<grid>/s<seed>/, for `grid_table` to table with the other seeds' parts; so a
    grid too long for one session runs as one DVC stage per seed, each cached when it ends."""
    grid = load_grid(family, grid_name)
    if part and (seeds is None or len(seeds) != 1 or rows):
        raise ConfigError("a grid part is one seed of every row: give exactly one seed and no rows")
    trials = grid.trials(list(seeds) if seeds is not None else None)
    if rows:
        unknown = sorted(set(rows) - set(grid.row_names()))
        if unknown:
            raise ConfigError(
                f"--rows {unknown}: not rows of {family}/{grid_name} ({', '.join(grid.row_names())})"
            )
        trials = [t for t in trials if t.row in rows]
    from poseops.tune import report as reporting
    from poseops.tune.runner import (  # Ray: only once the grid is known good
        GridRun,
        result_rows,
        run_trials,
    )

    params_path = params_path or root / "params.yaml"
    base = read_yaml(params_path)
    settings = settings or settings_for(family)
    key = state_key(
        base, trials, {**(extra_overrides or {}), "cpus_per_trial": settings.cpus_per_trial}
    )
    run = GridRun(
        family=family,
        name=f"{family}_{grid_name}_{key}",
        trials=trials,
        base_params=base,
        project_root=root,
        storage_path=storage_path or str(state_root(root)),
        settings=settings,
        extra_overrides=dict(extra_overrides or {}),
        tracking=tracking,
        description=grid.description,
    )
    results, parent = run_trials(run)
    found = result_rows(results, family)
    facts = {
        "mlflow_parent_run": parent,
        "errors": [str(r.error)[:500] for r in results if r.error is not None],
        "extra_overrides": dict(extra_overrides or {}),
        "profile": base.get("profile"),
        "tune_state": str(Path(run.storage_path) / run.name),
    }
    published = checkpoints_root(root, family, grid_name)
    if part:
        (seed,) = seeds
        done = {
            "family": family,
            "grid": grid_name,
            "seed": seed,
            "trials": found,
            "dataset": dataset_facts(base, found),
            **facts,
            "checkpoints": publish_row_checkpoints(
                family, found, root, published / f"s{seed}", run.storage_path
            ),
        }
        from poseops.storage import write_json_atomic

        write_json_atomic(part_path(root, family, grid_name, seed), project_relative(done, root))
        return done
    report = reporting.build_report(grid, found, dataset_facts(base, found))
    report.update(facts)
    report["checkpoints"] = publish_row_checkpoints(
        family, found, root, published, run.storage_path
    )
    reporting.write_report(project_relative(report, root), report_stem(root, family, grid_name))
    return report


def grid_table(family: str, grid_name: str, root: Path) -> dict[str, Any]:
    """The table of a grid run as one part per seed (`run_grid(..., part=True)`): every part found,
    tabled as one run of all its seeds would be; each row's checkpoint is the one of the seed validation
    prefers. The seeds not run yet are listed (`seeds_missing`). Writes and returns the report."""
    from poseops.families import get_family
    from poseops.storage import read_json
    from poseops.tune import report as reporting

    grid = load_grid(family, grid_name)
    folder = root / PARTS / f"{family}_{grid_name}"
    parts = sorted((read_json(p) for p in folder.glob("s*.json")), key=lambda part: part["seed"])
    if not parts:
        raise ConfigError(
            f"{folder}: no grid part has run; run `dvc repro grids/dvc.yaml:grid@{family}_{grid_name}_s<seed>` "
            f"(or `poseops tune {family} --grid {grid_name} --seeds <seed> --part`)"
        )
    trials = [t for part in parts for t in part["trials"]]
    data = parts[0]["dataset"]
    dataset = {
        **data,
        "checksums": sorted({c for part in parts for c in part["dataset"]["checksums"]}),
        "urls": sorted({u for part in parts for u in part["dataset"]["urls"]}),
    }
    report = reporting.build_report(grid, trials, dataset)
    val_of = {t["name"]: t["val_value"] for t in trials}
    by_row: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        for row, entry in part["checkpoints"].items():
            by_row.setdefault(row, []).append({**entry, "val_value": val_of.get(entry["trial"])})
    chosen = {
        row: {
            k: v
            for k, v in get_family(family).best(entries, key="val_value").items()
            if k != "val_value"
        }
        for row, entries in by_row.items()
    }
    seeds_run = [part["seed"] for part in parts]
    report.update(
        {
            "mlflow_parent_run": [part["mlflow_parent_run"] for part in parts],
            "errors": [e for part in parts for e in part["errors"]],
            "extra_overrides": parts[0]["extra_overrides"],
            "profile": parts[0]["profile"],
            "tune_state": [part["tune_state"] for part in parts],
            "checkpoints": dict(sorted(chosen.items())),
            "seeds_run": seeds_run,
            "seeds_missing": [s for s in grid.seeds if s not in seeds_run],
        }
    )
    reporting.write_report(report, report_stem(root, family, grid_name))
    return report


def checkpoints_root(root: Path, family: str, grid: str) -> Path:
    """Where a grid publishes each row's selected checkpoint (a DVC output of its grids/dvc.yaml stage)."""
    return root / "models" / "grids" / f"{family}_{grid}"


def publish_row_checkpoints(
    family: str,
    rows: Sequence[Mapping[str, Any]],
    root: Path,
    folder: Path,
    storage_path: str,
) -> dict[str, dict[str, Any]]:
    """Publish, per grid row, the checkpoint of the trial validation selects (its best seed by the
    validation score; the test split only reports) at `folder/<row>`, so a table's variants can be
    evaluated, served, or fed to another family's grid (`input_from`) on any machine holding the DVC
    cache. Returns {row: {"path" (project-relative), "trial", "weights_sha256"}}."""
    from poseops.families import get_family
    from poseops.tune.adapter import publish_trial_checkpoint, safe_name

    by_row: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("checkpoint_path"):
            by_row.setdefault(str(r["row"]), []).append(r)
    published = {}
    for row, trials in sorted(by_row.items()):
        chosen = get_family(family).best([dict(t) for t in trials], key="val_value")
        target = folder / safe_name(row)
        manifest = publish_trial_checkpoint(
            family,
            chosen["checkpoint_path"],
            storage_path,
            target,
            extra={"grid_row": row, "trial": chosen["name"], "val_value": chosen["val_value"]},
        )
        published[row] = {
            "path": target.relative_to(root).as_posix(),
            "trial": chosen["name"],
            "weights_sha256": manifest["files"]["weights.safetensors"]["sha256"],
        }
    return published


def project_relative(value: Any, root: Path) -> Any:
    """`value` (nested dicts and lists) with every string naming a path inside `root` made relative to
    it, so a versioned report names no machine's folders; URLs and outside paths are kept."""
    if isinstance(value, Mapping):
        return {k: project_relative(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [project_relative(v, root) for v in value]
    if isinstance(value, str) and value.startswith(("/", "file://")):
        path = Path(value.removeprefix("file://"))
        if path.is_relative_to(root.resolve()):
            return path.relative_to(root.resolve()).as_posix()
    return value


def run_search(
    family: str,
    space_name: str,
    algorithm: str,
    samples: int,
    root: Path,
    params_path: Path | None = None,
    settings: TuneSettings | None = None,
    extra_overrides: Mapping[str, Any] | None = None,
    storage_path: str | None = None,
    tracking: bool = True,
) -> dict[str, Any]:
    """Random or Optuna search over a space of the family's grid file; returns {"rows", "best"}."""
    from poseops.tune.adapter import metric_mode
    from poseops.tune.runner import GridRun, best_row, result_rows, run_trials

    space = load_space(family, space_name)
    params_path = params_path or root / "params.yaml"
    base = read_yaml(params_path)
    settings = settings or settings_for(family)
    key = state_key(
        base,
        [],
        {
            **(extra_overrides or {}),
            "space": space.model_dump(mode="json"),
            "samples": samples,
            "cpus_per_trial": settings.cpus_per_trial,
        },
    )
    run = GridRun(
        family=family,
        name=f"{family}_search_{space_name}_{algorithm}_{key}",
        trials=[],
        base_params=base,
        project_root=root,
        storage_path=storage_path or str(state_root(root)),
        settings=settings,
        extra_overrides=dict(extra_overrides or {}),
        tracking=tracking,
        description=space.description,
    )
    results, parent = run_trials(run, search=(space, algorithm, samples))
    found = result_rows(results, family)
    return {
        "rows": found,
        "best": best_row(found, metric_mode(family)),
        "mlflow_parent_run": parent,
        "searched": list(space.dimensions),
    }


def best_grid_row(report: Mapping[str, Any], grid: Grid) -> tuple[str, dict[str, Any]]:
    """The row with the best mean validation score (the highest; the lowest for a family whose metric
    improves downwards; ties: grid order) and its grid overrides, without the seed. The test scores the
    table reports play no part in the choice."""
    from poseops.tune.adapter import metric_mode

    entries = [
        e
        for e in report["summary"]
        if e.get("val_mean") is not None and math.isfinite(e["val_mean"])
    ]
    if not entries:
        raise ConfigError(f"{grid.family}/{grid.name}: no row finished; nothing to apply")
    pick = min if metric_mode(grid.family) == "min" else max
    best = pick(entries, key=lambda e: e["val_mean"])
    overrides = next(r.overrides for r in grid.rows() if r.name == best["row"])
    return best["row"], overrides


def apply_to_params(params_path: Path, overrides: Mapping[str, Any], family: str) -> str:
    """Write `overrides` (dotted keys) into params.yaml, validated first; returns the equivalent
    `dvc exp run -S ...` line. Leading comment lines of params.yaml are kept."""
    from poseops.tune.adapter import validated

    overrides = {k: v for k, v in overrides.items() if k != SEED_KEY.format(family=family)}
    text = params_path.read_text()
    raw = apply_overrides(read_yaml(params_path), overrides, source=str(params_path))
    validated(raw, source=f"{params_path} with the applied values")
    header_lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header_lines.append(line)
    header = "\n".join(header_lines) + ("\n" if header_lines else "")
    params_path.write_text(header + yaml.safe_dump(raw, sort_keys=False))
    return "dvc exp run " + " ".join(f"-S '{k}={json.dumps(v)}'" for k, v in overrides.items())
