"""vmhpe latency, GFLOPs and achieved GFLOP/s on this machine, beside the paper's 213.4 ms (RTX 3090).

For the `paper` preset (HRNet-W32, 512x512) and the `smoke` preset, batch 1, random weights:
- forward: the per-image network (backbone, MFCM, IRL heatmaps, MFFM);
- predict: forward + centre NMS + instance branch + decoding, with the centre threshold at 0 so the
  instance branch always runs on `max_people` (30) proposals, CID's worst case;
- predict_flip: the same with flip test (two forwards, two instance branches).
Latency: warmup runs, then the median of --runs. GFLOPs = 2 x MACs from torch.utils.flop_counter.
The 2-thread sgemm peak (torch.mm of 2048x2048 float32) is measured in the same run.

    .venv/bin/python benchmarks/bench_vmhpe_latency.py [--runs 5] [--threads 2] [--device cpu] [--out PATH]
"""

from __future__ import annotations

import torch

from _common import bench_device, latency_parser, machine_figures, roofline_rows, sgemm_peak_gflops
from poseops.models import create_model
from poseops.paths import state_dir
from poseops.storage import write_json_atomic

PAPER_MS = {
    "VMHPE": 213.4,
    "CID": 213.1,
    "DEKR": 336.1,
}  # RTX 3090, conditions not stated (Zhang, He, Wu, 2025, "VMHPE", Fig. 9)


def bench_preset(profile: str, runs: int, warmup: int, device: torch.device, peak: float) -> dict:
    torch.manual_seed(0)
    model = create_model("vmhpe", profile, centre_threshold=0.0).to(device).eval()
    size = model.config.input_size
    images = torch.randn(1, 3, size, size, device=device)
    row: dict = {
        "input": [size, size],
        "params": sum(p.numel() for p in model.parameters()),
        "backbone_params": sum(p.numel() for p in model.backbone.parameters()),
        "proposals": model.config.max_people,
    }
    cases = {
        "forward": lambda: model(images),
        "predict": lambda: model.predict(images),
        "predict_flip": lambda: model.predict(images, flip_test=True),
    }
    row.update(roofline_rows(cases, runs, warmup, device, peak))
    return row


def main() -> None:
    out = str(state_dir() / "bench" / "vmhpe_latency.json")
    args = latency_parser(__doc__, runs=5, warmup=2, threads=2, out=out).parse_args()
    device = bench_device(args)
    peak = sgemm_peak_gflops(device)
    figures: dict = {
        **machine_figures(args, device),
        "batch": 1,
        "sgemm_peak_gflop_per_s": peak,
        "paper_ms_rtx3090": PAPER_MS,
        "presets": {},
    }
    print(
        f"sgemm 2048^2 fp32 peak on {figures['device']} ({args.threads} threads): {peak:.1f} GFLOP/s"
    )
    print(
        f"{'preset':8s} {'case':13s} {'input':>9s} {'ms':>9s} {'GFLOPs':>8s} {'GFLOP/s':>8s} {'of peak':>8s}"
    )
    for profile in args.profiles:
        row = bench_preset(profile, args.runs, args.warmup, device, peak)
        figures["presets"][profile] = row
        for case in ("forward", "predict", "predict_flip"):
            r = row[case]
            print(
                f"{profile:8s} {case:13s} {row['input'][0]:>4d}x{row['input'][1]:<4d} {r['ms']:9.1f} {r['gflops']:8.2f} "
                f"{r['gflop_per_s']:8.1f} {100 * r['fraction_of_sgemm_peak']:7.1f}%"
            )
    print(
        f"paper (RTX 3090, conditions not stated): VMHPE {PAPER_MS['VMHPE']} ms, CID {PAPER_MS['CID']} ms"
    )
    write_json_atomic(args.out, figures)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
