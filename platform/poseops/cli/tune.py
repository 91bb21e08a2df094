"""`poseops tune <family> --grid <name>` and `poseops tune <family> --search optuna|random --space <name>`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from poseops.cli.common import console, friendly
from poseops.errors import ConfigError


@friendly
def tune_cmd(
    family: Annotated[
        str, typer.Argument(help="model family (its grids: poseops/grids/<family>.yaml)")
    ],
    grid: Annotated[
        str | None, typer.Option(help="run this grid of the family's grid file")
    ] = None,
    search: Annotated[
        str | None, typer.Option(help="search instead of a grid: optuna or random")
    ] = None,
    space: Annotated[
        str | None, typer.Option(help="the search space (spaces: in the grid file)")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="search: number of trials")] = 8,
    scheduler: Annotated[
        str | None, typer.Option(help="fifo or asha (default: the grid file's tune.scheduler)")
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(min=1, help="trials at once (default: tune.max_concurrent_trials)")
    ] = None,
    cpus_per_trial: Annotated[
        float | None,
        typer.Option(
            help="CPUs of each trial's Train workers together (default: tune.cpus_per_trial)"
        ),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option(help="comma-separated training seeds (default: the grid's)")
    ] = None,
    rows: Annotated[
        str | None, typer.Option(help="comma-separated rows to run (default: all)")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-S",
            help="extra params override key=value for every trial (e.g. a shorter schedule)",
        ),
    ] = None,
    apply: Annotated[
        bool, typer.Option(help="write the best row's values into params.yaml")
    ] = False,
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
    storage: Annotated[
        str | None, typer.Option(help="Tune state folder (default .poseops/tune)")
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="list the family's grids and spaces, run nothing")
    ] = False,
    part: Annotated[
        bool,
        typer.Option(
            help="run one seed (--seeds S) of every row into reports/grids/parts/, for --table to join"
        ),
    ] = False,
    table: Annotated[
        bool, typer.Option(help="table the grid's parts that have run (no training)")
    ] = False,
) -> None:
    """Run one of a family's ablation grids (or a search) with Ray Tune; one Ray Train run per trial.

    Rerunning the same grid resumes it (finished trials are kept). Tables go to reports/grids/.
    """
    from poseops import tune as tuning
    from poseops.tune.grids import load_family_grids, load_grid

    if list_:
        found = load_family_grids(family)
        for name in found.grids:
            g = load_grid(family, name)
            console.print(
                f"grid  {name:16s} {len(g.rows())} rows x {len(g.seeds)} seeds  ({g.paper.table})"
            )
        for name, s in found.spaces.items():
            console.print(f"space {name:16s} {', '.join(s.dimensions)}")
        return
    if (grid is None) == (search is None):
        raise ConfigError("give either --grid <name> or --search optuna|random --space <name>")
    root = params.resolve().parent
    settings = tuning.settings_for(
        family,
        scheduler=scheduler,
        max_concurrent_trials=max_concurrent,
        cpus_per_trial=cpus_per_trial,
    )
    extra = tuning.parse_sets(set_ or [])
    if grid is not None and table:
        report = tuning.grid_table(family, grid, root)
        show_grid(report)
        console.print(
            f"table: {tuning.report_stem(root, family, grid)}.md (seeds {report['seeds_run']}; "
            f"not yet run: {report['seeds_missing'] or 'none'})"
        )
        return
    if grid is not None:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
        row_list = rows.split(",") if rows else None
        report = tuning.run_grid(
            family,
            grid,
            root,
            params,
            settings,
            extra,
            seed_list,
            storage,
            rows=row_list,
            part=part,
        )
        if part:
            console.print(
                f"part: {tuning.part_path(root, family, grid, seed_list[0])} "
                f"({len(report['trials'])} trials; `poseops tune {family} --grid {grid} --table` joins the parts)"
            )
            return
        show_grid(report)
        console.print(
            f"table: {tuning.report_stem(root, family, grid)}.md (MLflow parent run "
            f"{report['mlflow_parent_run']})"
        )
        if report["errors"]:
            console.print(f"[red]{len(report['errors'])} trial(s) failed[/]: {report['errors'][0]}")
        if apply:
            row, overrides = tuning.best_grid_row(report, load_grid(family, grid))
            line = tuning.apply_to_params(params, overrides, family)
            console.print(
                f"applied row {row!r} to {params}; the same as a single experiment:\n{line}"
            )
        return
    if space is None:
        raise ConfigError("--search needs --space <name> (see poseops tune <family> --list)")
    found = tuning.run_search(
        family, space, search, samples, root, params, settings, extra, storage
    )
    for row in found["rows"]:
        console.print(
            f"{row['val_metric']} {row['val_value']:.4f}  test {row['metric']} {row['value']:.4f}  "
            f"{row['name']}"
        )
    best = found["best"]
    console.print(
        f"best on validation: {best['name']} {best['val_metric']} {best['val_value']:.4f}, test "
        f"{best['metric']} {best['value']:.4f} (checkpoint {best['checkpoint_path']})"
    )
    if apply:
        chosen = {
            k: v for k, v in best["overrides"].items() if k in found["searched"]
        }  # not --set, resources
        line = tuning.apply_to_params(params, chosen, family)
        console.print(f"applied to {params}; the same as a single experiment:\n{line}")


def show_grid(report: dict) -> None:
    table = Table(
        title=f"{report['family']} / {report['grid']} (test {report['metric']}, {report['dataset']['name']})"
    )
    for column in ("row", "runs", "test mean ± SD", "paper", "validation (selection)"):
        table.add_column(column)
    first = (report["paper"]["metrics"] or [""])[0]
    for e in report["summary"]:
        ours = "not run" if e["mean"] is None else f"{e['mean']:.3f} ± {e['sd']:.3f}"
        val = "" if e.get("val_mean") is None else f"{e['val_mean']:.3f} ± {e['val_sd']:.3f}"
        table.add_row(e["row"], str(e["runs"]), ours, str(e["paper"].get(first, "—")), val)
    console.print(table)
