"""lifter frames/s at T = 9, 27, 81 (paper and smoke presets, batch 1 and a larger batch), beside CrossFormer's.

One output frame per window (seq2frame: the centre frame), so frames/s = windows per second:
- forward: normalised 2D windows [B, T, 17, 2] -> the centre frame's 3D (what training's validation runs);
- predict_flip: forward on the windows and their mirror (left/right swapped), averaged (what evaluate and
  the endpoint run).
Random weights, eval mode, autograd off; warmup runs, then the median of --runs. GFLOPs per frame = 2 x
MACs (torch.utils.flop_counter). The temporal position embedding has T entries, so each T is its own model
(same widths). Reference (Hassanin et al. 2022, "CrossFormer: Cross Spatio-Temporal Transformer for 3D Human
Pose Estimation", Table 4, Human3.6M, on a GPU the extract does not name): CrossFormer 284 / 266 / 241 FPS
and PoseFormer (Zheng et al. 2021) 320 / 297 / 269 FPS at T = 9 / 27 / 81; the ratio printed is ours over
CrossFormer's, CPU against GPU, so it says how far this machine is from real time, not which model is faster.

    .venv/bin/python benchmarks/bench_lifter_fps.py [--runs 5] [--threads 1] [--batches 1 64] [--out PATH]
"""

from __future__ import annotations

import torch

from _common import bench_device, gflops, latency_parser, machine_figures, median_seconds
from poseops.models import create_model
from poseops.paths import state_dir
from poseops.storage import write_json_atomic

FRAMES = (9, 27, 81)
CROSSFORMER_FPS = {9: 284.0, 27: 266.0, 81: 241.0}  # Hassanin et al. 2022, Table 4
POSEFORMER_FPS = {9: 320.0, 27: 297.0, 81: 269.0}  # the same table
CROSSFORMER_MFLOPS = {9: 163.0, 27: 515.0, 81: 1739.0}  # the same table


def bench_case(model, frames: int, batch: int, runs: int, warmup: int, device) -> dict:
    windows = torch.randn(batch, frames, 17, 2, device=device) * 0.3
    cases = {
        "forward": lambda: model(model.preprocess(windows)),
        "predict_flip": lambda: model.predict(windows, flip_test=True),
    }
    rows = {}
    with torch.no_grad():
        for name, fn in cases.items():
            seconds = median_seconds(fn, runs, warmup, device)
            rows[name] = {
                "ms": 1000 * seconds,
                "frames_per_s": batch / seconds,
                "gflops_per_frame": gflops(fn) / batch,
                "of_crossformer_fps": batch / seconds / CROSSFORMER_FPS.get(frames, float("nan")),
            }
    return rows


def main() -> None:
    out = str(state_dir() / "bench" / "lifter_fps.json")
    parser = latency_parser(__doc__, runs=5, warmup=1, threads=1, out=out)
    parser.add_argument("--frames", nargs="+", type=int, default=list(FRAMES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    args = parser.parse_args()
    device = bench_device(args)
    figures: dict = {
        **machine_figures(args, device),
        "crossformer_fps_gpu": CROSSFORMER_FPS,
        "poseformer_fps_gpu": POSEFORMER_FPS,
        "presets": {},
    }
    print(
        f"lifter frames/s on {figures['device']} ({args.threads} thread(s), torch {torch.__version__})"
    )
    print(
        f"{'preset':7s} {'T':>3s} {'params':>7s} {'batch':>5s} {'case':13s} {'ms':>9s} {'frames/s':>9s} "
        f"{'GFLOPs/fr':>9s} {'CrossFormer':>11s} {'ratio':>7s}"
    )
    for profile in args.profiles:
        figures["presets"][profile] = {}
        for frames in args.frames:
            torch.manual_seed(0)
            model = create_model("lifter", profile, frames=frames).to(device).eval()
            params = sum(p.numel() for p in model.parameters())
            entry = {"params": params}
            for batch in args.batches:
                row = bench_case(model, frames, batch, args.runs, args.warmup, device)
                entry[f"batch_{batch}"] = row
                for case, r in row.items():
                    reference = CROSSFORMER_FPS.get(frames, float("nan"))
                    print(
                        f"{profile:7s} {frames:3d} {params / 1e6:6.2f}M {batch:5d} {case:13s} {r['ms']:9.2f} "
                        f"{r['frames_per_s']:9.1f} {r['gflops_per_frame']:9.3f} {reference:8.0f} GPU "
                        f"{r['frames_per_s'] / reference:7.2f}"
                    )
            figures["presets"][profile][f"T{frames}"] = entry
    print(
        "CrossFormer GFLOPs/frame as published (T = 9/27/81): "
        + " / ".join(f"{CROSSFORMER_MFLOPS[t] / 1000:.3f}" for t in FRAMES)
    )
    write_json_atomic(args.out, figures)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
