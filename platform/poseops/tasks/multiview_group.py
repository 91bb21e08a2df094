"""The `multiview_group` task: one row per (group, person), a group being one instant seen by several views.

Row (MULTIVIEW_SCHEMA), V views in image order: views / camera_ids / image_ids / annotation_ids [V],
keypoints_2d [V*K*2] source px, visibility [V*K] (COCO 0/1/2), boxes [V*4], cameras (JSON list of V
poseops.geometry.Camera), keypoints_3d [K*3] world mm (NaN where no view's annotation has it) with
valid_3d [K], and the ids. From internal annotations whose images carry `group` and `camera_id`; a person
is matched across views by person_id (else track_id, else the only person of each view). Groups seen
by fewer than `min_views` views (option, default 2) are left out.

So far this task holds its options and rows (derive); training, evaluation and serving come with its
first family (the `Task` base answers them with a ConfigError naming what is missing).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from poseops.config import FamilyData
from poseops.datasets.derive import RowPlan
from poseops.datasets.shards import instances, unit_of
from poseops.errors import DataError
from poseops.geometry import Camera
from poseops.skeletons import Skeleton
from poseops.tasks import Task, register_task
from poseops.tasks.lifting_sequence import camera_of, person_key, world_points

MULTIVIEW_SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("group", pa.string()),
        ("person", pa.string()),
        ("sequence", pa.string()),
        ("subject", pa.string()),
        ("frame_index", pa.int64()),
        ("num_views", pa.int32()),
        ("views", pa.list_(pa.string())),  # V
        ("camera_ids", pa.list_(pa.int64())),  # V
        ("image_ids", pa.list_(pa.int64())),  # V
        ("annotation_ids", pa.list_(pa.int64())),  # V
        ("keypoints_2d", pa.list_(pa.float32())),  # V*K*2 source px of each view
        ("visibility", pa.list_(pa.int8())),  # V*K
        ("boxes", pa.list_(pa.float32())),  # V*4
        ("cameras", pa.string()),  # JSON list of V cameras
        ("keypoints_3d", pa.list_(pa.float32())),  # K*3 world mm
        ("valid_3d", pa.list_(pa.int8())),  # K
    ]
)


def plan_groups(labels: dict, skeleton: Skeleton, options: dict) -> list[dict]:
    """One item per (group, person) seen by >= min_views views: {"unit", "sample_id", "views": [...], ids}."""
    min_views = int(options.get("min_views", 2))
    cameras = {c["id"]: c for c in labels.get("cameras") or []}
    groups: dict[tuple[str, str], list[tuple[dict, dict]]] = defaultdict(list)
    for image, ann in instances(labels, skeleton):
        if image.get("group") in (None, "") or image.get("camera_id") is None:
            continue
        if image["camera_id"] not in cameras:
            raise DataError(
                f"image {image['id']}: camera_id {image['camera_id']} is not in the annotations' cameras"
            )
        groups[(str(image["group"]), person_key(ann))].append((image, ann))
    items = []
    for (group, person), views in groups.items():
        if len({img["camera_id"] for img, _ in views}) < min_views:
            continue
        first = views[0][0]
        items.append(
            {
                "unit": unit_of(first),
                "sequence_unit": unit_of(first, "sequence"),
                "sample_id": len(items),
                "source": first.get("source"),
                "group": group,
                "person": person,
                "sequence": str(first.get("sequence") or ""),
                "subject": str(first.get("subject") or ""),
                "frame_index": -1
                if first.get("frame_index") is None
                else int(first["frame_index"]),
                "views": [
                    {
                        "image_id": img["id"],
                        "view": str(img.get("view") or ""),
                        "camera": cameras[img["camera_id"]],
                        "camera_id": int(img["camera_id"]),
                        "annotation": ann,
                    }
                    for img, ann in views
                ],
            }
        )
    return items


def group_rows(items: list[dict], context) -> Iterator[dict]:
    """Shard rows (MULTIVIEW_SCHEMA); context: poseops.datasets.derive.RowContext."""
    K = context.num_keypoints
    for item in items:
        views = item["views"]
        kp = np.stack(
            [
                np.asarray(v["annotation"]["keypoints"], dtype=np.float64).reshape(K, 3)
                for v in views
            ]
        )
        world = np.stack(
            [world_points(v["annotation"], K) for v in views]
        )  # [V,K,3], NaN where absent
        known = np.isfinite(world).all(-1)
        first = np.where(known.any(0), known.argmax(0), 0)  # the first view that has each joint
        joints = world[first, np.arange(K)]
        yield {
            "sample_id": item["sample_id"],
            "group": item["group"],
            "person": item["person"],
            "sequence": item["sequence"],
            "subject": item["subject"],
            "frame_index": item["frame_index"],
            "num_views": len(views),
            "views": [v["view"] for v in views],
            "camera_ids": [v["camera_id"] for v in views],
            "image_ids": [int(v["image_id"]) for v in views],
            "annotation_ids": [int(v["annotation"]["id"]) for v in views],
            "keypoints_2d": kp[..., :2].astype(np.float32).ravel().tolist(),
            "visibility": kp[..., 2].astype(np.int8).ravel().tolist(),
            "boxes": [float(x) for v in views for x in v["annotation"]["bbox"]],
            "cameras": json.dumps([camera_of(v["camera"]).model_dump(mode="json") for v in views]),
            "keypoints_3d": joints.astype(np.float32).ravel().tolist(),
            "valid_3d": known.any(0).astype(np.int8).tolist(),
        }


def card_fields(items: list[dict], context) -> dict[str, Any]:
    return {
        "max_views": max(len(item["views"]) for item in items),
        "min_views": int(context.options.get("min_views", 2)),
    }


def load_multiview_split(url: str, split: str) -> list[dict[str, Any]]:
    """A multi-view split in card order; per (group, person): keypoints_2d [V,K,2], visibility [V,K],
    boxes [V,4], cameras (V poseops.geometry.Camera), keypoints_3d [K,3] world mm, valid_3d [K], ids."""
    from poseops.datasets.loader import read_card, read_row_group, row_groups

    card = read_card(url, "multiview_group")
    K = len(card["skeleton"]["keypoints"])
    out = []
    for path, group in row_groups(url, split, card):
        for r in read_row_group(path, group):
            V = r["num_views"]
            out.append(
                {
                    **{
                        k: r[k]
                        for k in (
                            "sample_id",
                            "group",
                            "person",
                            "sequence",
                            "subject",
                            "frame_index",
                            "views",
                            "camera_ids",
                            "image_ids",
                            "annotation_ids",
                        )
                    },
                    "keypoints_2d": np.asarray(r["keypoints_2d"], np.float32).reshape(V, K, 2),
                    "visibility": np.asarray(r["visibility"], np.float32).reshape(V, K),
                    "boxes": np.asarray(r["boxes"], np.float32).reshape(V, 4),
                    "cameras": [Camera.model_validate(c) for c in json.loads(r["cameras"])],
                    "keypoints_3d": np.asarray(r["keypoints_3d"], np.float32).reshape(K, 3),
                    "valid_3d": np.asarray(r["valid_3d"], np.int8),
                }
            )
    if not out:
        raise DataError(f"{url}: split {split!r} is empty")
    return out


class MultiviewGroupData(FamilyData):
    kind: Literal["multiview_group"] = "multiview_group"
    min_views: int = Field(2, ge=1, description="least views per group")

    def derive_options(self) -> dict[str, Any]:
        return {"min_views": self.min_views}


@register_task
class MultiviewGroup(Task):
    name = "multiview_group"
    Options = MultiviewGroupData
    rows = RowPlan("multiview_group", MULTIVIEW_SCHEMA, plan_groups, group_rows, card_fields)
