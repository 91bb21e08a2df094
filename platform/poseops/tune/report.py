"""A grid's result table beside the paper's numbers: `reports/grids/<family>_<grid>.{md,csv,png,json}`.

Each trial's checkpoint is selected on the validation split and scored on the test split. Per row: mean and
sample SD over seeds of the test metric (what the table reports) and of the best validation metric (a
column beside it); per compared pair: the test gap, the pooled SD and whether the gap exceeds 2 pooled SDs
(None with one run: no spread to compare against); and the paper's value or gap beside ours, on the
paper's scale (percent) where it prints one.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poseops.metrics.gaps import reproduced
from poseops.storage import write_json_atomic
from poseops.tune.grids import Grid


def summarise(grid: Grid, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per grid row (in grid order), with the runs found for it (a missing row has 0 runs)."""
    entries = []
    for row in grid.rows():
        runs = sorted((r for r in rows if r["row"] == row.name), key=lambda r: r["seed"])
        test, val = _stats([r["value"] for r in runs]), _stats([r.get("val_value") for r in runs])
        entries.append(
            {
                "row": row.name,
                **row.labels,
                "runs": len(runs),
                "seeds": [r["seed"] for r in runs],
                **test,
                **{f"val_{k}": v for k, v in val.items()},
                "epochs_run": [r["epochs_run"] for r in runs],
                "paper": grid.paper.rows.get(row.name, {}),
            }
        )
    return entries


def _stats(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample SD (n-1; 0 for one value) of a row's per-seed numbers; None when there are none.
    A missing number (a trial without the score) counts as NaN, so it shows rather than vanishes."""
    array = np.array([np.nan if v is None else v for v in values], dtype=float)
    return {
        "mean": float(array.mean()) if len(array) else None,
        "sd": float(array.std(ddof=1)) if len(array) > 1 else (0.0 if len(array) else None),
        "values": array.round(4).tolist(),
    }


def gaps(grid: Grid, summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    by_row = {e["row"]: e for e in summary}
    out = []
    for a, b in grid.compare:
        first, second = by_row[a], by_row[b]
        if not first["runs"] or not second["runs"]:
            out.append(
                {
                    "a": a,
                    "b": b,
                    "difference": None,
                    "pooled_sd": None,
                    "exceeds_2sd": None,
                    "paper": paper_gap(grid, a, b),
                }
            )
            continue
        difference = first["mean"] - second["mean"]
        pooled = math.sqrt((first["sd"] ** 2 + second["sd"] ** 2) / 2)
        enough = first["runs"] > 1 and second["runs"] > 1
        out.append(
            {
                "a": a,
                "b": b,
                "difference": difference,
                "pooled_sd": pooled,
                "exceeds_2sd": bool(abs(difference) > 2 * pooled) if enough else None,
                "paper": paper_gap(grid, a, b),
            }
        )
    return out


def paper_gap(grid: Grid, a: str, b: str) -> float | None:
    """The paper's a - b in its own units: a printed gap whose levels match, or the difference of two rows."""
    metric = grid.paper.metrics[0] if grid.paper.metrics else None
    rows = grid.paper.rows
    if a in rows and b in rows and metric in rows[a] and metric in rows[b]:
        return rows[a][metric] - rows[b][metric]
    levels_a, levels_b = set(a.split("/")), set(b.split("/"))
    for gap in grid.paper.gaps:
        if gap.a in levels_a and gap.b in levels_b:
            return gap.value
    return None


def build_report(
    grid: Grid, rows: Sequence[Mapping[str, Any]], dataset: Mapping[str, Any]
) -> dict[str, Any]:
    summary = summarise(grid, rows)
    split_rules = sorted({r["test_split_rule"] for r in rows if r.get("test_split_rule")})
    return {
        "family": grid.family,
        "grid": grid.name,
        "description": grid.description,
        "metric": grid.metric,
        "val_metric": grid.val_metric,
        "protocol": protocol(grid, split_rules),
        "test_split": split_rules,
        "dataset": dict(dataset),
        "paper": grid.paper.model_dump(mode="json"),
        "paper_scale": grid.paper_scale,
        "summary": summary,
        "gaps": gaps(grid, summary),
        "trials": [dict(r) for r in rows],
        "missing_rows": [e["row"] for e in summary if not e["runs"]],
    }


def protocol(grid: Grid, test_split_rules: Sequence[str]) -> str:
    """The line a table states: what selected each trial's checkpoint, and what scored it."""
    where = "; ".join(test_split_rules) or "the test split"
    return (
        f"{grid.metric} on the test split ({where}) of each trial's checkpoint, scored by the evaluate "
        f"stage; the checkpoint is selected by {grid.val_metric} on the validation split "
        f"({grid.protocol.strip() or 'best epoch'}), shown as its own column"
    )


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(report: Mapping[str, Any]) -> str:
    paper, scale, metric = report["paper"], report["paper_scale"], report["metric"]
    val_metric = report.get("val_metric", f"val_{metric}")
    first = paper["metrics"][0] if paper["metrics"] else "metric"
    data = report["dataset"]
    lines = [
        f"# {report['family']} / {report['grid']}",
        "",
        report["description"].strip(),
        "",
        f"- Dataset: **{data['name']}** ({data['split']}), checksum(s): "
        + ", ".join(f"`{c}`" for c in data["checksums"]),
        f"- Protocol: {report['protocol']}",
        f"- Configuration: params.yaml profile `{report.get('profile', '?')}`, the grid's overrides per row"
        + (
            ", and for every trial "
            + ", ".join(f"`{k}={v}`" for k, v in report["extra_overrides"].items())
            if report.get("extra_overrides")
            else ""
        )
        + ".",
        f"- Reproduces: {paper['table']} of {paper['citation']}; the paper's dataset: {paper['dataset']}.",
        f"- Ours: mean ± SD (sample, n-1) over seeds of test {metric}; paper: {first} as printed"
        + (f" (ours × {1 / scale:g} to compare)" if scale != 1 else "")
        + ".",
        "",
        f"| row | runs | ours test {metric} | ours (paper scale) | paper {first} | ours {val_metric} "
        "(selection) | epochs run |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in report["summary"]:
        ours = "not run" if e["mean"] is None else f"{e['mean']:.3f} ± {e['sd']:.3f}"
        scaled = "" if e["mean"] is None else f"{e['mean'] / scale:.1f} ± {e['sd'] / scale:.1f}"
        val = "" if e.get("val_mean") is None else f"{e['val_mean']:.3f} ± {e['val_sd']:.3f}"
        printed = e["paper"].get(first)
        lines.append(
            f"| {e['row']} | {e['runs']} | {ours} | {scaled} | {'—' if printed is None else printed} | "
            f"{val} | {e['epochs_run']} |"
        )
    if report["gaps"]:
        lines += [
            "",
            "| a − b | ours | pooled SD | gap > 2 SD | paper | the paper's gap here |",
            "|---|---|---|---|---|---|",
        ]
        verdict = {True: "yes", False: "no", None: "n/a (fewer than 2 runs each)"}
        for g in report["gaps"]:
            ours = (
                "n/a"
                if g["difference"] is None
                else f"{g['difference']:+.4f} ({g['difference'] / scale:+.2f})"
            )
            printed = "—" if g["paper"] is None else f"{g['paper']:+.2f}"
            lines.append(
                f"| {g['a']} − {g['b']} | {ours} | {_fmt(g['pooled_sd'], 4)} | {verdict[g['exceeds_2sd']]} "
                f"| {printed} | {reproduced(g['difference'], g['paper'], g['exceeds_2sd'])} |"
            )
    for claim in paper.get("claims", []):
        lines += ["", f"Paper's claim (no numbers printed): {claim}."]
    if report["missing_rows"]:
        lines += ["", f"Rows not run: {', '.join(report['missing_rows'])}."]
    if report.get("seeds_missing"):
        key = f"{report['family']}_{report['grid']}"
        lines += [
            "",
            f"Seeds run: {', '.join(map(str, report['seeds_run']))}; not yet run: "
            f"{', '.join(map(str, report['seeds_missing']))} (the grid file asks for them: "
            + ", ".join(
                f"`dvc repro grids/dvc.yaml:grid@{key}_s{s}`" for s in report["seeds_missing"]
            )
            + f", then `dvc repro grids/dvc.yaml:table@{key}`). Until then, SDs are over fewer seeds.",
        ]
    return "\n".join(lines) + "\n"


def csv_text(report: Mapping[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    first = report["paper"]["metrics"][0] if report["paper"]["metrics"] else ""
    writer.writerow(
        [
            "family",
            "grid",
            "row",
            "runs",
            "metric",
            "mean",
            "sd",
            "values",
            "val_metric",
            "val_mean",
            "val_sd",
            "paper_metric",
            "paper_value",
            "dataset",
            "dataset_checksums",
        ]
    )
    for e in report["summary"]:
        writer.writerow(
            [
                report["family"],
                report["grid"],
                e["row"],
                e["runs"],
                report["metric"],
                "" if e["mean"] is None else f"{e['mean']:.6f}",
                "" if e["sd"] is None else f"{e['sd']:.6f}",
                " ".join(f"{v:.4f}" for v in e["values"]),
                report.get("val_metric", ""),
                "" if e.get("val_mean") is None else f"{e['val_mean']:.6f}",
                "" if e.get("val_sd") is None else f"{e['val_sd']:.6f}",
                first,
                e["paper"].get(first, ""),
                report["dataset"]["name"],
                " ".join(report["dataset"]["checksums"]),
            ]
        )
    return out.getvalue()


def write_report(report: Mapping[str, Any], stem: Path) -> list[Path]:
    """<stem>.json, .md, .csv and .png (ours mean ± SD per row beside the paper's value on its scale)."""
    from poseops.viz.curves import plot_grouped_bars

    stem.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(stem.with_suffix(".json"), report)
    stem.with_suffix(".md").write_text(markdown(report))
    stem.with_suffix(".csv").write_text(csv_text(report))
    scale, first = report["paper_scale"], (report["paper"]["metrics"] or ["metric"])[0]
    rows = [e["row"] for e in report["summary"]]
    series = {
        "ours": (
            [0.0 if e["mean"] is None else e["mean"] / scale for e in report["summary"]],
            [0.0 if e["sd"] is None else e["sd"] / scale for e in report["summary"]],
        )
    }
    if any(first in e["paper"] for e in report["summary"]):
        series["paper"] = (
            [e["paper"].get(first, 0.0) for e in report["summary"]],
            [0.0] * len(rows),
        )
    plot_grouped_bars(
        stem.with_suffix(".png"),
        rows,
        series,
        f"{first} (paper scale)",
        f"{report['family']} {report['grid']} on {report['dataset']['name']} data",
    )
    return [stem.with_suffix(s) for s in (".json", ".md", ".csv", ".png")]
