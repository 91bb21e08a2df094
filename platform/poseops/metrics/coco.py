"""COCO keypoint AP/AR through pycocotools, with custom OKS sigmas for other skeletons.

Inputs are checked before pycocotools sees them (it asserts or silently mis-scores on bad input);
every problem raises `DataError` naming the record. pycocotools' printing is silenced.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import numpy as np

from poseops.errors import DataError

# COCO-17 OKS sigmas (pycocotools' defaults; cocodataset.org keypoint evaluation).
COCO17_SIGMAS = (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89)
COCO17_SIGMAS = tuple(s / 10.0 for s in COCO17_SIGMAS)

# Names of pycocotools' `COCOeval.stats` for iouType="keypoints", in order.
STAT_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")


def _load_ground_truth(gt: dict | str | Path) -> tuple[dict, str]:
    if isinstance(gt, dict):
        return gt, "ground truth"
    path = Path(gt)
    try:
        return json.loads(path.read_text()), str(path)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: ground-truth file not found") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc


def _check_keypoints(where: str, keypoints, num_keypoints: int) -> None:
    if not isinstance(keypoints, (list, tuple, np.ndarray)) or len(keypoints) != 3 * num_keypoints:
        got = len(keypoints) if hasattr(keypoints, "__len__") else type(keypoints).__name__
        raise DataError(
            f"{where}: 'keypoints' must hold {3 * num_keypoints} numbers ({num_keypoints} keypoints "
            f"x (x, y, v)), got {got}"
        )
    try:
        values = np.asarray(keypoints, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: 'keypoints' are not all numbers") from exc
    if not np.isfinite(values).all():
        raise DataError(f"{where}: 'keypoints' holds NaN or inf at index {int(np.argmin(np.isfinite(values)))}")


def _prepare_ground_truth(dataset: dict, source: str, num_keypoints: int,
                          missing_area: str) -> tuple[dict, int]:
    """A checked copy of the ground truth (the caller's dict is never changed); count of areas filled."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise DataError(f"{source}: missing or malformed {key!r} list")
    image_ids = {img.get("id") for img in dataset["images"]}
    annotations, filled = [], 0
    for i, ann in enumerate(dataset["annotations"]):
        where = f"{source}: annotations[{i}] (id {ann.get('id')!r})"
        if ann.get("image_id") not in image_ids:
            raise DataError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        _check_keypoints(where, ann.get("keypoints"), num_keypoints)
        ann = dict(ann)
        if "area" not in ann:
            if missing_area == "refuse":
                raise DataError(
                    f"{where}: no 'area' (OKS needs it); add it, or pass missing_area='bbox' to use "
                    "the box's w*h"
                )
            bbox = ann.get("bbox")
            if not bbox or len(bbox) != 4:
                raise DataError(f"{where}: no 'area' and no 'bbox' to derive it from")
            ann["area"] = float(bbox[2]) * float(bbox[3])
            filled += 1
        if not (isinstance(ann["area"], (int, float)) and math.isfinite(ann["area"]) and ann["area"] >= 0):
            raise DataError(f"{where}: 'area' must be a non-negative number, got {ann['area']!r}")
        ann.setdefault("iscrowd", 0)
        annotations.append(ann)
    return {**dataset, "annotations": annotations}, filled


def _prepare_detections(dets: list[dict], image_ids: set, category_ids: set, num_keypoints: int) -> list[dict]:
    """Checked copies of the detections (pycocotools writes into them)."""
    if not isinstance(dets, list):
        raise DataError(f"dets: expected a list of detection records, got {type(dets).__name__}")
    checked = []
    for i, det in enumerate(dets):
        where = f"dets[{i}]"
        if not isinstance(det, dict):
            raise DataError(f"{where}: expected a dict, got {type(det).__name__}")
        if det.get("image_id") not in image_ids:
            raise DataError(f"{where}: unknown image_id {det.get('image_id')!r} (not in the ground truth's 'images')")
        if det.get("category_id") not in category_ids:
            raise DataError(f"{where}: unknown category_id {det.get('category_id')!r}")
        _check_keypoints(where, det.get("keypoints"), num_keypoints)
        score = det.get("score")
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise DataError(f"{where}: 'score' must be a finite number, got {score!r}")
        det = dict(det)
        det["keypoints"] = [float(v) for v in det["keypoints"]]
        checked.append(det)
    return checked


def coco_keypoint_ap(
    gt: dict | str | Path,
    dets: list[dict],
    sigmas: list[float] | None = None,
    *,
    missing_area: Literal["refuse", "bbox"] = "refuse",
) -> dict:
    """COCO keypoint AP/AR via pycocotools' `COCOeval(iouType="keypoints")`.

    gt: a COCO keypoints dataset (dict or path to its JSON); dets: COCO result records
    `{"image_id", "category_id", "keypoints": [x, y, v]*K, "score"}`; sigmas: OKS sigmas, one per
    keypoint (default COCO-17; required for any other K). missing_area: ground truth without `area`
    is refused ("refuse") or given its box's w*h ("bbox", stated in the protocol).

    Returns `{"AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL", "protocol"}`,
    fractions in [0, 1]; None where pycocotools has nothing to score (its -1, e.g. no medium people).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if missing_area not in ("refuse", "bbox"):
        raise DataError(f"missing_area: expected 'refuse' or 'bbox', got {missing_area!r}")
    dataset, source = _load_ground_truth(gt)
    if sigmas is None:
        ks = [len(c.get("keypoints", [])) for c in dataset.get("categories", []) or []]
        if any(k not in (0, 17) for k in ks):
            raise DataError(f"{source}: categories have {ks} keypoints; pass `sigmas` (one per keypoint)")
    sigma_values = tuple(float(s) for s in (COCO17_SIGMAS if sigmas is None else sigmas))
    if not sigma_values or not all(math.isfinite(s) and s > 0 for s in sigma_values):
        raise DataError(f"sigmas: expected positive numbers, got {list(sigma_values)}")
    num_keypoints = len(sigma_values)

    dataset, filled = _prepare_ground_truth(dataset, source, num_keypoints, missing_area)
    image_ids = {img["id"] for img in dataset["images"]}
    category_ids = {c.get("id") for c in dataset["categories"]}
    detections = _prepare_detections(dets, image_ids, category_ids, num_keypoints)

    protocol = {
        "metric": "COCO keypoint AP/AR",
        "evaluator": f"pycocotools {version('pycocotools')} COCOeval(iouType='keypoints')",
        "similarity": "OKS",
        "oks_thresholds": "0.50:0.05:0.95",
        "max_dets": 20,
        "area_ranges": {"medium": [32**2, 96**2], "large": [96**2, 1e5**2]},
        "sigmas": list(sigma_values),
        "sigmas_source": "COCO-17 default" if sigmas is None else "custom",
        "area": (f"box w*h for {filled} annotation(s) without 'area'" if filled else "from ground truth"),
        "num_images": len(image_ids),
        "num_gt": len(dataset["annotations"]),
        "num_dets": len(detections),
        "missing_value": "None where pycocotools has nothing to score (its -1)",
    }
    if not detections:
        return {**{name: 0.0 for name in STAT_NAMES}, "protocol": {**protocol, "note": "no detections"}}

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(detections)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = np.array(sigma_values)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: (None if value < 0 else float(value)) for name, value in zip(STAT_NAMES, evaluator.stats)}
    return {**stats, "protocol": protocol}
