"""`poseops registry`: the model registry as an MLOps team uses it.

poseops registry list                       every family: champion version and its primary metric
poseops registry show handmle               versions, aliases, gate outcome, evidence
poseops registry promote handmle 3 --why "re-evaluated on the new split" [--strict]
poseops registry rollback handmle --why "latency regression"
poseops registry history handmle            who, when, why, metrics at each promotion
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from poseops.cli.common import console, friendly
from poseops.errors import GateRefused

registry_app = typer.Typer(
    help="The MLflow model registry: champions, promotion, rollback, history.", no_args_is_help=True
)


@registry_app.command("list")
@friendly
def list_cmd() -> None:
    """Every family of params.yaml with its champion version and primary metric."""
    from poseops.families import get_family, load_params
    from poseops.tracking.registry import (
        CHAMPION,
        get_alias_version,
        registered_name,
        version_evidence,
    )

    table = Table(title="registered models")
    for col in ("family", "registered model", "champion", "metric", "value"):
        table.add_column(col)
    for name in load_params().families:
        model, metric = registered_name(name), get_family(name).primary_metric
        version = get_alias_version(model, CHAMPION)
        value = version_evidence(model, version)["metrics"].get(metric) if version else None
        table.add_row(
            name,
            model,
            f"v{version}" if version else "-",
            metric,
            "-" if value is None else f"{value:.4f}",
        )
    console.print(table)


@registry_app.command("show")
@friendly
def show_cmd(family: Annotated[str, typer.Argument(help="family name")]) -> None:
    """Every version of a family: aliases, gate outcome, evaluation data, weights."""
    from poseops.tracking.registry import alias_history, registered_name

    table = Table(title=registered_name(family))
    for col in ("version", "aliases", "gate", "dataset", "weights", "metrics"):
        table.add_column(col)
    for row in alias_history(registered_name(family)):
        tags = row["tags"]
        metrics = ", ".join(
            f"{k[7:]}={float(v):.3f}" for k, v in sorted(tags.items()) if k.startswith("metric.")
        )
        table.add_row(
            row["version"],
            ",".join(row["aliases"]),
            tags.get("gate", "-"),
            tags.get("dataset_checksum", "")[:12],
            tags.get("weights_sha256", "")[:12],
            metrics[:80],
        )
    console.print(table)


@registry_app.command("promote")
@friendly
def promote_cmd(
    family: Annotated[str, typer.Argument(help="family name")],
    version: Annotated[str, typer.Argument(help="version number (or an alias)")],
    why: Annotated[str, typer.Option(help="recorded in the history")] = "promoted by hand",
    strict: Annotated[bool, typer.Option(help="a refusal exits 1 (for CI gates)")] = False,
) -> None:
    """Promote a version by hand: params.yaml's gate, against the champion, on its recorded metrics."""
    from poseops.families import get_family, load_params
    from poseops.tracking.registry import promote

    gate = load_params().families[family].gate if family in load_params().families else None
    try:
        outcome = promote(
            family,
            version,
            gate=gate,
            primary_metric=get_family(family).primary_metric,
            metric_mode=get_family(family).metric_mode,
            why=why,
        )
    except GateRefused as refusal:
        console.print(f"[yellow]refused:[/] {refusal}")
        raise typer.Exit(1 if strict or (gate is not None and gate.strict) else 0) from None
    console.print(
        f"{outcome['name']} v{outcome['version']} is champion"
        + ("" if outcome["changed"] else " already (same weights)")
        + (
            f" (was v{outcome['previous_version']})"
            if outcome["changed"] and outcome["previous_version"]
            else ""
        )
    )


@registry_app.command("rollback")
@friendly
def rollback_cmd(
    family: Annotated[str, typer.Argument(help="family name")],
    why: Annotated[str, typer.Option(help="recorded in the history")] = "rolled back by hand",
) -> None:
    """Point `champion` back at the version that held it before the current one."""
    from poseops.tracking.registry import rollback

    outcome = rollback(family, why=why)
    console.print(
        f"{outcome['name']}: champion v{outcome['previous_version']} -> v{outcome['version']}"
    )


@registry_app.command("history")
@friendly
def history_cmd(family: Annotated[str, typer.Argument(help="family name")]) -> None:
    """Every promotion, refusal and rollback: when, who, which versions, why, metrics."""
    from poseops.tracking.registry import history

    table = Table(title=f"history of {family}")
    for col in ("at", "event", "version", "previous", "by", "why"):
        table.add_column(col)
    for event in history(family):
        table.add_row(
            event["at"],
            event["event"],
            f"v{event['version']}",
            f"v{event['previous']}" if event.get("previous") else "-",
            event["by"],
            event.get("why", ""),
        )
    console.print(table)
