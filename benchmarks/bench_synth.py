"""Synthetic capture rendering: frames per second per core, and peak memory at two sizes 10x apart.

    speed:  frames rendered (and written: video + labels, and for bodies JPEG shards) per second by one
            process held to one core (cv2.setNumThreads(1), OMP/BLAS/torch threads 1), measured on the
            larger run of each part. Bodies count rendered views (a kept frame seen by V cameras is V
            images). "per CPU-second" divides by the process's own user + sys time, so other load on a
            shared machine slows the wall-clock figure but not that one.
    memory: peak resident set (ru_maxrss) of a fresh child process per run, at two dataset sizes 10x
            apart: hands 16 vs 160 sequences (40 frames, 160 px), bodies 4 vs 40 sequences (256 px, 5 views,
            the generator's default frames per sequence). Both writers stream a sequence at a time, so
            the two peaks should be close (ratio near 1); the rise over the imports-only footprint is
            printed too, since it is what the data adds.

Each run is its own process (`--child`), so neither peaks nor thread pools carry over.

    python benchmarks/bench_synth.py [--hands 16] [--bodies 4]   (the larger runs are 10x these)
Captures under .poseops/bench/synth_data (rewritten each run); JSON to .poseops/bench/synth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from poseops.paths import state_dir
from poseops.storage import write_json_atomic

ONE_THREAD = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")


def _maxrss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(args: argparse.Namespace) -> None:
    """One run: render `args.sequences` sequences of `args.part` into `args.out`; print a JSON line."""
    import cv2

    cv2.setNumThreads(1)
    from poseops.capture.synthetic_bodies import write_body_captures
    from poseops.capture.synthetic_hands import write_hand_captures
    from poseops.config import BodyCaptureParams, CaptureParams, HandCaptureParams

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    baseline = _maxrss_bytes()
    if args.part == "hands":
        params = CaptureParams(seed=0, hands=HandCaptureParams(sequences=args.sequences))
    else:
        params = CaptureParams(
            seed=0, bodies=BodyCaptureParams(sequences=args.sequences, image_size=256, views=5)
        )
    writer = write_hand_captures if args.part == "hands" else write_body_captures
    wall, cpu = time.perf_counter(), time.process_time()
    counts = writer(args.out, params)["counts"]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        json.dumps(
            {
                "part": args.part,
                "sequences": counts["sequences"],
                "frames": counts["frames"],
                "images": counts.get("images", counts["frames"]),
                "seconds": wall,
                "cpu_seconds": cpu,
                "maxrss_bytes": _maxrss_bytes(),
                "imports_maxrss_bytes": baseline,
            }
        )
    )


def run_child(part: str, sequences: int, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable,
        __file__,
        "--child",
        "--part",
        part,
        "--sequences",
        str(sequences),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **ONE_THREAD})
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--hands", type=int, default=16, help="hand sequences of the small run (large: 10x)"
    )
    parser.add_argument(
        "--bodies", type=int, default=4, help="body sequences of the small run (large: 10x)"
    )
    parser.add_argument("--data", default=str(state_dir() / "bench" / "synth_data"))
    parser.add_argument("--json", default=str(state_dir() / "bench" / "synth.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--sequences", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    data = Path(args.data)
    result: dict = {"load_average_at_start": os.getloadavg(), "cpus": os.cpu_count(), "runs": {}}
    mib = 2**20
    for part, small in (("hands", args.hands), ("bodies", args.bodies)):
        runs = [run_child(part, n, data / f"{part}_{n}") for n in (small, 10 * small)]
        result["runs"][part] = runs
        for r in runs:
            print(
                f"  {part:6s} {r['sequences']:4d} sequences, {r['frames']:5d} frames, {r['images']:6d} images: "
                f"{r['seconds']:6.1f} s wall, {r['cpu_seconds']:6.1f} s CPU; peak RSS {r['maxrss_bytes'] / mib:6.0f} MiB "
                f"(imports {r['imports_maxrss_bytes'] / mib:.0f} MiB)",
                flush=True,
            )
        small_run, large_run = runs
        per_wall = large_run["images"] / large_run["seconds"]
        per_cpu = large_run["images"] / large_run["cpu_seconds"]
        rise = [r["maxrss_bytes"] - r["imports_maxrss_bytes"] for r in runs]
        ratio = large_run["maxrss_bytes"] / small_run["maxrss_bytes"]
        print(
            f"{part}: {per_wall:.0f} images/s per core wall-clock, {per_cpu:.0f} per CPU-second "
            f"({large_run['frames'] / large_run['cpu_seconds']:.0f} kept frames per CPU-second)"
        )
        print(
            f"{part}: peak RSS {small_run['maxrss_bytes'] / mib:.0f} MiB vs {large_run['maxrss_bytes'] / mib:.0f} MiB "
            f"(10x the sequences): ratio {ratio:.2f}; rise over imports {rise[0] / mib:.0f} vs {rise[1] / mib:.0f} MiB "
            "(target: ratio near 1, streaming)"
        )
        result[part] = {
            "images_per_second_per_core": per_wall,
            "images_per_cpu_second": per_cpu,
            "peak_rss_ratio_10x": ratio,
            "peak_rss_rise_bytes": rise,
        }
    result["load_average_at_end"] = os.getloadavg()
    write_json_atomic(args.json, result)
    print(
        f"load average {result['load_average_at_start'][0]:.1f} at start, {result['load_average_at_end'][0]:.1f} "
        f"at end ({result['cpus']} CPUs); JSON: {args.json}"
    )


if __name__ == "__main__":
    main()
