"""Helpers shared by the benchmarks: the latency benchmarks' options, timing, FLOP counting, the sgemm peak
and the machine's description.

Imported by the scripts of this folder run as scripts (their folder is on sys.path); no import-time side
effects.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock times cover it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], runs: int, warmup: int, device: torch.device) -> float:
    """Median wall time of `runs` calls of fn, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sgemm_peak_gflops(device: torch.device, size: int = 2048, runs: int = 10) -> float:
    """Achieved GFLOP/s of torch.mm on two [size,size] float32 matrices (median of `runs`): the machine's practical peak."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = median_seconds(lambda: torch.mm(a, b), runs, warmup=3, device=device)
    return 2 * size**3 / seconds / 1e9


def gflops(fn: Callable[[], object]) -> float:
    """GFLOPs of one call of fn (2 x MACs, as torch.utils.flop_counter counts them)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def device_name(device: torch.device) -> str:
    return str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)


def cpu_name() -> str:
    return platform.processor() or platform.machine()


def roofline_rows(
    cases: dict[str, Callable[[], object]],
    runs: int,
    warmup: int,
    device: torch.device,
    peak: float,
    batch: int | None = None,
) -> dict[str, dict]:
    """Per case: median milliseconds, GFLOPs, achieved GFLOP/s and its share of the sgemm peak (and ms
    per item when `batch` is given), with autograd off."""
    rows = {}
    with torch.no_grad():
        for name, fn in cases.items():
            seconds = median_seconds(fn, runs, warmup, device)
            work = gflops(fn)
            row = {"ms": 1000 * seconds}
            if batch is not None:
                row["ms_per_crop"] = 1000 * seconds / batch
            row.update(
                gflops=work,
                gflop_per_s=work / seconds,
                fraction_of_sgemm_peak=work / seconds / peak,
            )
            rows[name] = row
    return rows


def latency_parser(
    description: str | None, runs: int, warmup: int, threads: int, out: str
) -> argparse.ArgumentParser:
    """The options every latency benchmark takes (`--runs --warmup --threads --device --profiles --out`),
    with its own defaults; a benchmark adds its own options to the parser."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profiles", nargs="+", default=["paper", "smoke"])
    parser.add_argument("--out", default=out)
    return parser


def bench_device(args: argparse.Namespace) -> torch.device:
    """Torch's thread count set to `--threads`; the `--device` to measure on."""
    torch.set_num_threads(args.threads)
    return torch.device(args.device)


def machine_figures(args: argparse.Namespace, device: torch.device) -> dict:
    """What every latency report states first: the device, CPU, threads, torch version, runs and warmup."""
    return {
        "device": device_name(device),
        "cpu": cpu_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "runs": args.runs,
        "warmup": args.warmup,
    }
