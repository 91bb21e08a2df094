"""Helpers shared by the benchmarks: the latency benchmarks' options, timing, FLOP counting, the sgemm peak
and the machine's description; the training recipes' options, their training by the train stage's step
function in one process (no Ray), their data and their scoring.

Imported by the scripts of this folder run as scripts (their folder is on sys.path); no import-time side
effects.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from poseops.datasets.loader import read_card, read_row_group, row_groups
from poseops.tasks import get_task
from poseops.tasks.topdown_crop import pck_normaliser
from poseops.train.ddp import StepOptions, run_epoch, single_sample
from poseops.train.loop import make_deterministic


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


# ---------------------------------------------------------------- training recipes (`*_recipe.py`)
CPU = torch.device("cpu")


def recipe_parser(
    description: str | None, batch: int, shift: float, jitter: float, wd: float | None = None
) -> argparse.ArgumentParser:
    """The options every training recipe takes (`--seed --tag --lr --batch --shift --jitter`, and
    `--wd` where `wd` is given), with the recipe's defaults; a recipe adds its own."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--shift", type=float, default=shift)
    parser.add_argument("--jitter", type=float, default=jitter)
    if wd is not None:
        parser.add_argument("--wd", type=float, default=wd)
    return parser


def parse_recipe_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed options; `--batch` must hold 2 samples or more, as the train stage's step function
    leaves a one-sample batch out (BatchNorm cannot train on it: poseops.train.ddp.run_epoch)."""
    args = parser.parse_args()
    if args.batch < 2:
        parser.error(
            "--batch must be 2 or more: the train stage's step leaves one-sample batches out"
        )
    return args


def start_recipe(seed: int) -> None:
    """One thread, seeded, deterministic kernels: the train stage's worker set-up (poseops.train.loop)."""
    make_deterministic(seed, threads=1)


def train_epoch(task_name: str, model: nn.Module, batches: Iterable[Any], optimizer) -> list[dict]:
    """One pass over `batches` (the task's training-loader form) by the train stage's step function
    (poseops.train.ddp.run_epoch) in one process, without Ray: each batch's loss terms as floats."""
    return run_epoch(get_task(task_name), model, batches, optimizer, CPU, StepOptions())


def train_steps(
    task_name: str,
    model: nn.Module,
    epochs: Iterable[Iterable[Any]],
    optimizer,
    steps: int,
    decay_at: int,
) -> list[dict]:
    """`steps` optimiser steps by the train stage's step function, epoch after epoch of `epochs` (each
    epoch's batches; as many epochs as it takes), the learning rate x 0.1 from step `decay_at` on (a
    MultiStepLR stepped per step). One-sample batches are passed over and not counted, as the train
    stage leaves them out. An epoch's batches are drawn only once the one before has trained, as a plain
    loop draws them (a new DataLoader iterator draws from torch's global generator). Each step's loss
    terms as floats."""
    terms: list[dict] = []
    decayed = False
    for batches in epochs:
        stream = (batch for batch in batches if not single_sample(batch))
        before = len(terms)
        while len(terms) < steps:
            if not decayed and len(terms) >= decay_at:
                for group in optimizer.param_groups:
                    group["lr"] *= 0.1
                decayed = True
            limit = (steps if decayed else decay_at) - len(terms)
            done = train_epoch(task_name, model, itertools.islice(stream, limit), optimizer)
            terms += done
            if len(done) < limit:  # the epoch's batches ran out
                break
        if len(terms) >= steps:
            break
        if len(terms) == before:
            raise ValueError(
                f"an epoch of the {task_name} training data gave no batch of 2 or more"
            )
    return terms


def read_rows(url: str, split: str, limit: int | None = None) -> list[dict]:
    """A derived dataset's rows of `split` in card order (the first `limit` of them when given)."""
    card = read_card(url)
    rows: list[dict] = []
    for path, group in row_groups(url, split, card):
        rows.extend(read_row_group(path, group))
        if limit and len(rows) >= limit:
            return rows[:limit]
    return rows


def crop_batch(samples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """`make_sample` outputs as a topdown_crop training batch, the loader's form (CropDataset): image
    uint8 [B,3,S,S] RGB, keypoints [B,K,2] input px, visibility [B,K]."""
    return {
        "image": torch.from_numpy(
            np.stack([s["image"] for s in samples]).transpose(0, 3, 1, 2).copy()
        ),
        "keypoints": torch.from_numpy(np.stack([s["keypoints"] for s in samples])),
        "visibility": torch.from_numpy(np.stack([s["visibility"] for s in samples])),
    }


def crop_scores(
    model: nn.Module,
    split: dict[str, np.ndarray],
    threshold: float = 0.2,
    normaliser: str = "keypoint_box",
) -> dict[str, float]:
    """The train stage's validation numbers of a topdown_crop model on a split held as arrays
    (`load_split_arrays`): PCK@threshold of the normaliser against the clean labels, and each stage's
    of a multi-stage model, as {"pck": .., "stage1": .., ...}."""
    split = {
        **split,
        "pck_normaliser": pck_normaliser(split, normaliser),
        "pck_threshold": np.float64(threshold),
    }
    scores = get_task("topdown_crop").validate(model, split)
    return {name.removeprefix("val_pck_").removeprefix("val_"): v for name, v in scores.items()}


def emit(result: dict, log: str | os.PathLike | None = None) -> None:
    """Print a run's result as one JSON line, and append it to `log` when given."""
    print(json.dumps(result), flush=True)
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as lines:
            lines.write(json.dumps(result) + "\n")
