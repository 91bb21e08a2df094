"""Benchmark: `poseops.metrics.coco_keypoint_ap` against pycocotools' own COCOeval.

Both score the same synthetic ground truth (default 5,000 people) and perturbed detections; the
extra cost of poseops is its input checking and copying (the direct run deep-copies its inputs
too, as pycocotools writes into them). Prints both timings and the ratio, checks that the stats
agree, and writes JSON to --out (default .poseops/bench/coco_ap.json).

    .venv/bin/python benchmarks/bench_coco_ap.py [--people 5000] [--repeats 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import platform
import time
from pathlib import Path

import numpy as np

from poseops.metrics import coco_keypoint_ap
from poseops.paths import state_dir
from poseops.storage import write_json_atomic


def synthetic_coco(
    num_people: int, people_per_image: int = 5, seed: int = 0
) -> tuple[dict, list[dict]]:
    """COCO-17 ground truth of `num_people` random people, and one noisy detection per person."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for p in range(num_people):
        image_id = p // people_per_image + 1
        if p % people_per_image == 0:
            images.append({"id": image_id, "width": 1280, "height": 960})
        size = rng.uniform(40, 300)
        xy = rng.uniform(size, 1000 - size, 2) + rng.normal(0, size / 3, (17, 2))
        v = rng.choice([0, 1, 2], 17, p=[0.15, 0.15, 0.7])
        lo, hi = xy.min(0), xy.max(0)
        anns.append(
            {
                "id": p + 1,
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 0,
                "keypoints": np.column_stack([xy * (v[:, None] > 0), v]).ravel().tolist(),
                "num_keypoints": int((v > 0).sum()),
                "bbox": [*lo, *(hi - lo)],
                "area": float(np.prod(hi - lo)),
            }
        )
        noisy = xy + rng.normal(0, size * 0.04, xy.shape)
        dets.append(
            {
                "image_id": image_id,
                "category_id": 1,
                "score": float(rng.uniform(0.2, 1)),
                "keypoints": np.column_stack([noisy, np.ones(17)]).ravel().tolist(),
            }
        )
    cats = [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(17)], "skeleton": []}]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def pycocotools_direct(gt: dict, dets: list[dict]) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), "keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(s) for s in evaluator.stats]


def best_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON output (default .poseops/bench/coco_ap.json)"
    )
    args = parser.parse_args()
    out = args.out or state_dir() / "bench" / "coco_ap.json"

    gt, dets = synthetic_coco(args.people)
    t_ref, ref_stats = best_time(lambda: pycocotools_direct(gt, dets), args.repeats)
    t_ours, ours = best_time(lambda: coco_keypoint_ap(gt, dets), args.repeats)
    names = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
    max_diff = max(
        abs((ours[n] if ours[n] is not None else -1.0) - r) for n, r in zip(names, ref_stats)
    )

    result = {
        "benchmark": "coco_keypoint_ap vs pycocotools COCOeval",
        "people": args.people,
        "images": len(gt["images"]),
        "repeats": args.repeats,
        "timing": "best of repeats",
        "pycocotools_s": t_ref,
        "poseops_s": t_ours,
        "ratio_poseops_over_pycocotools": t_ours / t_ref,
        "AP": ours["AP"],
        "max_abs_stat_difference": max_diff,
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    print(f"pycocotools COCOeval : {t_ref:.3f} s")
    print(f"poseops coco_keypoint_ap: {t_ours:.3f} s")
    print(
        f"ratio (poseops / pycocotools): {t_ours / t_ref:.3f}   AP={ours['AP']:.4f}   max |stat diff|={max_diff:.2e}"
    )
    write_json_atomic(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
