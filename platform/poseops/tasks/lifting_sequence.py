"""The `lifting_sequence` task: windows of T frames of one person seen by one camera, for 2D->3D lifting.

Row (LIFTING_SCHEMA): keypoints_2d [T*K*2] source px, visibility [T*K] (COCO 0/1/2), keypoints_3d_cam
[T*K*3] camera-space mm relative to the root joint (joint `root`, 0 = the pelvis of h36m17), root_cam [T*3]
the root in camera space mm, valid_3d [T*K] (0 where the annotation has no 3D for the joint; its 3D is NaN),
intrinsics [fx, fy, cx, cy], the camera as JSON (poseops.geometry.Camera fields), and the ids.

From internal annotations that carry keypoints_3d (world mm) on images with a camera_id. A track is one
(sequence, camera, person) in frame order (person: person_id, else track_id, else the only one); windows
start every `stride` frames (default T: no overlap) and hold exactly T frames (shorter tracks are left out).
No targets beyond the 3D itself: the lifting codec normalises after loading.

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

DEFAULT_WINDOW = 27

LIFTING_SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("sequence", pa.string()),
        ("subject", pa.string()),
        ("person", pa.string()),
        ("camera_id", pa.int64()),
        ("view", pa.string()),
        ("frame_indices", pa.list_(pa.int64())),  # T
        ("image_ids", pa.list_(pa.int64())),  # T
        ("annotation_ids", pa.list_(pa.int64())),  # T
        ("keypoints_2d", pa.list_(pa.float32())),  # T*K*2 source px
        ("visibility", pa.list_(pa.int8())),  # T*K
        ("keypoints_3d_cam", pa.list_(pa.float32())),  # T*K*3 camera mm, root-relative
        ("root_cam", pa.list_(pa.float32())),  # T*3 camera mm
        ("valid_3d", pa.list_(pa.int8())),  # T*K
        ("intrinsics", pa.list_(pa.float64())),  # fx, fy, cx, cy
        ("camera", pa.string()),  # JSON of poseops.geometry.Camera
    ]
)


def camera_of(record: dict) -> Camera:
    """A poseops.geometry.Camera from an annotations `cameras` record (extra keys such as id, subject dropped)."""
    return Camera(**{k: v for k, v in record.items() if k in Camera.model_fields})


def world_points(ann: dict, num_keypoints: int) -> np.ndarray:
    """keypoints_3d of an annotation as [K,3] world mm, NaN where a joint (or the whole field) is null."""
    raw = ann.get("keypoints_3d")
    if raw is None:
        return np.full((num_keypoints, 3), np.nan)
    values = [np.nan if v is None else float(v) for v in raw]
    return np.asarray(values, dtype=np.float64).reshape(num_keypoints, 3)


def person_key(ann: dict) -> str:
    if ann.get("person_id") not in (None, ""):
        return str(ann["person_id"])
    if ann.get("track_id") is not None:
        return f"track:{ann['track_id']}"
    return ""


def plan_windows(labels: dict, skeleton: Skeleton, options: dict) -> list[dict]:
    """One item per window: {"unit", "sample_id", "camera", "frames": [(image, annotation)] * T, ids}."""
    T = int(options.get("window", DEFAULT_WINDOW))
    stride = int(options.get("stride") or T)
    if T < 1 or stride < 1:
        raise DataError(f"derive: lifting window {T} and stride {stride} must be >= 1")
    cameras = {c["id"]: c for c in labels.get("cameras") or []}
    tracks: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for image, ann in instances(labels, skeleton):
        if ann.get("keypoints_3d") is None or image.get("camera_id") is None:
            continue
        if image["camera_id"] not in cameras:
            raise DataError(
                f"image {image['id']}: camera_id {image['camera_id']} is not in the annotations' cameras"
            )
        tracks[(str(image.get("sequence") or ""), image["camera_id"], person_key(ann))].append(
            (image, ann)
        )
    items = []
    for (sequence, camera_id, person), frames in tracks.items():
        frames.sort(key=lambda pair: (pair[0].get("frame_index") or 0, pair[0]["id"]))
        for start in range(0, len(frames) - T + 1, stride):
            window = frames[start : start + T]
            first = window[0][0]
            items.append(
                {
                    "unit": unit_of(first),
                    "sequence_unit": unit_of(first, "sequence"),
                    "sample_id": len(items),
                    "source": first.get("source"),
                    "camera": cameras[camera_id],
                    "camera_id": int(camera_id),
                    "person": person,
                    "sequence": sequence,
                    "subject": str(first.get("subject") or ""),
                    "view": str(first.get("view") or ""),
                    "frames": [
                        {
                            "image_id": img["id"],
                            "frame_index": img.get("frame_index"),
                            "annotation": ann,
                        }
                        for img, ann in window
                    ],
                }
            )
    return items


def window_rows(items: list[dict], context) -> Iterator[dict]:
    """Shard rows (LIFTING_SCHEMA); context: poseops.datasets.derive.RowContext (options: root)."""
    K = context.num_keypoints
    root = int(context.options.get("root", 0))
    for item in items:
        camera = camera_of(item["camera"])
        anns = [f["annotation"] for f in item["frames"]]
        kp = np.stack(
            [np.asarray(a["keypoints"], dtype=np.float64).reshape(K, 3) for a in anns]
        )  # [T,K,3]
        world = np.stack([world_points(a, K) for a in anns])  # [T,K,3]
        cam = world @ camera.rotation.T + camera.translation
        root_cam = cam[:, root]  # [T,3]
        yield {
            "sample_id": item["sample_id"],
            "sequence": item["sequence"],
            "subject": item["subject"],
            "person": item["person"],
            "camera_id": item["camera_id"],
            "view": item["view"],
            "frame_indices": [
                -1 if f["frame_index"] is None else int(f["frame_index"]) for f in item["frames"]
            ],
            "image_ids": [int(f["image_id"]) for f in item["frames"]],
            "annotation_ids": [int(a["id"]) for a in anns],
            "keypoints_2d": kp[..., :2].astype(np.float32).ravel().tolist(),
            "visibility": kp[..., 2].astype(np.int8).ravel().tolist(),
            "keypoints_3d_cam": (cam - root_cam[:, None]).astype(np.float32).ravel().tolist(),
            "root_cam": root_cam.astype(np.float32).ravel().tolist(),
            "valid_3d": np.isfinite(cam).all(-1).astype(np.int8).ravel().tolist(),
            "intrinsics": [camera.fx, camera.fy, camera.cx, camera.cy],
            "camera": camera.model_dump_json(),
        }


def card_fields(items: list[dict], context) -> dict[str, Any]:
    T = len(items[0]["frames"])
    return {
        "window": T,
        "stride": int(context.options.get("stride") or T),
        "root_joint": int(context.options.get("root", 0)),
        "cameras": len({item["camera_id"] for item in items}),
    }


def load_lifting_split(url: str, split: str) -> dict[str, np.ndarray]:
    """A lifting split as stacked arrays in card order: keypoints_2d [N,T,K,2] px, visibility [N,T,K],
    keypoints_3d_cam [N,T,K,3] mm root-relative, root_cam [N,T,3], valid_3d [N,T,K], intrinsics [N,4],
    sample_id [N]; cameras: list of N poseops.geometry.Camera."""
    from poseops.datasets.loader import read_card, read_row_group, row_groups

    card = read_card(url, "lifting_sequence")
    T, K = card["window"], len(card["skeleton"]["keypoints"])
    rows = [r for path, group in row_groups(url, split, card) for r in read_row_group(path, group)]
    if not rows:
        raise DataError(f"{url}: split {split!r} is empty")

    def stack(key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        return np.asarray([r[key] for r in rows], dtype=dtype).reshape(len(rows), *shape)

    return {
        "keypoints_2d": stack("keypoints_2d", (T, K, 2), np.float32),
        "visibility": stack("visibility", (T, K), np.float32),
        "keypoints_3d_cam": stack("keypoints_3d_cam", (T, K, 3), np.float32),
        "root_cam": stack("root_cam", (T, 3), np.float32),
        "valid_3d": stack("valid_3d", (T, K), np.int8),
        "intrinsics": stack("intrinsics", (4,), np.float64),
        "sample_id": stack("sample_id", (), np.int64),
        "cameras": [Camera.model_validate(json.loads(r["camera"])) for r in rows],
    }


class LiftingSequenceData(FamilyData):
    kind: Literal["lifting_sequence"] = "lifting_sequence"
    sequence_window: int = Field(DEFAULT_WINDOW, ge=1, description="frames per window (T)")
    sequence_stride: int | None = Field(None, ge=1, description="window step (default T)")

    def derive_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"window": self.sequence_window}
        if self.sequence_stride is not None:
            options["stride"] = self.sequence_stride
        return options


@register_task
class LiftingSequence(Task):
    name = "lifting_sequence"
    Options = LiftingSequenceData
    rows = RowPlan("lifting_sequence", LIFTING_SCHEMA, plan_windows, window_rows, card_fields)
