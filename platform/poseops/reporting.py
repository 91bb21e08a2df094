"""Summaries people read at the end of a run."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from poseops.errors import ConfigError
from poseops.families import get_family
from poseops.paths import repo_root


def headline(family: str, metrics: dict) -> tuple[str, str]:
    """(count of scored samples, "label value, ...") of a family's own metrics, as its task names them."""
    try:
        task = get_family(family).task_module
    except ConfigError:  # metrics of a family no longer in the table: show what it recorded
        return str(metrics.get("num_samples", "")), ""
    values = [
        f"{label} {metrics[key]:.3f}"
        for key, label in task.headline
        if isinstance(metrics.get(key), (int, float))
    ]
    return str(metrics.get(task.count_key, "")), ", ".join(values)


def metrics_summary_table(
    root: str | Path | None = None, print_it: bool = False
) -> dict[str, dict]:
    """Every family's metrics.json under metrics/, as {family: metrics}; optionally printed as a table
    of each family's own headline metrics (its task's), best baseline and margin."""
    root = Path(root) if root else repo_root()
    found = {
        p.parent.name: json.loads(p.read_text())
        for p in sorted((root / "metrics").glob("*/metrics.json"))
    }
    if print_it:
        table = Table(title="metrics per family (test split)")
        for col in ("family", "data", "split", "samples", "metrics", "best baseline", "margin"):
            table.add_column(col)
        for name, m in found.items():
            count, numbers = headline(name, m)
            if not numbers:  # not a family's evaluation (e.g. metrics/assess)
                continue
            margin = m.get("margin_over_best_baseline")
            try:  # the baseline the margin is measured against
                best = float(m[get_family(name).primary_metric]) - float(margin)
            except (ConfigError, KeyError, TypeError, ValueError):
                best = max((m.get("baselines") or {"none": float("nan")}).values())
            margin_text = "-" if margin is None else f"{float(margin):+.3f}"
            table.add_row(
                name,
                str(m.get("data")),
                str(m.get("split_rule") or m.get("split")),
                count,
                numbers,
                f"{best:.3f}",
                margin_text,
            )
        Console().print(table)
    return found


def committed_metrics_diff(root: str | Path | None = None, print_it: bool = False) -> dict | None:
    """`dvc metrics diff HEAD`: every metric that differs from the committed metrics files, as DVC's JSON
    ({file: {metric: {"old", "new", "diff"}}}; empty when the run reproduced them), or None outside a
    git checkout. Printed as DVC prints it, with a one-line verdict."""
    import subprocess
    import sys

    root = Path(root) if root else repo_root()
    if not (root / ".git").exists():
        return None
    dvc = [sys.executable, "-m", "dvc", "metrics", "diff", "HEAD"]
    found = subprocess.run([*dvc, "--json"], cwd=root, capture_output=True, text=True)
    if found.returncode != 0:
        if print_it:
            Console().print(f"dvc metrics diff HEAD failed: {found.stderr.strip()[-500:]}")
        return None
    diff = json.loads(found.stdout or "{}")
    changed = {file: metrics for file, metrics in diff.items() if metrics}
    if print_it:
        console = Console()
        if changed:
            shown = subprocess.run(
                [*dvc, "--precision", "6"], cwd=root, capture_output=True, text=True
            )
            console.print(shown.stdout.rstrip())
            console.print(
                f"[yellow]these metrics differ from the committed ones[/] ({len(changed)} file(s))"
            )
        else:
            console.print("dvc metrics diff HEAD: every metric equals the committed one")
    return changed
