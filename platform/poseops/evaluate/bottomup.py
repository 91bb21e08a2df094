"""Scoring multi-person predictions: COCO keypoint AP/AR (pycocotools), per-joint PCK, people counts.

Both sides are per image, in source-image pixels:
    truth[i]       = {"keypoints": [P,K,2], "visibility": [P,K] (COCO 0/1/2), "boxes": [P,4] x,y,w,h (opt.)}
    predictions[i] = {"keypoints": [Q,K,2], "keypoint_scores": [Q,K], "scores": [Q]}

`score_people` is pure (no model, no files); `evaluate_bottomup` runs a model over a derived
`bottomup_image` split through the endpoint's inference path (same letterbox, same decoding, people
mapped back to source px) and writes the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from poseops import metrics
from poseops.skeletons import get_skeleton

PCK_ALPHAS = (0.05, 0.1, 0.2)  # note 000 section 5: PCK@alpha x max(box w, h); 0.1 the table's default
COUNT_SCORE = 0.3  # a returned person counts when its score is above this (issue 9's counting rule)
OVERLAY_SCORE = 0.1  # people drawn on overlays.png
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


def coco_ground_truth(truth: list[dict], skeleton: str = "coco17") -> dict:
    """Per-image truth -> a COCO keypoints dataset (area = box w*h; people with no label are ignored)."""
    skel = get_skeleton(skeleton)
    images, annotations = [], []
    for image_id, item in enumerate(truth):
        images.append({"id": image_id})
        keypoints = np.asarray(item["keypoints"], dtype=np.float64).reshape(-1, skel.num_keypoints, 2)
        visibility = np.asarray(item["visibility"]).reshape(-1, skel.num_keypoints)
        boxes = person_boxes(keypoints, visibility, item.get("boxes"))
        for points, vis, box in zip(keypoints, visibility, boxes):
            flat = np.concatenate([np.where(vis[:, None] > 0, points, 0.0), vis[:, None]], axis=1).ravel()
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "keypoints": [float(v) for v in flat], "num_keypoints": int((vis > 0).sum()),
                "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
            })
    categories = [{"id": 1, "name": "person", "keypoints": list(skel.keypoints),
                   "skeleton": [[a + 1, b + 1] for a, b in skel.edges]}]
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
    """Object keypoint similarity of predictions [Q,K,2] against one person [K,2] -> [Q] (COCO's formula)."""
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


def matched_arrays(predictions: list[dict], truth: list[dict], skeleton: str) -> dict[str, np.ndarray]:
    """Every true person with its matched prediction (FAR away when unmatched), stacked:
    pred/gt [N,K,2], visibility [N,K], box_size [N] = max(box w, h)."""
    skel = get_skeleton(skeleton)
    sigmas = np.asarray(skel.sigmas or metrics.COCO17_SIGMAS, dtype=np.float64)
    rows: dict[str, list] = {"pred": [], "gt": [], "visibility": [], "box_size": []}
    for pred, item in zip(predictions, truth):
        keypoints = np.asarray(item["keypoints"], dtype=np.float64).reshape(-1, skel.num_keypoints, 2)
        visibility = np.asarray(item["visibility"]).reshape(-1, skel.num_keypoints)
        boxes = person_boxes(keypoints, visibility, item.get("boxes"))
        match = match_people(pred, keypoints, visibility, boxes[:, 2] * boxes[:, 3], sigmas)
        for p, q in enumerate(match):
            if not (visibility[p] > 0).any():
                continue
            rows["pred"].append(pred["keypoints"][q] if q >= 0 else keypoints[p] + FAR)
            rows["gt"].append(keypoints[p])
            rows["visibility"].append(visibility[p])
            rows["box_size"].append(max(boxes[p, 2], boxes[p, 3], 1.0))
    k = skel.num_keypoints
    shapes = {"pred": (0, k, 2), "gt": (0, k, 2), "visibility": (0, k), "box_size": (0,)}
    return {key: np.stack(values) if values else np.zeros(shapes[key]) for key, values in rows.items()}


def count_accuracy(predictions: list[dict], truth: list[dict], min_score: float = COUNT_SCORE) -> float:
    """Share of images where the number of people scored above `min_score` equals the true count
    (people with at least one labelled keypoint)."""
    hits = [
        int((np.asarray(pred["scores"]) > min_score).sum()) == int((np.asarray(item["visibility"]) > 0).any(-1).sum())
        for pred, item in zip(predictions, truth)
    ]
    return float(np.mean(hits)) if hits else 0.0


def score_people(predictions: list[dict], truth: list[dict], skeleton: str = "coco17") -> dict[str, Any]:
    """Every number of the bottom-up report for one set of predictions.

    Returns {"ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "count_accuracy", "pck_<alpha>",
    "pck_table" (per keypoint and Table-5 joint groups, alpha 0.1), "protocol"}.
    """
    skel = get_skeleton(skeleton)
    coco = metrics.coco_keypoint_ap(coco_ground_truth(truth, skeleton), coco_detections(predictions),
                                    sigmas=list(skel.sigmas) if skel.sigmas and skeleton != "coco17" else None)
    matched = matched_arrays(predictions, truth, skeleton)
    report: dict[str, Any] = {key.lower(): coco[key] for key in ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50")}
    report["count_accuracy"] = count_accuracy(predictions, truth)
    scored = len(matched["gt"]) and (matched["visibility"] > 0).any()
    coco17 = skeleton == "coco17"
    for alpha in PCK_ALPHAS:
        report[f"pck_{alpha:g}"] = (metrics.pck(matched["pred"], matched["gt"], matched["visibility"], matched["box_size"],
                                                threshold=alpha, normaliser_name="bbox").value if scored else 0.0)
    report["pck_table"] = (metrics.pck_table(
        matched["pred"], matched["gt"], matched["visibility"], matched["box_size"], threshold=0.1,
        keypoint_names=skel.keypoints, groups=metrics.COCO17_TABLE5_GROUPS if coco17 else None,
    ) if scored else None)
    report["protocol"] = {
        "ap": coco["protocol"],
        "pck": "PCK@alpha x max(box w, h) of each true person, against the prediction matched to it by "
               "greedy OKS (best-scored first); an unmatched person's keypoints all count as misses",
        "count_accuracy": f"share of images whose count of people with score > {COUNT_SCORE} equals the true count",
        "area": "box w*h (the annotations have no segmentation)",
    }
    return report


def evaluate_bottomup(family, fam, model, dataset_url: str, out_dir: str | Path, split: str = "val",
                      card: dict | None = None, limit: int | None = None) -> dict[str, Any]:
    """Score `model` and the untrained baseline on a `bottomup_image` split (at most `limit`, else
    `fam.evaluate.max_images`, images spread over it); write metrics.json (AP/AR, count accuracy, PCK
    table), per_keypoint.json, pck curves and overlays to out_dir."""
    import torch

    from poseops.datasets.derive import dataset_checksum
    from poseops.datasets.loader import read_card
    from poseops.families import inference_settings
    from poseops.models import build_from_config
    from poseops.storage import write_json_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    card = card or read_card(dataset_url)
    settings = inference_settings(model)
    limit = limit or fam.evaluate.max_images
    data = load_evaluation_split(dataset_url, split, int(settings.get("input_size") or fam.model.input_size), limit)
    flip = bool(settings["flip_test"])
    predictions = predict_split(model, data, flip)
    torch.manual_seed(fam.train.seed)
    untrained = build_from_config(family.model, fam.model)
    # no flip test for the untrained baseline: it cannot lift a random model's AP off ~0, and such a
    # model proposes max_people people per image, so it costs twice the trained pass already
    baseline = score_people(predict_split(untrained, data, flip_test=False), data["truth"], family.skeleton)
    trained = score_people(predictions, data["truth"], family.skeleton)

    numbers = {k: v for k, v in trained.items() if k not in ("pck_table", "protocol")}
    report = {
        "family": family.name,
        "split": split,
        "data": card.get("source", {}).get("kind", "synthetic"),
        "data_mix": card.get("source", {}).get("mix", {}).get("train", {}),  # training samples per source
        "dataset_checksum": dataset_checksum(card),
        "num_images": len(predictions),
        "input_size": data["input_size"],
        "num_people": int(sum(int((np.asarray(t["visibility"]) > 0).any(-1).sum()) for t in data["truth"])),
        **{k: (0.0 if v is None else v) for k, v in numbers.items()},
        "baselines": {"untrained_ap": baseline["ap"] or 0.0, "untrained_count_accuracy": baseline["count_accuracy"]},
        "margin_over_best_baseline": (trained["ap"] or 0.0) - (baseline["ap"] or 0.0),
        "flip_test": flip,
        "per_joint_pck": {row["group"]: row["value"] for row in (trained["pck_table"] or {}).get("groups", [])},
        "per_keypoint_pck": {row["keypoint"]: row["value"] for row in (trained["pck_table"] or {}).get("keypoints", [])},
        "protocol": {**trained["protocol"], "pck_table": (trained["pck_table"] or {}).get("protocol"),
                     "untrained_flip_test": False},
    }
    write_json_atomic(out_dir / "metrics.json", report)
    write_json_atomic(out_dir / "per_keypoint.json",
                      [{"keypoint": k, "pck": v} for k, v in report["per_keypoint_pck"].items()])
    write_json_atomic(out_dir / "pck_curve.json", [
        {"threshold": alpha, "trained": trained[f"pck_{alpha:g}"], "untrained": baseline[f"pck_{alpha:g}"]}
        for alpha in PCK_ALPHAS
    ])
    write_plots(family, out_dir, trained, baseline, data, predictions)
    return report


def write_plots(family, out_dir: Path, trained: dict, baseline: dict, data: dict, predictions: list[dict]) -> None:
    """pck_curve.png, per_keypoint_pck.png and overlays.png (the first 8 inputs with every person scored
    above OVERLAY_SCORE)."""
    import cv2

    from poseops.viz.curves import plot_bars, plot_curves
    from poseops.viz.overlay import draw_keypoints

    alphas = list(PCK_ALPHAS)
    plot_curves(out_dir / "pck_curve.png", alphas,
                {"trained": [trained[f"pck_{a:g}"] for a in alphas], "untrained": [baseline[f"pck_{a:g}"] for a in alphas]},
                "alpha (fraction of the person box's longer side)", "PCK", f"{family.name}: PCK of matched people")
    rows = (trained["pck_table"] or {}).get("keypoints", [])
    plot_bars(out_dir / "per_keypoint_pck.png", [r["keypoint"] for r in rows], [r["value"] or 0.0 for r in rows],
              "PCK@0.1", f"{family.name}: per-keypoint PCK@0.1")
    from poseops.datasets.transforms import apply_affine, invert_affine

    skeleton = get_skeleton(family.skeleton)
    tiles = []
    for pixels, to_source, pred in list(zip(data["images_rgb"], data["affine_to_source"], predictions))[:8]:
        canvas = np.ascontiguousarray(pixels[..., ::-1])
        for points, score in zip(pred["keypoints"], pred["scores"]):
            if score > OVERLAY_SCORE:
                draw_keypoints(canvas, apply_affine(points, invert_affine(to_source)), skeleton)
        tiles.append(cv2.resize(canvas, (256, 256)))
    if tiles:
        while len(tiles) % 4:
            tiles.append(np.zeros_like(tiles[0]))
        grid = np.concatenate([np.concatenate(tiles[i : i + 4], axis=1) for i in range(0, len(tiles), 4)], axis=0)
        cv2.imwrite(str(out_dir / "overlays.png"), grid)


def predict_split(model, data: dict, flip_test: bool, batch_size: int = 8) -> list[dict]:
    """The endpoint's inference over a split's letterboxed inputs: per image, people in source px
    (best first, clipped to the image), as `BottomUpPredictor.predict_arrays` answers them."""
    from poseops.families import people_in_source, predict_people_inputs

    found = predict_people_inputs(model, data["images_rgb"], flip_test, batch_size)
    return [people_in_source(f, affine, (0.0, 0.0, w - 1.0, h - 1.0))
            for f, affine, (w, h) in zip(found, data["affine_to_source"], data["sizes"])]


def split_from_images(images_bgr: list[np.ndarray], input_size: int, truth: list[dict] | None = None) -> dict:
    """An evaluation split from source images (tests, ad-hoc sets): the same dict `load_evaluation_split` returns."""
    from poseops.datasets.transforms import invert_affine
    from poseops.families import bottomup_input

    inputs = [bottomup_input(image, input_size) for image in images_bgr]
    return {
        "images_rgb": np.stack([pixels for pixels, _ in inputs]),
        "affine_to_source": np.stack([invert_affine(affine) for _, affine in inputs]),
        "sizes": [(image.shape[1], image.shape[0]) for image in images_bgr],
        "truth": truth or [],
        "input_size": input_size,
    }


def load_evaluation_split(url: str, split: str, input_size: int, limit: int | None = None) -> dict:
    """A `bottomup_image` split for scoring (datasets.bottomup.load_bottomup_split: letterboxed, no
    augmentation): {"images_rgb" [N,S,S,3], "affine_to_source" [N,2,3], "sizes" [(w, h)], "truth"
    (clean source-px keypoints, visibility, boxes per image), "input_size"}."""
    from poseops.datasets.bottomup import load_bottomup_split

    samples = load_bottomup_split(url, split, input_size, limit=limit)
    return {
        "images_rgb": np.stack([s["image"] for s in samples]),
        "affine_to_source": np.stack([s["affine_to_source"] for s in samples]).astype(np.float64),
        "sizes": [(int(s["width"]), int(s["height"])) for s in samples],
        "truth": [{"keypoints": s["keypoints_clean_source"], "visibility": s["visibility"], "boxes": s["boxes_source"]}
                  for s in samples],
        "input_size": input_size,
    }
