"""`reports/<family>.md`: one family's results beside its paper's (the `report@<family>` stage).

    metrics/<family>/metrics.json   this checkpoint on the test split (evaluate@<family>)
    plots/<family>/train_history.json   its learning curves (train@<family>)
    poseops/papers/<family>.yaml    the paper's printed numbers with their citation (numbers only)
    reports/grids/<family>_<grid>.json   every grid that has run (table@ stages of grids/dvc.yaml), mean +- SD over seeds
        --> reports/<family>.md and reports/<family>/learning_curves.png

Every number in the report's tables stands in a row that names its dataset (`synthetic` or `real` with the
dataset card's checksum, or the paper's dataset), its split and its protocol
(tests/unit/test_family_report.py checks each row's dataset label).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from poseops.errors import ConfigError
from poseops.metrics.gaps import reproduced

PAPERS = Path(__file__).resolve().parent / "papers"
OURS = ("synthetic", "real", "mixed")


def paper_numbers(family: str, papers: Path = PAPERS) -> dict[str, Any] | None:
    """The family's paper data file (version, citation, dataset, tables of rows), or None when it has none."""
    path = papers / f"{family}.yaml"
    if not path.exists():
        return None
    data = yaml.safe_load(path.read_text())
    for key in ("version", "citation", "dataset", "tables"):
        if key not in data:
            raise ConfigError(f"{path}: missing {key!r}")
    return data


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _row(*cells: Any) -> str:
    return "| " + " | ".join(_fmt(c) for c in cells) + " |"


# what the count-like numbers of metrics.json are (they have no protocol of their own)
COUNTS = {
    "num_samples": "crops scored",
    "num_images": "images scored",
    "num_people": "true people in the images scored",
    "num_frames": "frames scored",
    "num_tracks": "tracks scored",
    "input_size": "side of the evaluated input, px",
}
COCO_SUBSETS = {"50": "at OKS 0.50", "75": "at OKS 0.75", "m": "medium people", "l": "large people"}
BASELINES = {
    "untrained_": "the untrained model of the training seed",
    "mean_pose_": "the training split's mean pose in each box",
}


def ours_label(kind: str, checksum: str | None) -> str:
    """`synthetic` / `real` / `mixed` with the card checksum's first 12 hex."""
    return f"{kind} ({(checksum or '?')[:12]})"


def checkpoint_section(family: str, metrics: Mapping[str, Any], primary: str) -> list[str]:
    """This checkpoint's numbers on the test split, one row each: value, dataset, split, protocol."""
    dataset = ours_label(str(metrics.get("data", "?")), metrics.get("dataset_checksum"))
    split = str(metrics.get("split", "?"))
    protocol = metrics.get("protocol") or {}
    lines = [
        f"## This checkpoint (`evaluate@{family}`)",
        "",
        f"- Split: {metrics.get('split_rule') or split}",
        f"- Loss: {metrics.get('loss') or 'not recorded'}",
        "",
        "| number | value | dataset | split | protocol |",
        "|---|---|---|---|---|",
    ]

    def describe(key: str) -> str:
        if key in COUNTS:
            return COUNTS[key]
        if key == "margin_over_best_baseline":
            return f"{primary} minus the best baseline's {primary} (rows `baseline …`)"
        coco = re.fullmatch(r"(ap|ar)(50|75|m|l)?", key)
        text = protocol.get("ap" if coco else key) or protocol.get(key.split("_")[0]) or ""
        if isinstance(text, Mapping):
            text = ", ".join(f"{k} {v}" for k, v in text.items() if not isinstance(v, (list, dict)))
        if coco and coco.group(2):
            text = f"{COCO_SUBSETS[coco.group(2)]}; {text}"
        return str(text).replace("|", "/") or "see metrics.json"

    def describe_baseline(key: str) -> str:
        for prefix, who in BASELINES.items():
            if key.startswith(prefix):
                return f"{who}: {describe(key.removeprefix(prefix))}"
        return describe(primary)

    numbers = {
        k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    for key in [primary, *sorted(k for k in numbers if k != primary)]:
        if key in numbers:
            lines.append(_row(key, numbers[key], dataset, split, describe(key)))
    for key, value in (metrics.get("baselines") or {}).items():
        lines.append(_row(f"baseline {key}", value, dataset, split, describe_baseline(key)))
    for stage, value in (metrics.get("per_stage_pck") or {}).items():
        lines.append(
            _row(
                f"{stage} PCK@0.2",
                value,
                dataset,
                split,
                protocol.get("per_stage_pck") or "PCK@0.2 of that stage's output",
            )
        )
    return lines


def paper_section(paper: Mapping[str, Any] | None) -> list[str]:
    if paper is None:
        return ["## The paper's numbers", "", "No paper data file for this family."]
    lines = [
        "## The paper's numbers",
        "",
        f"{paper['citation']} (data file version {paper['version']}; numbers as printed, on the paper's data, "
        "not reproduced here).",
        "",
        "| table | row | metric | value | dataset | split | protocol |",
        "|---|---|---|---|---|---|---|",
    ]
    for table in paper["tables"]:
        for row, values in table["rows"].items():
            for metric, value in values.items():
                lines.append(
                    _row(
                        table["name"],
                        row,
                        metric,
                        _fmt(value, 2),
                        f"paper: {paper['dataset']}",
                        "the paper's test set",
                        table.get("protocol", ""),
                    )
                )
    return lines


def grid_reports(family: str, grids_root: Path) -> list[dict[str, Any]]:
    """Every grid report (`poseops tune`'s JSON beside its CSV) of `family` in grids_root (grids/dvc.yaml's)."""
    found = []
    for path in sorted(grids_root.glob(f"{family}_*.json")):
        data = json.loads(path.read_text())
        if data.get("family") == family and "summary" in data:
            found.append({**data, "path": str(path)})
    return found


def grid_section(family: str, reports: Sequence[Mapping[str, Any]], root: Path) -> list[str]:
    lines = ["## Grids that have run", ""]
    if not reports:
        return [*lines, f"No grid of {family} has run (`poseops tune {family} --grid <name>`)."]
    for report in reports:
        facts = report.get("dataset") or {}
        kind = str(facts.get("name", "?"))
        checksums = ", ".join(c[:12] for c in facts.get("checksums", []))
        dataset = f"{kind} ({checksums})"
        split = str(facts.get("split", "?")).replace("|", "/")
        where = Path(report["path"])
        shown = where.relative_to(root) if where.is_relative_to(root) else where
        lines += [
            f"### {report['grid']} ({report.get('profile', '?')} profile; `{shown}`)",
            "",
            str(report.get("description", "")).strip(),
            "",
            f"Protocol: {report.get('protocol', '?')}",
            "",
            "| row | runs | mean | SD | dataset | split |",
            "|---|---|---|---|---|---|",
        ]
        for row in report["summary"]:
            lines.append(
                _row(row["row"], row.get("runs"), row.get("mean"), row.get("sd"), dataset, split)
            )
        if report.get("gaps"):
            lines += [
                "",
                "| gap | difference | 2 SD | exceeds 2 SD | paper's gap (same scale) | paper's result here | dataset "
                "| split |",
                "|---|---|---|---|---|---|---|---|",
            ]
            scale = float(report.get("paper_scale") or 1.0)
            for gap in report["gaps"]:
                sd, exceeds, paper = gap.get("pooled_sd"), gap.get("exceeds_2sd"), gap.get("paper")
                verdict = "no SD (one seed)" if exceeds is None else ("yes" if exceeds else "no")
                lines.append(
                    _row(
                        f"{gap['a']} - {gap['b']}",
                        gap.get("difference"),
                        None if sd is None else 2 * sd,
                        verdict,
                        None if paper is None else paper * scale,
                        reproduced(gap.get("difference"), paper, exceeds),
                        dataset,
                        split,
                    )
                )
        lines.append("")
    return lines


def profile_preset(root: Path, profile: str, family: str) -> str | None:
    """The model preset `profiles/<profile>.yaml` names for the family (params.yaml holds it resolved)."""
    path = root / "profiles" / f"{profile}.yaml"
    if not path.exists():
        return None
    block = ((yaml.safe_load(path.read_text()) or {}).get("families") or {}).get(family) or {}
    return (block.get("model") or {}).get("preset")


def model_section(
    family: str, profile: str, model: Mapping[str, Any], preset: str | None = None
) -> list[str]:
    shown = ", ".join(f"{k} {v}" for k, v in model.items() if not isinstance(v, (dict, list)))
    return [
        "## Model",
        "",
        f"Profile `{profile}`, preset `{preset or 'none named'}`; `families.{family}.model` in params.yaml "
        f"(the preset with the profile's overrides): {shown}.",
    ]


def learning_curves(history: Sequence[Mapping[str, Any]], path: Path, family: str) -> Path | None:
    """train_loss and every val_* number per epoch (one panel each) -> path; None without history."""
    from poseops.viz.curves import plot_panels

    if not history:
        return None
    epochs = [int(e["epoch"]) + 1 for e in history]
    keys = sorted({k for e in history for k in e if k.startswith("val_")})
    panels = {
        "train_loss": [float(e.get("train_loss", float("nan"))) for e in history],
        **{k: [float(e.get(k, float("nan"))) for e in history] for k in keys},
    }
    return plot_panels(
        path, epochs, panels, "epoch", f"{family}: learning curves (val_*: validation split)"
    )


def render(
    family: str,
    profile: str,
    primary: str,
    model: Mapping[str, Any],
    metrics: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    root: Path,
    out_md: Path,
    papers: Path = PAPERS,
) -> str:
    """Write reports/<family>.md (and its figures in reports/<family>/); returns the Markdown."""
    figures = out_md.parent / family
    figures.mkdir(parents=True, exist_ok=True)
    curves = learning_curves(history, figures / "learning_curves.png", family)
    metrics_dir = root / "metrics" / family
    lines = [
        f"# {family}: results beside the paper",
        "",
        "Rendered by `report@"
        + family
        + "` (`dvc repro`). Our numbers: this checkpoint on the test split of "
        "the family's derived dataset (dataset: kind and card checksum); the paper's numbers are its own, "
        "on its own data. Nothing here is tuned on the test split: validation picks checkpoints and stops.",
        "",
        *model_section(family, profile, model, profile_preset(root, profile, family)),
        "",
        *checkpoint_section(family, metrics, primary),
        "",
        *paper_section(paper_numbers(family, papers)),
        "",
        *grid_section(family, grid_reports(family, root / "reports" / "grids"), root),
        "## Learning curves",
        "",
        f"![learning curves]({family}/learning_curves.png)" if curves else "No training history.",
        "",
        "## Best and worst test samples",
        "",
        "Four best, then four worst (per-sample score of the task; predictions drawn):",
        "",
        f"![best and worst](../metrics/{family}/best_worst.png)"
        if (metrics_dir / "best_worst.png").exists()
        else "No best/worst overlay in metrics/.",
        "",
    ]
    text = "\n".join(lines)
    out_md.write_text(text)
    return text


def table_rows(markdown: str) -> list[dict[str, str]]:
    """Every data row of the report's tables as {column: cell} (tests and readers)."""
    rows, header = [], None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(line) <= set("|-: "):
            rows.append(dict(zip(header, cells, strict=False)))
    return rows
