"""hrnet_am latency, GFLOPs and achieved GFLOP/s at 256x192 (H x W), batch 1 and 8, as a share of sgemm peak.

For the `paper` preset (pose_hrnet W32 + 4 attention modules) and, for scale, the `smoke` preset, random
weights, eval mode:
- forward: crops -> 17 heatmaps at 64x48;
- predict_flip: forward on the crops and their mirror, flip-back average, argmax decoding (what the
  endpoint and evaluate run).
Latency: warmup runs, then the median of --runs. GFLOPs = 2 x MACs from torch.utils.flop_counter (the
HRNet paper's 7.1 GFLOPs for W32 at 256x192 count MACs: about 14.2 here). The sgemm peak (torch.mm of
2048x2048 float32) is measured in the same run with the same thread count.

    .venv/bin/python benchmarks/bench_hrnet_am_latency.py [--runs 5] [--threads 2] [--device cpu] [--out PATH]
"""

from __future__ import annotations

import torch

from _common import bench_device, latency_parser, machine_figures, roofline_rows, sgemm_peak_gflops
from poseops.models import create_model
from poseops.paths import state_dir
from poseops.storage import write_json_atomic

INPUT_HW = (256, 192)
HRNET_W32_GMACS = (
    7.1  # Sun, Xiao, Liu, Wang, 2019, "Deep High-Resolution Representation Learning ...", Table 1
)


def bench_case(
    model, batch: int, runs: int, warmup: int, device: torch.device, peak: float
) -> dict:
    images = torch.randn(batch, 3, *INPUT_HW, device=device)
    cases = {
        "forward": lambda: model(images),
        "predict_flip": lambda: model.predict(images, flip_test=True),
    }
    return roofline_rows(cases, runs, warmup, device, peak, batch)


def main() -> None:
    out = str(state_dir() / "bench" / "hrnet_am_latency.json")
    parser = latency_parser(__doc__, runs=5, warmup=1, threads=2, out=out)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    args = parser.parse_args()
    device = bench_device(args)
    peak = sgemm_peak_gflops(device)
    figures: dict = {
        **machine_figures(args, device),
        "input_hw": list(INPUT_HW),
        "sgemm_peak_gflop_per_s": peak,
        "paper_hrnet_w32_gmacs": HRNET_W32_GMACS,
        "presets": {},
    }
    print(
        f"sgemm 2048^2 fp32 peak on {figures['device']} ({args.threads} threads): {peak:.1f} GFLOP/s"
    )
    print(
        f"{'preset':8s} {'batch':>5s} {'case':13s} {'ms':>9s} {'ms/crop':>8s} {'GFLOPs':>8s} {'GFLOP/s':>8s} {'of peak':>8s}"
    )
    for profile in args.profiles:
        torch.manual_seed(0)
        model = create_model("hrnet_am", profile).to(device).eval()
        preset = {
            "params": sum(p.numel() for p in model.parameters()),
            "am_layout": model.config.am_layout,
        }
        for batch in args.batches:
            row = bench_case(model, batch, args.runs, args.warmup, device, peak)
            preset[f"batch_{batch}"] = row
            for case, r in row.items():
                print(
                    f"{profile:8s} {batch:5d} {case:13s} {r['ms']:9.1f} {r['ms_per_crop']:8.1f} {r['gflops']:8.2f} "
                    f"{r['gflop_per_s']:8.1f} {100 * r['fraction_of_sgemm_peak']:7.1f}%"
                )
        figures["presets"][profile] = preset
    write_json_atomic(args.out, figures)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
