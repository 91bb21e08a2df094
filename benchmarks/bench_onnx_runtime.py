"""onnxruntime vs torch, per 2D family, at batch 1 and 8, with the same number of threads.

Each family's network (random weights, seed 0, eval mode) is exported with `poseops.onnx_models`
(dynamic batch; what `poseops export F --format onnx` writes) and timed two ways in one run:
- forward: the network alone (torch `model(images)` vs the onnxruntime session);
- predict: `model.predict(images)` with its defaults (vmhpe: no flip test): forward + the Python
  decoding (for vmhpe also the instance heads on the decoded centres, which stay in torch), with the
  forward on torch or on onnxruntime.
Torch and onnxruntime rounds alternate (torch, onnx, torch, onnx, ...) so a busy machine slows both
alike; each figure is the median of --runs rounds after --warmup. Ratio = onnxruntime ms / torch ms
(< 1: onnxruntime is faster). The largest |onnxruntime - torch| over the timed inputs is reported too.

    .venv/bin/python benchmarks/bench_onnx_runtime.py [--profiles smoke paper] [--batches 1 8]
        [--threads 2] [--runs 5] [--families handmle vmhpe] [--out PATH]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from _common import cpu_name
from poseops.families import families
from poseops.models import create_model
from poseops.onnx_models import OnnxForward, export_network, session, with_forward
from poseops.paths import state_dir
from poseops.storage import write_json_atomic
from poseops.tasks import Task


def two_d_families() -> list[str]:
    """Families whose task feeds images to the network (it implements `network_inputs`)."""
    return sorted(
        name
        for name, family in families().items()
        if type(family.task_module).network_inputs is not Task.network_inputs
    )


def alternating_medians(
    torch_fn: Callable[[], object], onnx_fn: Callable[[], object], runs: int, warmup: int
) -> tuple[float, float]:
    """Median seconds of each of two functions, timed in alternating rounds after warmup calls."""
    for _ in range(warmup):
        torch_fn()
        onnx_fn()
    times: dict[str, list[float]] = {"torch": [], "onnx": []}
    for _ in range(runs):
        for name, fn in (("torch", torch_fn), ("onnx", onnx_fn)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["torch"]), statistics.median(times["onnx"])


def bench_family(
    name: str, profile: str, batches: list[int], threads: int, runs: int, warmup: int
) -> dict:
    family = families()[name]
    torch.manual_seed(0)
    model = create_model(family.model, profile).eval()
    size = int(family.make_predictor(model).input_size)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.onnx"
        started = time.perf_counter()
        names = export_network(model, path, size)
        export_s = time.perf_counter() - started
        forward = OnnxForward(session(path, threads), names)
        twin = with_forward(model, forward)
        row: dict = {"input": size, "export_s": export_s, "outputs": names, "batches": {}}
        rng = np.random.default_rng(0)
        for batch in batches:
            pixels = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
            images = model.preprocess(torch.from_numpy(pixels))
            with torch.no_grad():
                expected, got = model(images), forward(images)
                worst = max(float((got[n] - expected[n]).abs().max()) for n in names)
                cases = {}
                for case, (torch_fn, onnx_fn) in {
                    "forward": (lambda x=images: model(x), lambda x=images: forward(x)),
                    "predict": (
                        lambda x=images: model.predict(x),
                        lambda x=images: twin.predict(x),
                    ),
                }.items():
                    torch_s, onnx_s = alternating_medians(torch_fn, onnx_fn, runs, warmup)
                    cases[case] = {
                        "torch_ms": 1000 * torch_s,
                        "onnx_ms": 1000 * onnx_s,
                        "ratio_onnx_over_torch": onnx_s / torch_s,
                    }
            row["batches"][str(batch)] = {"max_abs_diff": worst, **cases}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", default=None, help="default: every 2D family")
    parser.add_argument("--profiles", nargs="+", default=["smoke", "paper"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default=str(state_dir() / "bench" / "onnx_runtime.json"))
    args = parser.parse_args()
    import onnxruntime

    torch.set_num_threads(args.threads)
    names = args.families or two_d_families()
    results = {
        f"{name}/{profile}": bench_family(
            name, profile, args.batches, args.threads, args.runs, args.warmup
        )
        for profile in args.profiles
        for name in names
    }
    figures = {
        "cpu": cpu_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "runs": args.runs,
        "warmup": args.warmup,
        "results": results,
    }
    print(
        f"onnxruntime {onnxruntime.__version__} vs torch {torch.__version__}, {args.threads} threads "
        f"each, median of {args.runs} alternating rounds"
    )
    print(
        f"{'family/preset':16s} {'input':>5s} {'batch':>5s} {'case':8s} {'torch ms':>9s} "
        f"{'onnx ms':>9s} {'onnx/torch':>10s} {'max|diff|':>10s}"
    )
    for key, row in results.items():
        for batch, cases in row["batches"].items():
            for case in ("forward", "predict"):
                r = cases[case]
                print(
                    f"{key:16s} {row['input']:5d} {batch:>5s} {case:8s} {r['torch_ms']:9.1f} "
                    f"{r['onnx_ms']:9.1f} {r['ratio_onnx_over_torch']:10.2f} "
                    f"{cases['max_abs_diff']:10.2e}"
                )
    write_json_atomic(args.out, figures)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
