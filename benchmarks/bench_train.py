"""Ray Train's epoch time against the same loop in plain PyTorch, with equal torch threads.

    plain:  this process runs poseops.train's per-epoch work without Ray: the task's loader, run_epoch,
            validation and the resumable checkpoint written to a temporary folder.
    ray:    poseops.train.fit on a private Ray instance, 1 worker with `--threads` CPUs (so
            `--threads` torch threads, as the plain loop), its loop wrapped so that the worker stamps
            the time of each `ray.train.report` (the controller collects reports lazily, so its
            callbacks cannot time epochs): epoch e = stamp e - stamp e-1; start-up = fit() called ->
            first stamp, less one steady epoch.
    plain steady-state epoch: median of epochs 2..N; its set-up (model, loader, validation split) is
    reported apart.
    ratio = ray steady / plain steady; target <= 1.05.

`--family` of `--profile` (smoke vmhpe by default: steady epochs of about 50 s on 2 cores, so Ray's
per-epoch costs, reporting and checkpointing, are measured against real work); the project is made
under .poseops/bench/train_<profile> (capture, annotate, derive; reused between runs).

    python benchmarks/bench_train.py [--family vmhpe] [--profile smoke] [--epochs 4] [--threads 2]
                                     [--health-check-s S]   (Ray's controller poll interval; default Ray's 2 s)

With as many torch threads as the machine has cores, Ray's own processes (raylet, GCS, the Train
controller's polls) take slices of those cores and stall the threads' barriers: measure at cores - 1
threads, or on a machine with a core to spare, to see Ray's per-epoch cost alone.
JSON to .poseops/bench/train_<profile>_<family>.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench_tune import make_project
from poseops.families import get_family, load_params
from poseops.models import build_from_config
from poseops.paths import state_dir
from poseops.storage import write_json_atomic
from poseops.tasks import get_task
from poseops.train.ddp import StepOptions, run_epoch
from poseops.train.fit import fit, make_loop_config
from poseops.train.loop import make_deterministic
from poseops.train.state import TrainState, rng_state, save_train_state


def timed_loop(clock: str, cfg: dict) -> None:
    """poseops.train.loop's worker loop, appending the time of each ray.train.report to `clock`."""
    import ray.train

    from poseops.train.loop import train_loop_per_worker

    report = ray.train.report

    def stamped(*args, **kwargs):
        with open(clock, "a") as f:
            f.write(f"{time.time()}\n")
        return report(*args, **kwargs)

    ray.train.report = stamped
    try:
        train_loop_per_worker(cfg)
    finally:
        ray.train.report = report


def plain_epochs(cfg: dict, epochs: int) -> tuple[float, list[float]]:
    """(set-up seconds, seconds per epoch) of the training loop without Ray."""
    started = time.perf_counter()
    make_deterministic(cfg["seed"], cfg["threads_per_worker"])
    hooks = get_task(cfg["task"])
    core = build_from_config(cfg["model_name"], cfg["model_config"])
    dataset, loader = hooks.train_loader(cfg, core, 0, 1)
    val = hooks.load_validation(cfg)
    optimizer = torch.optim.Adam(core.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, cfg["lr_milestones"], cfg["lr_gamma"]
    )
    setup, times = time.perf_counter() - started, []
    for epoch in range(epochs):
        start = time.perf_counter()
        dataset.set_epoch(epoch)
        run_epoch(hooks, core, loader, optimizer, torch.device("cpu"), StepOptions())
        schedule.step()
        metrics = hooks.validate(core, val)
        with tempfile.TemporaryDirectory() as tmp:
            meta = {"config": core.config.model_dump(mode="json")}
            state = TrainState(epoch + 1, cfg["seed"], 1, [rng_state()], [metrics])
            save_train_state(Path(tmp), core.state_dict(), meta, optimizer, schedule, state)
        times.append(time.perf_counter() - start)
        print(f"plain epoch {epoch + 1}: {times[-1]:.1f} s", flush=True)
    return setup, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="smoke", choices=["tiny", "smoke"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--family", default="vmhpe", choices=["handmle", "vmhpe", "hrnet_am"])
    parser.add_argument("--health-check-s", type=float, default=None)
    args = parser.parse_args()

    import ray

    root = state_dir() / "bench" / f"train_{args.profile}"
    make_project(root, args.profile, args.family)
    params = load_params(root / "params.yaml")
    family, fam = get_family(args.family), params.families[args.family]
    train = fam.train.model_copy(
        update={
            "epochs": args.epochs,
            "num_workers": 1,
            "cpus_per_worker": float(args.threads),
            "plateau_window": None,
        }
    )
    fam = fam.model_copy(update={"train": train})
    dataset = str(root / "data" / "derived" / args.family)
    load = os.getloadavg()

    plain_setup, plain = plain_epochs(make_loop_config(family, fam, dataset), args.epochs)

    # how often the controller polls its workers (Ray's default: 2 s)
    if args.health_check_s is not None:
        os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = str(args.health_check_s)
    ray.init(address="local", num_cpus=args.threads, include_dashboard=False)
    clock = Path(tempfile.mkdtemp()) / "reports.txt"
    with tempfile.TemporaryDirectory() as storage:
        called = time.time()
        fit(
            family,
            fam,
            dataset,
            storage_path=storage,
            loop=functools.partial(timed_loop, str(clock)),
        )
        total = time.time() - called
    ray.shutdown()
    stamps = [float(line) for line in clock.read_text().split()]
    ray_epochs = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    steady_ray = statistics.median(ray_epochs)

    steady_plain = statistics.median(plain[1:])
    result = {
        "profile": args.profile,
        "family": args.family,
        "threads": args.threads,
        "health_check_s": args.health_check_s,
        "epochs": args.epochs,
        "plain_epoch_s": plain,
        "ray_epoch_s": ray_epochs,
        "ray_fit_s": total,
        "plain_steady_s": steady_plain,
        "ray_steady_s": steady_ray,
        "ratio": steady_ray / steady_plain,
        "plain_setup_s": plain_setup,
        "ray_startup_s": stamps[0] - called - steady_ray,
        "loadavg_before": load,
        "loadavg_after": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    out = state_dir() / "bench" / f"train_{args.profile}_{args.family}.json"
    write_json_atomic(out, result)
    print(f"ray/plain steady epoch: {result['ratio']:.3f} (target <= 1.05) -> {out}")


if __name__ == "__main__":
    main()
