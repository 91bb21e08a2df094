"""Pipeline figures: the no-op `dvc repro` time (3 runs) and the last demo's stage times.

Run after `make demo` (it reads .poseops/logs/stage_times.jsonl); writes .poseops/bench/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

from poseops.paths import repo_root, state_dir
from poseops.storage import write_json_atomic


def noop_repro_seconds(root: Path, runs: int = 3) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["dvc", "repro"], cwd=root, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def last_stage_times(root: Path) -> dict[str, float]:
    log = state_dir(root) / "logs" / "stage_times.jsonl"
    latest: dict[str, float] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            latest[rec["stage"]] = rec["seconds"]
    return latest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(state_dir() / "bench" / "pipeline.json"))
    args = parser.parse_args()
    root = repo_root()
    figures: dict = {"stage_seconds": last_stage_times(root)}
    if (root / "dvc.lock").exists():
        runs = noop_repro_seconds(root)
        figures["noop_repro_seconds"] = {"runs": runs, "median": statistics.median(runs)}
    print(f"{'stage':24s} seconds")
    for stage, seconds in figures["stage_seconds"].items():
        print(f"{stage:24s} {seconds:8.1f}")
    if "noop_repro_seconds" in figures:
        print(
            f"no-op dvc repro: median {figures['noop_repro_seconds']['median']:.2f} s over 3 runs"
        )
    else:
        print("no dvc.lock yet: run `make demo` first for the no-op figure")
    write_json_atomic(args.out, figures)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
