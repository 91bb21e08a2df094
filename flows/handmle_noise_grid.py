"""The noisy-label ablation of Lou et al., 2024, "MLE-Loss Driven Robust Hand Pose Estimation", as DVC experiments: 3 losses x {clean, noisy labels} x 3 seeds.

    python flows/handmle_noise_grid.py                 # run what is missing, then write the report
    python flows/handmle_noise_grid.py --report-only   # summarise the rows already there
Each cell is `dvc exp run -S ... evaluate@handmle` (see `dvc exp show`); rows land in
reports/handmle_noise_grid.jsonl as cells finish, the summary in reports/handmle_noise_grid.{md,json}.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from poseops.experiments import (
    handmle_noise_grid,
    handmle_report,
    markdown_table,
    run_grid,
    write_report,
)
from poseops.paths import repo_root


def main(
    seeds: Annotated[int, typer.Option(help="training seeds per cell")] = 3,
    report_only: Annotated[bool, typer.Option(help="only summarise the rows already written")] = False,
) -> None:
    root = repo_root()
    rows_path = root / "reports" / "handmle_noise_grid.jsonl"
    if report_only:
        rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    else:
        rows = run_grid(handmle_noise_grid(range(seeds)), "handmle", root, rows_path)
    report = handmle_report(rows)
    write_report(report, root / "reports" / "handmle_noise_grid")
    print(markdown_table(report))


if __name__ == "__main__":
    typer.run(main)
