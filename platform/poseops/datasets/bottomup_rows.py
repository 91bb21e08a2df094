"""Rows of the `bottomup_image` kind (no torch here: Ray derivation tasks import this, not the loader).

See poseops.datasets.bottomup for the row layout and the loader.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from poseops.datasets.shards import FrameSource, image_ids, instances, unit_of
from poseops.skeletons import Skeleton

BOTTOMUP_SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),  # = image_id
        ("image_id", pa.int64()),
        ("sequence", pa.string()),
        ("subject", pa.string()),
        ("frame_index", pa.int64()),
        ("image", pa.binary()),  # the source's encoded bytes (JPEG or PNG)
        ("image_format", pa.string()),  # "jpeg" | "png"
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("num_people", pa.int32()),
        ("annotation_ids", pa.list_(pa.int64())),  # P
        ("keypoints", pa.list_(pa.float32())),  # P*K*2, source px
        ("keypoints_clean", pa.list_(pa.float32())),  # P*K*2 (= keypoints where no truth is known)
        ("visibility", pa.list_(pa.int8())),  # P*K, COCO 0/1/2
        ("boxes", pa.list_(pa.float32())),  # P*4, x, y, w, h source px
        ("ignore_boxes", pa.list_(pa.float32())),  # Q*4: crowd boxes and ignore_regions
    ]
)


# ---------------------------------------------------------------- derive
def plan_images(labels: dict, skeleton: Skeleton, options: dict) -> list[dict]:
    """One item per image with >= 1 labelled person of the skeleton: {"unit", "sample_id", "image",
    "annotations" (persons, annotation order), "ignore_boxes"}."""
    people: dict[int, list[dict]] = defaultdict(list)
    images: dict[int, dict] = {}
    for image, ann in instances(labels, skeleton):
        people[image["id"]].append(ann)
        images[image["id"]] = image
    crowd: dict[int, list[list[float]]] = defaultdict(list)
    for ann in labels["annotations"]:
        if ann.get("iscrowd") and ann.get("bbox"):
            crowd[ann["image_id"]].append([float(v) for v in ann["bbox"]])
    items = []
    for image in labels["images"]:  # image order, so a video's frames stay together
        if image["id"] not in people:
            continue
        ignore = crowd.get(image["id"], []) + [
            [float(v) for v in r] for r in image.get("ignore_regions") or []
        ]
        items.append(
            {
                "unit": unit_of(image),
                "sequence_unit": unit_of(image, "sequence"),
                "sample_id": int(image["id"]),
                "image": image,
                "annotations": people[image["id"]],
                "ignore_boxes": ignore,
            }
        )
    return items


def image_rows(items: list[dict], context) -> Iterator[dict]:
    """Shard rows (BOTTOMUP_SCHEMA) of image items; context: poseops.datasets.derive.RowContext."""
    K = context.num_keypoints
    source = FrameSource(Path(context.annotations_path))
    for item in items:
        image, anns = item["image"], item["annotations"]
        data, fmt = source.encoded(image)
        width, height = image.get("width"), image.get("height")
        if not width or not height:
            height, width = source.frame(image).shape[:2]
        kp = np.stack([np.asarray(a["keypoints"], dtype=np.float64).reshape(K, 3) for a in anns])
        clean = np.stack(
            [
                np.asarray(
                    a.get("keypoints_clean")
                    or np.asarray(a["keypoints"]).reshape(K, 3)[:, :2].ravel(),
                    dtype=np.float64,
                ).reshape(K, 2)
                for a in anns
            ]
        )
        yield {
            "sample_id": int(image["id"]),
            "image_id": int(image["id"]),
            **image_ids(image),
            "image": data,
            "image_format": fmt,
            "width": int(width),
            "height": int(height),
            "num_people": len(anns),
            "annotation_ids": [int(a["id"]) for a in anns],
            "keypoints": kp[..., :2].astype(np.float32).ravel().tolist(),
            "keypoints_clean": clean.astype(np.float32).ravel().tolist(),
            "visibility": kp[..., 2].astype(np.int8).ravel().tolist(),
            "boxes": [float(v) for a in anns for v in a["bbox"]],
            "ignore_boxes": [float(v) for box in item["ignore_boxes"] for v in box],
        }


def card_fields(items: list[dict], context) -> dict[str, Any]:
    """max_people: the most persons in one image (the loader pads to it)."""
    return {"max_people": max(len(item["annotations"]) for item in items)}
