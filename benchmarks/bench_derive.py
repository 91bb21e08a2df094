"""Derivation on Ray: 2 CPUs against 1, and peak memory at two dataset sizes 10x apart.

    speed:  topdown_crop shards of 1,000 synthetic 1920x1080 JPEGs with two persons each (2,000 crops, over
            60 s of single-CPU work), derived by Ray tasks (OpenCV and BLAS at one thread inside each) on a
            private instance of 1 and then 2 CPUs; target >= 1.7x.
    memory: the rise of MemTotal - MemAvailable (whole machine, sampled every 0.1 s) while a child process
            starts Ray (object store capped at 100 MB) and derives N images (--stream: then streams one epoch
            of the loader, whose buffer holds up to 1,000 rows by design); N = 100 and 1,000 (10x apart):
            target < 2 GB and within 10% of each other. On a shared machine other processes move the
            machine-wide figure, so the peak PSS summed over the child's process tree (driver, raylet, GCS,
            workers) is printed beside it.

Each measurement runs in its own process (`--child`), so Ray instances do not overlap.

    python benchmarks/bench_derive.py [--images 1000]
Data under .poseops/bench/derive_data (reused); JSON to .poseops/bench/derive.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_loader import synthetic_jpegs
from poseops.paths import state_dir
from poseops.storage import write_json_atomic

OBJECT_STORE_BYTES = 100 * 1024 * 1024


def used_bytes() -> int:
    """MemTotal - MemAvailable of the machine."""
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        info[key] = int(value.split()[0]) * 1024
    return info["MemTotal"] - info["MemAvailable"]


def child(args: argparse.Namespace) -> None:
    """One measurement: start Ray with --cpus, warm the workers, derive (and optionally stream an epoch)."""
    import ray

    from poseops.config import SplitParams
    from poseops.datasets.derive import derive_dataset
    from poseops.tasks import get_task

    ray.init(
        address="local",
        num_cpus=args.cpus,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
    )

    @ray.remote(num_cpus=1)
    def warm() -> int:
        import poseops.datasets.derive  # noqa: F401  (the imports every derivation task needs)

        return 0

    ray.get([warm.remote() for _ in range(args.cpus)])
    started = time.perf_counter()
    card = derive_dataset(
        get_task("topdown_crop").rows,
        args.labels,
        args.out,
        get_task("topdown_crop").Options(),
        SplitParams(val_fraction=0.1),
        skeleton="coco17",
        executor="ray",
        chunk_samples=args.chunk,
    )
    seconds = time.perf_counter() - started
    streamed = 0
    if args.stream:
        from poseops.config import AugmentParams
        from poseops.datasets.loader import CropDataset

        for _ in CropDataset(args.out, "train", 256, 1.25, augment=AugmentParams(), seed=0):
            streamed += 1
    ray.shutdown()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "samples": sum(card["counts"].values()),
                "tasks": card["executor"]["tasks"],
                "streamed": streamed,
            }
        )
    )


def tree_pss(pid: int) -> int:
    """Proportional set size summed over a process and its descendants (shared pages counted once)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run_child(
    labels: Path, out: Path, cpus: int, stream: bool, chunk: int
) -> tuple[dict, int, int]:
    """(the child's JSON, peak rise of machine memory, peak PSS of the child's process tree), bytes."""
    baseline = used_bytes()
    peak, peak_tree = [baseline], [0]
    done = threading.Event()
    command = [
        sys.executable,
        __file__,
        "--child",
        "--labels",
        str(labels),
        "--out",
        str(out),
        "--cpus",
        str(cpus),
        "--chunk",
        str(chunk),
    ] + (["--stream"] if stream else [])
    child_process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], used_bytes())
            peak_tree[0] = max(peak_tree[0], tree_pss(child_process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child_process.communicate()
    done.set()
    sampler.join()
    if child_process.returncode != 0:
        raise SystemExit(f"child failed:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), peak[0] - baseline, peak_tree[0]


def subset(labels: Path, images: int) -> Path:
    """The first `images` images of an annotations file (and their persons), written beside it."""
    form = json.loads(labels.read_text())
    keep = {img["id"] for img in form["images"][:images]}
    out = labels.with_name(f"annotations_first{images}.json")
    out.write_text(
        json.dumps(
            {
                **form,
                "images": [i for i in form["images"] if i["id"] in keep],
                "annotations": [a for a in form["annotations"] if a["image_id"] in keep],
            }
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--data", default=str(state_dir() / "bench" / "derive_data"))
    parser.add_argument("--json", default=str(state_dir() / "bench" / "derive.json"))
    parser.add_argument("--chunk", type=int, default=64, help="items per Ray task")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument(
        "--stream-in-memory-runs", action="store_true", help="also stream one loader epoch"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--labels", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--cpus", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    data = Path(args.data)
    labels = synthetic_jpegs(data / "jpegs", args.images, people=2)
    result: dict = {"images": args.images, "load_average_at_start": os.getloadavg()}
    if not args.skip_speed:
        speed = {}
        for cpus in (1, 2):
            speed[cpus], _, _ = run_child(
                labels, data / f"out_{cpus}cpu", cpus, stream=False, chunk=args.chunk
            )
            print(
                f"  Ray {cpus} CPU: {speed[cpus]['samples']} crops in {speed[cpus]['seconds']:.1f} s "
                f"({speed[cpus]['tasks']} tasks; load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        speedup = speed[1]["seconds"] / speed[2]["seconds"]
        print(
            f"derive 2 CPUs vs 1: {speed[1]['seconds']:.1f} s / {speed[2]['seconds']:.1f} s = {speedup:.2f}x "
            "(target >= 1.7x)"
        )
        result.update(speed=speed, speedup_2_over_1=speedup)
    if not args.skip_memory:
        memory = {}
        for n in (args.images // 10, args.images):
            info, rise, tree = run_child(
                subset(labels, n),
                data / f"mem_{n}",
                2,
                stream=args.stream_in_memory_runs,
                chunk=args.chunk,
            )
            memory[n] = {"peak_rise_bytes": rise, "peak_tree_pss_bytes": tree, **info}
            print(
                f"  {n:5d} images ({info['samples']} crops, {info['streamed']} streamed): machine-wide rise "
                f"{rise / 2**30:.2f} GiB, process-tree PSS {tree / 2**30:.2f} GiB",
                flush=True,
            )
        small, large = (memory[n] for n in (args.images // 10, args.images))
        for key, label in (
            ("peak_rise_bytes", "machine-wide rise"),
            ("peak_tree_pss_bytes", "process-tree PSS"),
        ):
            print(
                f"peak memory, {label}: {small[key] / 2**30:.2f} GiB vs {large[key] / 2**30:.2f} GiB (10x the data): "
                f"{(large[key] / small[key] - 1) * 100:+.0f}% (target < 2 GB, within 10%)"
            )
        result["memory"] = memory
    write_json_atomic(args.json, result)


if __name__ == "__main__":
    main()
