"""MPII Human Pose in its common JSON conversion -> the internal form.

The conversion most code reads (HRNet's `mpii/annot/{train,valid}.json`, also mmpose's `mpii_*.json`):
a JSON list with one record per person,

    {"image": "015601864.jpg", "center": [594.0, 257.0], "scale": 3.021046,
     "joints": [[620.0, 394.0], ... 16 x [x, y]], "joints_vis": [1, 1, ... 16 x 0/1]}

in MPII's joint order (r ankle, r knee, r hip, l hip, l knee, l ankle, pelvis, thorax, upper neck,
head top, r wrist, r elbow, r shoulder, l shoulder, l elbow, l wrist: `poseops.skeletons.MPII16`).
Coordinates are MATLAB's 1-based pixels, so 1 is subtracted (as HRNet's MPIIDataset does); an unlabelled
joint has `joints_vis` 0 (and often [-1, -1]). `scale` is the person's height / 200 px, so the person
box is the square of side 200·scale around `center`, clipped to the image by the checks.

Head boxes (PCKh's normaliser: Andriluka et al. 2014, "2D Human Pose Estimation: New Benchmark and
State of the Art Analysis") are taken where given: a per-record `headbox` [[x1, y1], [x2, y2]] or
[x1, y1, x2, y2], else `mpii_headboxes.npy` beside the JSON (shape [2, 2, N]: corner, x/y, record, as
`headboxes_src` of MPII's `mpii_gt_val.mat`). They become each annotation's `bbox_head` [x, y, w, h].
Images of one file name become one image record holding all its people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poseops.annotations.coco import image_size
from poseops.annotations.internal import category_for, relative_to
from poseops.errors import DataError
from poseops.skeletons import MPII16
from poseops.storage import read_json

CATEGORY_NAME = "person_mpii16"
HEADBOXES_FILE = "mpii_headboxes.npy"
PIXELS_PER_SCALE = 200.0


def _headboxes(file: Path, n: int) -> np.ndarray | None:
    """[N, 4] x1, y1, x2, y2 from mpii_headboxes.npy beside `file`, or None when there is none."""
    path = file.parent / HEADBOXES_FILE
    if not path.is_file():
        return None
    boxes = np.load(path, allow_pickle=False)
    if boxes.shape != (2, 2, n):
        raise DataError(
            f"{path}: shape {boxes.shape}, expected (2, 2, {n}) (corner, x/y, record of {file.name})"
        )
    return np.transpose(boxes, (2, 0, 1)).reshape(n, 4)


def _head_box(value: Any, where: str) -> list[float]:
    """[x, y, w, h] in 0-based pixels of a 1-based MATLAB head box."""
    flat = np.asarray(value, dtype=np.float64).ravel() - 1.0
    if flat.size != 4 or not np.isfinite(flat).all():
        raise DataError(
            f"{where}: headbox must be 4 finite numbers, [[x1, y1], [x2, y2]] or [x1, y1, x2, y2] (got {value!r})"
        )
    x1, y1, x2, y2 = flat
    return [float(min(x1, x2)), float(min(y1, y2)), float(abs(x2 - x1)), float(abs(y2 - y1))]


def read_mpii(
    file: str | Path, images_dir: str | Path | None, out_folder: Path | None
) -> dict[str, Any]:
    """An MPII JSON (see the module doc); images under `images_dir` (default: the JSON's folder, or its
    `images/` sub-folder when the images are there)."""
    file = Path(file)
    records = read_json(file)
    if not isinstance(records, list):
        raise DataError(
            f"{file}: expected a JSON list of MPII person records (image, center, scale, joints, joints_vis)"
        )
    folder = Path(images_dir) if images_dir else file.parent
    if (
        not images_dir
        and records
        and isinstance(records[0], dict)
        and not (folder / str(records[0].get("image"))).exists()
        and (folder / "images" / str(records[0].get("image"))).exists()
    ):
        folder = folder / "images"
    heads = _headboxes(file, len(records))
    k = MPII16.num_keypoints
    images: dict[str, dict] = {}
    annotations = []
    for i, rec in enumerate(records):
        where = f"{file}: record {i}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: not an object")
        missing = [key for key in ("image", "center", "scale", "joints") if key not in rec]
        if missing:
            raise DataError(f"{where}: lacks {', '.join(missing)}")
        where = f"{where} ({rec['image']})"
        try:
            joints = np.asarray(rec["joints"], dtype=np.float64)
            center = np.asarray(rec["center"], dtype=np.float64)
            scale = float(rec["scale"])
            vis = np.asarray(rec.get("joints_vis", [1] * k), dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise DataError(
                f"{where}: joints, joints_vis, center and scale must be numbers"
            ) from None
        if joints.shape != (k, 2) or vis.shape != (k,) or center.shape != (2,):
            raise DataError(
                f"{where}: joints must be {k} x [x, y], joints_vis {k} values, center [x, y] "
                f"(got {joints.shape}, {vis.shape}, {center.shape})"
            )
        if (
            not (np.isfinite(joints).all() and np.isfinite(center).all() and np.isfinite(scale))
            or scale <= 0
        ):
            raise DataError(f"{where}: joints, center and scale must be finite, scale > 0")
        name = str(rec["image"])
        if name not in images:
            path = folder / name
            width, height = image_size(path) if path.is_file() else (None, None)
            images[name] = {
                "id": len(images) + 1,
                "file_name": relative_to(path, out_folder),
                "frame_index": None,
                "width": width,
                "height": height,
                "sequence": None,
                "subject": None,
                "source": "mpii",
            }
        labelled = vis > 0
        points = np.where(labelled[:, None], joints - 1.0, 0.0)  # MATLAB 1-based -> 0-based pixels
        side = PIXELS_PER_SCALE * scale
        cx, cy = center - 1.0
        record = {
            "id": i + 1,
            "image_id": images[name]["id"],
            "category_id": 1,
            "keypoints": [
                float(v)
                for p, seen in zip(points, labelled)
                for v in (p[0], p[1], 2 if seen else 0)
            ],
            "num_keypoints": int(labelled.sum()),
            "bbox": [float(cx - side / 2), float(cy - side / 2), side, side],
            "iscrowd": 0,
            "center": [float(cx), float(cy)],
            "scale": scale,
        }
        head = rec.get("headbox", rec.get("head_box"))
        if head is not None:
            record["bbox_head"] = _head_box(head, where)
        elif heads is not None:
            record["bbox_head"] = _head_box(heads[i], where)
        annotations.append(record)
    if not annotations:
        raise DataError(f"{file}: no MPII person records")
    return {
        "images": list(images.values()),
        "annotations": annotations,
        "categories": [category_for(MPII16, 1, CATEGORY_NAME)],
        "info": {"sources": [str(file)]},
    }
