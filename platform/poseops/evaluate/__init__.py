"""The evaluate workload: run a checkpoint over a split, write metrics.json (with protocols) and plots.

Besides the trained model it scores baselines on the same split, so learning is measured
honestly: the untrained model (same config and seed) and, for top-down families, the training set's
mean pose. Bottom-up families: `evaluate.bottomup`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from poseops import metrics
from poseops.config import FamilyParams
from poseops.families import Family
from poseops.skeletons import get_skeleton
from poseops.datasets.derive import dataset_checksum
from poseops.storage import write_json_atomic

PCK_THRESHOLDS = [round(0.01 * i, 2) for i in range(0, 31)]


def mean_pose(train_keypoints: np.ndarray, train_visible: np.ndarray) -> np.ndarray:
    """[N,K,2], [N,K] -> [K,2]: per-keypoint mean over the visible training labels (input px)."""
    weight = train_visible[..., None].astype(np.float64)
    return (train_keypoints * weight).sum(0) / np.maximum(weight.sum(0), 1.0)


def score_predictions(pred: np.ndarray, val: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
    """All numbers for one set of predictions [N,K,2] (input px) against the split's clean labels."""
    gt = val.get("keypoints_clean", val["keypoints"])
    visible = val["visibility"] > 0
    norm = val["norm_size"]
    per_kp = [
        metrics.pck(pred[:, [k]], gt[:, [k]], visible[:, [k]], norm).value if visible[:, k].any() else float("nan")
        for k in range(gt.shape[1])
    ]
    return {
        "pck": metrics.pck(pred, gt, visible, norm, threshold=0.2),
        "auc": metrics.auc(pred, gt, visible, norm, max_threshold=0.2),
        "nme": metrics.nme(pred, gt, visible, norm),
        "curve": metrics.pck_curve(pred, gt, visible, norm, PCK_THRESHOLDS),
        "per_keypoint": dict(zip(names, per_kp)),
    }


def evaluate_model(
    family: Family,
    fam: FamilyParams,
    model: torch.nn.Module,
    dataset_url: str,
    out_dir: str | Path,
    split: str = "val",
    card: dict | None = None,
) -> dict[str, Any]:
    """Score `model` and its baselines on `split`; write metrics.json, curves and overlays to out_dir.

    Bottom-up families (whole images, many people) are scored by `evaluate.bottomup.evaluate_bottomup`
    (COCO AP/AR, count accuracy, per-joint PCK); top-down ones here (PCK, AUC, NME, EPE).
    """
    if family.bottom_up:
        from poseops.evaluate.bottomup import evaluate_bottomup

        return evaluate_bottomup(family, fam, model, dataset_url, out_dir, split, card)
    from poseops.datasets.loader import load_split_arrays, read_card
    from poseops.models import build_from_config
    from poseops.train.steps import predict_arrays
    from poseops.viz.curves import plot_bars, plot_curves
    from poseops.viz.overlay import sample_grid

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    card = card or read_card(dataset_url)
    size, margin = int(fam.model.input_size), fam.data.crop_margin
    val = load_split_arrays(dataset_url, split, size, margin)
    train = load_split_arrays(dataset_url, "train", size, margin) if "train" in card.get("splits", {}) else None
    names = list(get_skeleton(family.skeleton).keypoints)

    pred, _ = predict_arrays(model, val["image"])
    torch.manual_seed(fam.train.seed)
    untrained = build_from_config(family.model, fam.model)
    pred_untrained, _ = predict_arrays(untrained, val["image"])
    results = {"trained": score_predictions(pred, val, names), "untrained": score_predictions(pred_untrained, val, names)}
    if train is not None and len(train["keypoints"]):
        pose = mean_pose(train["keypoints"], train["visibility"] > 0)
        results["mean_pose"] = score_predictions(np.broadcast_to(pose, pred.shape).copy(), val, names)

    trained = results["trained"]
    baselines = {name: r["pck"].value for name, r in results.items() if name != "trained"}
    report = {
        "family": family.name,
        "split": split,
        "data": card.get("source", {}).get("kind", "synthetic"),
        "data_mix": card.get("source", {}).get("mix", {}).get("train", {}),  # training samples per source
        "dataset_checksum": dataset_checksum(card),
        "num_samples": int(len(pred)),
        "pck": trained["pck"].value,
        "auc": trained["auc"].value,
        "nme": trained["nme"].value,
        "epe_px": float(
            metrics.epe(
                _to_source(pred, val), _to_source(val.get("keypoints_clean", val["keypoints"]), val), val["visibility"] > 0
            ).value
        ),
        "baselines": {f"{name}_pck": value for name, value in baselines.items()},
        "margin_over_best_baseline": trained["pck"].value - max(baselines.values(), default=0.0),
        "per_keypoint_pck": trained["per_keypoint"],
        "protocol": {
            "pck": trained["pck"].protocol,
            "auc": trained["auc"].protocol,
            "nme": trained["nme"].protocol,
            "epe_px": "mean Euclidean distance in source-image pixels over visible keypoints",
            "labels": "clean labels (keypoints_clean) where the dataset has them",
        },
    }
    write_json_atomic(out_dir / "metrics.json", report)
    curve_rows = [
        {"threshold": t, **{name: r["curve"]["values"][i] for name, r in results.items()}}
        for i, t in enumerate(PCK_THRESHOLDS)
    ]
    write_json_atomic(out_dir / "pck_curve.json", curve_rows)
    write_json_atomic(out_dir / "per_keypoint.json", [{"keypoint": k, "pck": v} for k, v in trained["per_keypoint"].items()])
    plot_curves(
        out_dir / "pck_curve.png", PCK_THRESHOLDS, {n: r["curve"]["values"] for n, r in results.items()},
        "threshold (fraction of the keypoint box's longer side)", "PCK", f"{family.name}: PCK on {split}",
    )
    plot_bars(out_dir / "per_keypoint_pck.png", names, list(trained["per_keypoint"].values()), "PCK@0.2",
              f"{family.name}: per-keypoint PCK@0.2")
    import cv2

    skeleton = get_skeleton(family.skeleton)
    count = min(8, len(pred))
    grid = sample_grid([img[..., ::-1] for img in val["image"][:count]], pred[:count], skeleton, cols=4)
    cv2.imwrite(str(out_dir / "overlays.png"), grid)
    return report


def _to_source(points: np.ndarray, val: dict[str, np.ndarray]) -> np.ndarray:
    """[N,K,2] input px -> source-image px through each sample's affine_to_source [N,2,3]."""
    affine = val["affine_to_source"]
    return np.einsum("nij,nkj->nki", affine[:, :, :2], points) + affine[:, None, :, 2]


def log_evaluation(run_id: str, report: dict[str, Any], out_dir: str | Path) -> None:
    """Attach evaluation numbers and images to the training run in MLflow."""
    import mlflow

    from poseops.tracking.store import configure

    configure()
    numbers = {f"eval_{k}": float(v) for k, v in report.items() if isinstance(v, (int, float))}
    numbers.update({f"eval_{k}": float(v) for k, v in report["baselines"].items()})
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(numbers)
        for name in ("metrics.json", "pck_curve.png", "per_keypoint_pck.png", "overlays.png"):
            path = Path(out_dir) / name
            if path.exists():
                mlflow.log_artifact(str(path), "evaluation")
