"""handmle CPU latency, GFLOPs and achieved GFLOP/s, against this machine's 2-thread sgemm peak.

For the `paper` preset (ResNet-50 trunk, 256x256, 5 stages) and the `smoke` preset (at its own input size),
eval mode, random weights, at batch 1 and batch 8:
- forward: the network (trunk, 5 stages of reduce + deconvs + variance head, soft-argmax decoding);
- predict: `model.predict` (forward + final-stage pixels and scores), what serving calls.
Latency: warmup runs, then the median of --runs. GFLOPs = 2 x MACs from torch.utils.flop_counter.
The sgemm peak (torch.mm of 2048x2048 float32, median of 10) is measured before and after in the same
run; fractions are of the higher one (a gap between them means the machine was busy). One forward at the
largest batch of the first preset is split by leaf-module type (time from forward hooks, GFLOPs from the
flop counter) and by aten op (torch.profiler self time), to show what holds the achieved fraction back.

    .venv/bin/python benchmarks/bench_handmle_latency.py [--runs 3] [--batches 1 8] [--threads 2] [--out PATH]
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from _common import (
    bench_device,
    gflops,
    latency_parser,
    machine_figures,
    median_seconds,
    sgemm_peak_gflops,
)
from poseops.models import create_model
from poseops.paths import state_dir
from poseops.storage import write_json_atomic


def bench_case(
    fn: Callable[[], object], runs: int, warmup: int, device: torch.device, batch: int
) -> dict:
    """Median latency and achieved throughput of fn (one batch)."""
    seconds = median_seconds(fn, runs, warmup, device)
    work = gflops(fn)
    return {
        "ms": 1000 * seconds,
        "ms_per_image": 1000 * seconds / batch,
        "gflops": work,
        "gflops_per_image": work / batch,
        "gflop_per_s": work / seconds,
    }


def bench_preset(
    profile_name: str, batches: list[int], runs: int, warmup: int, device: torch.device
) -> dict:
    torch.manual_seed(0)
    model = create_model("handmle", profile_name).to(device).eval()
    cfg = model.config
    row: dict = {
        "input": [cfg.input_size, cfg.input_size],
        "backbone_depth": cfg.backbone_depth,
        "num_stages": cfg.num_stages,
        "params": sum(p.numel() for p in model.parameters()),
        "backbone_params": sum(p.numel() for p in model.backbone.parameters()),
        "batches": {},
    }
    with torch.no_grad():
        for batch in batches:
            images = torch.randn(batch, 3, cfg.input_size, cfg.input_size, device=device)
            cases = {
                "forward": lambda images=images: model(images),
                "predict": lambda images=images: model.predict(images),
            }
            row["batches"][str(batch)] = {
                name: bench_case(fn, runs, warmup, device, batch) for name, fn in cases.items()
            }
    return row


def leaf_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules with no children (Conv2d, BatchNorm2d, ...), by qualified name."""
    return {name: module for name, module in model.named_modules() if not any(module.children())}


def time_by_module_type(
    model: nn.Module, run: Callable[[], object]
) -> tuple[float, dict[str, float]]:
    """Wall seconds of one call of run, and the seconds spent inside leaf modules of each type (forward hooks)."""
    seconds: dict[str, float] = defaultdict(float)
    started: dict[int, float] = {}

    def before(module: nn.Module, _inputs) -> None:
        started[id(module)] = time.perf_counter()

    def after(module: nn.Module, _inputs, _output) -> None:
        seconds[type(module).__name__] += time.perf_counter() - started.pop(id(module))

    handles = [
        h
        for m in leaf_modules(model).values()
        for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))
    ]
    try:
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
    return total, dict(seconds)


def flops_by_module_type(model: nn.Module, run: Callable[[], object]) -> dict[str, float]:
    """GFLOPs of one call of run, summed over leaf modules of each type; the rest (outside leaf modules) as "other"."""
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    counts = counter.get_flop_counts()
    prefix = type(model).__name__
    by_type: dict[str, float] = defaultdict(float)
    for name, module in leaf_modules(model).items():
        by_type[type(module).__name__] += sum(counts.get(f"{prefix}.{name}", {}).values()) / 1e9
    by_type["other"] = counter.get_total_flops() / 1e9 - sum(by_type.values())
    return dict(by_type)


def where_time_goes(profile_name: str, batch: int, device: torch.device, top_ops: int = 8) -> dict:
    """One forward split by leaf-module type (time, GFLOPs, GFLOP/s) and by aten op (torch.profiler self time).

    Time outside leaf modules (residual adds, cat, stack, softmax, soft-argmax, the heatmap avg-pool) is "other".
    """
    torch.manual_seed(0)
    model = create_model("handmle", profile_name).to(device).eval()
    size = model.config.input_size
    images = torch.randn(batch, 3, size, size, device=device)
    run = lambda images=images: model(images)  # noqa: E731
    with torch.no_grad():
        work = flops_by_module_type(model, run)  # also the warmup
        total, seconds = time_by_module_type(model, run)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
    seconds["other"] = total - sum(seconds.values())
    gflops_total = sum(work.values())
    modules = {
        kind: {
            "ms": 1000 * s,
            "time_share": s / total,
            "gflops": work.get(kind, 0.0),
            "flop_share": work.get(kind, 0.0) / gflops_total,
            "gflop_per_s": work.get(kind, 0.0) / s if s > 0 else 0.0,
        }
        for kind, s in sorted(seconds.items(), key=lambda item: -item[1])
    }
    events = sorted(
        (e for e in prof.key_averages() if e.key.startswith("aten::")),
        key=lambda e: -e.self_cpu_time_total,
    )
    aten_us = sum(e.self_cpu_time_total for e in events)
    ops = [
        {
            "op": e.key,
            "calls": e.count,
            "self_ms": e.self_cpu_time_total / 1000,
            "share": e.self_cpu_time_total / aten_us,
        }
        for e in events[:top_ops]
    ]
    return {
        "preset": profile_name,
        "batch": batch,
        "forward_ms": 1000 * total,
        "gflops": gflops_total,
        "by_module_type": modules,
        "top_aten_ops_self_time": ops,
    }


def main() -> None:
    out = str(state_dir() / "bench" / "handmle_latency.json")
    parser = latency_parser(__doc__, runs=3, warmup=1, threads=2, out=out)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--no-breakdown",
        action="store_true",
        help="skip the split of one forward by module type and op",
    )
    args = parser.parse_args()
    device = bench_device(args)
    peak_before = sgemm_peak_gflops(device)
    presets = {
        name: bench_preset(name, args.batches, args.runs, args.warmup, device)
        for name in args.profiles
    }
    breakdown = (
        None if args.no_breakdown else where_time_goes(args.profiles[0], max(args.batches), device)
    )
    peak_after = sgemm_peak_gflops(device)
    peak = max(
        peak_before, peak_after
    )  # the best the machine did; a gap between the two means it was busy
    for row in presets.values():
        for cases in row["batches"].values():
            for r in cases.values():
                r["fraction_of_sgemm_peak"] = r["gflop_per_s"] / peak
    figures: dict = {
        **machine_figures(args, device),
        "sgemm_peak_gflop_per_s": peak,
        "sgemm_peak_before_after": [peak_before, peak_after],
        "presets": presets,
        "breakdown": breakdown,
    }

    print(
        f"sgemm 2048^2 fp32 peak on {figures['device']} ({args.threads} threads): {peak:.1f} GFLOP/s "
        f"(before {peak_before:.1f}, after {peak_after:.1f})"
    )
    if min(peak_before, peak_after) < 0.8 * peak:
        print(
            "  the two peaks differ by over 20%: the machine was busy, latencies and fractions are noisy"
        )
    print(
        f"{'preset':7s} {'batch':>5s} {'case':8s} {'input':>9s} {'ms':>9s} {'ms/img':>8s} {'GFLOPs':>8s} {'GFLOP/s':>8s} {'of peak':>8s}"
    )
    for name, row in presets.items():
        side = row["input"][0]
        for batch, cases in row["batches"].items():
            for case, r in cases.items():
                print(
                    f"{name:7s} {batch:>5s} {case:8s} {side:>4d}x{side:<4d} {r['ms']:9.1f} {r['ms_per_image']:8.1f} "
                    f"{r['gflops']:8.2f} {r['gflop_per_s']:8.1f} {100 * r['fraction_of_sgemm_peak']:7.1f}%"
                )
    if breakdown:
        print(
            f"one forward, {breakdown['preset']} batch {breakdown['batch']}: {breakdown['forward_ms']:.0f} ms, "
            f"{breakdown['gflops']:.1f} GFLOPs, by leaf-module type:"
        )
        print(
            f"  {'module':16s} {'ms':>8s} {'time':>6s} {'GFLOPs':>8s} {'FLOPs':>6s} {'GFLOP/s':>8s}"
        )
        for kind, m in breakdown["by_module_type"].items():
            print(
                f"  {kind:16s} {m['ms']:8.1f} {100 * m['time_share']:5.1f}% {m['gflops']:8.2f} "
                f"{100 * m['flop_share']:5.1f}% {m['gflop_per_s']:8.1f}"
            )
        print("  top aten ops by self time (torch.profiler):")
        for op in breakdown["top_aten_ops_self_time"]:
            print(
                f"  {op['op']:32s} {op['calls']:4d} calls {op['self_ms']:8.1f} ms {100 * op['share']:5.1f}%"
            )
    write_json_atomic(args.out, figures)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
