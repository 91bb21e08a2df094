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
        return {**dict.fromkeys(STAT_NAMES, 0.0), "protocol": {**protocol, "note": "no detections"}}

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


# ---------------------------------------------------------------- per-image people: COCO records, OKS, matching
# Per image, source-image pixels:
#     truth[i]       = {"keypoints": [P,K,2], "visibility": [P,K] (COCO 0/1/2), "boxes": [P,4] x,y,w,h (optional)}
#     predictions[i] = {"keypoints": [Q,K,2], "keypoint_scores": [Q,K], "scores": [Q]}
FAR = 1e6  # px: where an unmatched ground-truth person's "prediction" is put (always a miss)


def person_boxes(keypoints: np.ndarray, visibility: np.ndarray, boxes: np.ndarray | None) -> np.ndarray:
    """The given boxes [P,4], else the tight box of each person's labelled keypoints (x, y, w, h)."""
    if boxes is not None and len(boxes) == len(keypoints):
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros((len(keypoints), 4))
    for p, (points, vis) in enumerate(zip(keypoints, visibility)):
        if (vis > 0).any():
            lo, hi = points[vis > 0].min(0), points[vis > 0].max(0)
            out[p] = [lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]
    return out


def coco_ground_truth(truth: list[dict], keypoint_names: list[str], edges: list[tuple[int, int]]) -> dict:
    """Per-image truth -> a COCO keypoints dataset (area = box w*h; people with no label are ignored)."""
    k = len(keypoint_names)
    images, annotations = [], []
    for image_id, item in enumerate(truth):
        images.append({"id": image_id})
        keypoints = np.asarray(item["keypoints"], dtype=np.float64).reshape(-1, k, 2)
        visibility = np.asarray(item["visibility"]).reshape(-1, k)
        boxes = person_boxes(keypoints, visibility, item.get("boxes"))
        for points, vis, box in zip(keypoints, visibility, boxes):
            flat = np.concatenate([np.where(vis[:, None] > 0, points, 0.0), vis[:, None]], axis=1).ravel()
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "keypoints": [float(v) for v in flat], "num_keypoints": int((vis > 0).sum()),
                "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
            })
    categories = [{"id": 1, "name": "person", "keypoints": list(keypoint_names),
                   "skeleton": [[a + 1, b + 1] for a, b in edges]}]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_detections(predictions: list[dict]) -> list[dict]:
    """Per-image predictions -> COCO result records (keypoint triplets x, y, keypoint score)."""
    records = []
    for image_id, item in enumerate(predictions):
        for points, point_scores, score in zip(item["keypoints"], item["keypoint_scores"], item["scores"]):
            flat = np.concatenate([points, np.asarray(point_scores)[:, None]], axis=1).ravel()
            records.append({"image_id": image_id, "category_id": 1, "keypoints": [float(v) for v in flat],
                            "score": float(score)})
    return records


def oks(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, area: float, sigmas: np.ndarray) -> np.ndarray:
    """Object keypoint similarity of predictions [Q,K,2] against one person [K,2] -> [Q] (pycocotools'
    COCOeval.computeOks: exp(-d^2 / (2 s^2 (2 sigma)^2)) averaged over labelled keypoints, s^2 = area)."""
    if not visible.any():
        return np.zeros(len(pred))
    d2 = ((pred - gt[None]) ** 2).sum(-1)
    e = d2 / ((2 * sigmas) ** 2 * (area + np.spacing(1)) * 2)
    return np.exp(-e)[:, visible].mean(axis=1)


def match_people(pred: dict, keypoints: np.ndarray, visibility: np.ndarray, areas: np.ndarray,
                 sigmas: np.ndarray) -> np.ndarray:
    """Greedy OKS matching, best-scored predictions first: for each true person [P], the index of its
    prediction or -1."""
    match = np.full(len(keypoints), -1)
    if not len(pred["scores"]) or not len(keypoints):
        return match
    table = np.stack([oks(pred["keypoints"], keypoints[p], visibility[p] > 0, areas[p], sigmas)
                      for p in range(len(keypoints))], axis=1)  # [Q,P]
    for q in np.argsort(-np.asarray(pred["scores"]), kind="stable"):
        free = np.where(match < 0, table[q], -1.0)
        p = int(np.argmax(free))
        if free[p] > 0:
            match[p] = q
    return match


def matched_arrays(predictions: list[dict], truth: list[dict], sigmas: np.ndarray) -> dict[str, np.ndarray]:
    """Every true person with its matched prediction (FAR away when unmatched), stacked:
    pred/gt [N,K,2], visibility [N,K], box_size [N] = max(box w, h). K = len(sigmas)."""
    k = len(sigmas)
    rows: dict[str, list] = {"pred": [], "gt": [], "visibility": [], "box_size": []}
    for pred, item in zip(predictions, truth):
        keypoints = np.asarray(item["keypoints"], dtype=np.float64).reshape(-1, k, 2)
        visibility = np.asarray(item["visibility"]).reshape(-1, k)
        boxes = person_boxes(keypoints, visibility, item.get("boxes"))
        match = match_people(pred, keypoints, visibility, boxes[:, 2] * boxes[:, 3], sigmas)
        for p, q in enumerate(match):
            if not (visibility[p] > 0).any():
                continue
            rows["pred"].append(pred["keypoints"][q] if q >= 0 else keypoints[p] + FAR)
            rows["gt"].append(keypoints[p])
            rows["visibility"].append(visibility[p])
            rows["box_size"].append(max(boxes[p, 2], boxes[p, 3], 1.0))
    shapes = {"pred": (0, k, 2), "gt": (0, k, 2), "visibility": (0, k), "box_size": (0,)}
    return {key: np.stack(values) if values else np.zeros(shapes[key]) for key, values in rows.items()}


def count_accuracy(predictions: list[dict], truth: list[dict], min_score: float) -> float:
    """Share of images where the number of people scored above `min_score` equals the true count
    (people with at least one labelled keypoint)."""
    hits = [
        int((np.asarray(pred["scores"]) > min_score).sum()) == int((np.asarray(item["visibility"]) > 0).any(-1).sum())
        for pred, item in zip(predictions, truth)
    ]
    return float(np.mean(hits)) if hits else 0.0
