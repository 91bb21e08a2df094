"""Ray Tune grid: wall time of a 4-trial grid against the sum of its trials' times at 2 concurrent trials,
and the grid's peak memory.

    grid:   handmle a2_loss, rows mle and integral_l1 x seeds 0 and 1 (4 trials, each one Ray Train run of
            1 worker, `--epochs` epochs), 2 trials at a time on a private Ray instance of 2 CPUs.
            ratio = wall / sum(trial seconds); 2 concurrent trials on 2 free cores would give ~0.5.
    memory: peak PSS summed over this process's tree (driver, GCS, raylet, Tune trial actors, Train
            controllers and workers; shared pages counted once), sampled every 0.5 s; target <= 6 GiB.
            MemTotal - MemAvailable's rise is printed beside it (moved by anything else on the machine).

The project is made under .poseops/bench/tune (capture, annotate and derive of the chosen profile's hand
data, reused between runs); the grid state is fresh each run.

    python benchmarks/bench_tune.py [--profile tiny|smoke] [--epochs 1]
JSON to .poseops/bench/tune_<profile>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from pathlib import Path

from bench_derive import tree_pss, used_bytes
from poseops.paths import state_dir
from poseops.storage import write_json_atomic

REPO = Path(__file__).resolve().parents[1]


def make_project(root: Path, profile: str, family: str = "handmle") -> None:
    """A project at `root` with `profile`'s params and `family`'s derived data (kept between runs)."""
    from poseops import pipeline
    from poseops.families import load_params
    from poseops.profiles import write_profile

    root.mkdir(parents=True, exist_ok=True)
    write_profile(str(REPO / "profiles" / f"{profile}.yaml"), root / "params.yaml")
    where = pipeline.layout(root)
    if (where.derived(family) / "card.json").exists():
        return
    params = load_params(root / "params.yaml")
    if not where.annotations.exists():
        pipeline.capture(params, where)
        pipeline.annotate(params, where)
    pipeline.derive(family, params, where)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="tiny", choices=["tiny", "smoke"])
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    import ray

    from poseops.tune import run_grid, settings_for

    root = state_dir(REPO) / "bench" / "tune" / args.profile
    os.environ["POSEOPS_ROOT"] = str(root)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    make_project(root, args.profile)
    shutil.rmtree(root / ".poseops" / "tune", ignore_errors=True)

    baseline = used_bytes()
    peak_tree, peak_machine = [0], [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak_tree[0] = max(peak_tree[0], tree_pss(os.getpid()))
            peak_machine[0] = max(peak_machine[0], used_bytes())
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    extra = {
        "families.handmle.train.epochs": args.epochs,
        "families.handmle.train.plateau_window": None,
        "families.handmle.train.plateau_min_epochs": 0,
        "families.handmle.train.lr_milestones": [],
    }
    started = time.perf_counter()
    report = run_grid(
        "handmle",
        "a2_loss",
        root,
        settings=settings_for("handmle", max_concurrent_trials=2),
        extra_overrides=extra,
        seeds=[0, 1],
        rows=["mle", "integral_l1"],
    )
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    ray.shutdown()

    trial_seconds = [t["seconds"] for t in report["trials"]]
    result = {
        "profile": args.profile,
        "epochs": args.epochs,
        "trials": len(trial_seconds),
        "max_concurrent_trials": 2,
        "ray_cpus": 2,
        "wall_s": round(wall, 1),
        "sum_trial_s": round(sum(trial_seconds), 1),
        "trial_s": trial_seconds,
        "wall_over_sum": round(wall / sum(trial_seconds), 3) if trial_seconds else None,
        "peak_tree_pss_gib": round(peak_tree[0] / 2**30, 2),
        "peak_machine_rise_gib": round((peak_machine[0] - baseline) / 2**30, 2),
        "target_peak_gib": 6.0,
        "load_average_1min_at_end": os.getloadavg()[0],
    }
    write_json_atomic(state_dir(REPO) / "bench" / f"tune_{args.profile}.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
