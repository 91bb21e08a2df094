"""What the old flip-test bias cost in COCO AP: +0.5 input px in x on every keypoint.

Before the package had one pixel convention (`poseops.codecs`), a flip-tested bottom-up prediction was
shifted by +0.5 input px in x. This scores predictions = truth + N(0, sigma^2) (input px), with and
without that shift, on every person-view of a synthetic body capture, each view letterboxed to a
256-px input as vmhpe's evaluation does (the shift in source px is 0.5 x longer side / 256).

    dvc repro capture   # the smoke profile's bodies: 1,980 views, 4,180 people
    PYTHONPATH=platform python benchmarks/flip_bias_ap.py data/raw/synthetic/bodies 0 1 3 5.5

On the smoke capture: sigma 0: AP 0.9925 either way; 1 px: 0.9418 -> 0.9282 (-0.0136); 3 px: 0.5193 ->
0.5155 (-0.0038); 5.5 px (AP near the smoke vmhpe's 0.127): 0.1373 -> 0.1367 (-0.0006).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from poseops.metrics import coco_keypoint_ap

INPUT_SIZE = 256
SHIFT_PX = 0.5


def person_views(capture: Path) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(keypoints [P, 17, 3], boxes [P, 4], input-to-source scale) of every view of every frame."""
    cameras = json.loads((capture / "cameras.json").read_text())
    views = []
    for line in (capture / "labels.jsonl").read_text().splitlines():
        sequence = json.loads(line)
        for frame in sequence["frames"]:
            for name, view in frame["views"].items():
                if not view["people"]:
                    continue
                camera = cameras[sequence["id"]][name]
                keypoints = np.array([p["keypoints"] for p in view["people"]], dtype=np.float64)
                boxes = np.array([p["bbox"] for p in view["people"]], dtype=np.float64)
                views.append(
                    (keypoints, boxes, max(camera["width"], camera["height"]) / INPUT_SIZE)
                )
    return views


def average_precision(views, sigma: float, shift: float, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    images, annotations, detections = [], [], []
    for image_id, (keypoints, boxes, scale) in enumerate(views):
        images.append({"id": image_id})
        for person, box in zip(keypoints, boxes):
            visible = person[:, 2] > 0
            truth = np.where(visible[:, None], person[:, :2], 0.0)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "keypoints": np.c_[truth, person[:, 2]].ravel().tolist(),
                    "num_keypoints": int(visible.sum()),
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3]),
                }
            )
            guess = person[:, :2] + rng.normal(0.0, sigma * scale, (len(person), 2))
            guess[:, 0] += shift * scale
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "score": 1.0,
                    "keypoints": np.c_[guess, np.ones(len(person))].ravel().tolist(),
                }
            )
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(17)]}],
    }
    return coco_keypoint_ap(dataset, detections)["AP"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "capture", type=Path, help="a synthetic body capture folder (labels.jsonl, cameras.json)"
    )
    parser.add_argument("sigmas", type=float, nargs="+", help="prediction noise, input px")
    args = parser.parse_args()
    views = person_views(args.capture)
    print(f"{len(views)} views, {sum(len(v[0]) for v in views)} people")
    for sigma in args.sigmas:
        unbiased, biased = (
            average_precision(views, sigma, 0.0),
            average_precision(views, sigma, SHIFT_PX),
        )
        print(
            f"sigma {sigma:g} px: AP {unbiased:.4f} unbiased, {biased:.4f} with +{SHIFT_PX} px ({biased - unbiased:+.4f})"
        )


if __name__ == "__main__":
    main()
