"""The `topdown_crop` task: one person (or hand) per sample, cut from its box with a margin.

Hand crops are one case of it (skeleton `hand21`); the keypoint set comes from the family's skeleton.
Rows: poseops.datasets.shards (SCHEMA, plan_crops, crop_rows). Loss targets: keypoints in the input
crop's normalised coordinates (poseops.codecs.integral.to_norm). Scores: PCK@0.2, AUC, NME (normaliser:
the keypoint box's longer side) and EPE in source pixels, with the untrained model (same config and
seed) and the training set's mean pose as baselines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import cv2
import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from poseops import metrics
from poseops.codecs.integral import to_norm
from poseops.config import AugmentParams, FamilyData, FamilyParams
from poseops.datasets import shards
from poseops.datasets.derive import RowPlan, dataset_checksum
from poseops.datasets.loader import CropDataset, load_split_arrays
from poseops.datasets.transforms import apply_affine, box_affine, invert_affine, warp
from poseops.models import build_from_config
from poseops.skeletons import get_skeleton
from poseops.tasks import Artefact, Evaluation, Task, register_task
from poseops.viz.curves import plot_bars, plot_curves
from poseops.viz.overlay import sample_grid

PCK_THRESHOLDS = [round(0.01 * i, 2) for i in range(0, 31)]


class TopdownCropData(FamilyData):
    kind: Literal["topdown_crop"] = "topdown_crop"
    crop_margin: float = Field(
        1.25, ge=1.0, le=3.0, description="model input side / box's longer side"
    )
    crop_format: Literal["png", "jpeg"] = Field(
        "png", description="stored crops: lossless PNG or JPEG (q 95, faster)"
    )
    augment: AugmentParams = AugmentParams()

    def derive_options(self) -> dict[str, Any]:
        return {"crop_format": self.crop_format}


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


# ---------------------------------------------------------------- inference (evaluate, validation, endpoint)
def predict_crops(
    model: nn.Module, crops_rgb: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """crops_rgb [N,S,S,3] uint8 -> (keypoints [N,K,2] input px, scores [N,K]), in batches; unwraps DDP.

    The one inference path shared by evaluate, training's validation and the endpoint.
    """
    core = unwrap(model)
    coords, scores = [], []
    with torch.no_grad():
        for start in range(0, len(crops_rgb), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(crops_rgb[start : start + batch_size]))
            c, s = core.predict(core.preprocess(chunk))
            coords.append(c.numpy())
            scores.append(s.numpy())
    if not coords:
        return np.zeros((0, 0, 2)), np.zeros((0, 0))
    return np.concatenate(coords).astype(np.float64), np.concatenate(scores).astype(np.float64)


def predict_stage_crops(
    model: nn.Module, crops_rgb: np.ndarray, batch_size: int = 64
) -> np.ndarray | None:
    """crops_rgb [N,S,S,3] uint8 -> every stage's keypoints [T,N,K,2] input px, for a multi-stage model
    (one with `predict_stages`, e.g. handmle); None for a model without stages."""
    core = unwrap(model)
    if not hasattr(core, "predict_stages") or not len(crops_rgb):
        return None
    with torch.no_grad():
        stages = [
            core.predict_stages(
                core.preprocess(
                    torch.from_numpy(np.ascontiguousarray(crops_rgb[start : start + batch_size]))
                )
            ).numpy()
            for start in range(0, len(crops_rgb), batch_size)
        ]
    return np.concatenate(stages, axis=1).astype(np.float64)


def best_to_worst(
    pred: np.ndarray, val: dict[str, np.ndarray], threshold: float = 0.2
) -> np.ndarray:
    """Sample indices from best to worst: per-sample PCK@threshold, ties by mean normalised error."""
    gt = val.get("keypoints_clean", val["keypoints"])
    visible = val["visibility"] > 0
    error = np.linalg.norm(pred - gt, axis=-1) / np.maximum(val["norm_size"], 1e-9)[:, None]
    count = np.maximum(visible.sum(1), 1)
    pck = ((error <= threshold) & visible).sum(1) / count
    mean_error = np.where(visible, error, 0.0).sum(1) / count
    return np.lexsort((mean_error, -pck))


def stage_pck(
    stages: np.ndarray | None, val: dict[str, np.ndarray], threshold: float = 0.2
) -> dict[str, float]:
    """{"stage1": PCK@threshold, ...} of each stage's keypoints against the clean labels ({} without stages)."""
    if stages is None:
        return {}
    gt = val.get("keypoints_clean", val["keypoints"])
    return {
        f"stage{t + 1}": metrics.pck(
            pred, gt, val["visibility"] > 0, val["norm_size"], threshold=threshold
        ).value
        for t, pred in enumerate(stages)
    }


class TopDownPredictor:
    """Crop-based predictor shared by `evaluate` and the endpoint, so both see the same pixels.

    `predict(image_bgr[H,W,3] uint8, box_xywh | None) -> {"keypoints": [[x, y, score] x K]}` in the
    original image's pixels; no box means the whole image is the crop.
    """

    def __init__(self, model: nn.Module, name: str, version: str, crop_margin: float):
        self.model = model.eval()
        self.name, self.version = name, version
        self.input_size = int(model.config.input_size)
        self.crop_margin = float(crop_margin)

    def crop(
        self, image_bgr: np.ndarray, box_xywh: Sequence[float] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(input crop RGB uint8 [S,S,3], affine source->input [2,3])."""
        h, w = image_bgr.shape[:2]
        box = (
            tuple(float(v) for v in box_xywh)
            if box_xywh is not None
            else (0.0, 0.0, float(w), float(h))
        )
        affine = box_affine(box, self.crop_margin, self.input_size)
        crop = warp(image_bgr, affine, self.input_size)
        return np.ascontiguousarray(crop[..., ::-1]), affine

    def predict(self, image_bgr: np.ndarray, box_xywh: Sequence[float] | None = None) -> dict:
        crop, affine = self.crop(image_bgr, box_xywh)
        coords, scores = predict_crops(self.model, crop[None])
        points = apply_affine(coords[0], invert_affine(affine))
        return {
            "keypoints": [[float(x), float(y), float(s)] for (x, y), s in zip(points, scores[0])]
        }


# ---------------------------------------------------------------- scoring
def mean_pose(train_keypoints: np.ndarray, train_visible: np.ndarray) -> np.ndarray:
    """[N,K,2], [N,K] -> [K,2]: per-keypoint mean over the visible training labels (input px)."""
    weight = train_visible[..., None].astype(np.float64)
    return (train_keypoints * weight).sum(0) / np.maximum(weight.sum(0), 1.0)


def score_predictions(
    pred: np.ndarray, val: dict[str, np.ndarray], names: list[str]
) -> dict[str, Any]:
    """All numbers for one set of predictions [N,K,2] (input px) against the split's clean labels."""
    gt = val.get("keypoints_clean", val["keypoints"])
    visible = val["visibility"] > 0
    norm = val["norm_size"]
    per_kp = [
        metrics.pck(pred[:, [k]], gt[:, [k]], visible[:, [k]], norm).value
        if visible[:, k].any()
        else float("nan")
        for k in range(gt.shape[1])
    ]
    return {
        "pck": metrics.pck(pred, gt, visible, norm, threshold=0.2),
        "auc": metrics.auc(pred, gt, visible, norm, max_threshold=0.2),
        "nme": metrics.nme(pred, gt, visible, norm),
        "curve": metrics.pck_curve(pred, gt, visible, norm, PCK_THRESHOLDS),
        "per_keypoint": dict(zip(names, per_kp)),
    }


def to_source(points: np.ndarray, val: dict[str, np.ndarray]) -> np.ndarray:
    """[N,K,2] input px -> source-image px through each sample's affine_to_source [N,2,3]."""
    affine = val["affine_to_source"]
    return np.einsum("nij,nkj->nki", affine[:, :, :2], points) + affine[:, None, :, 2]


@register_task
class TopdownCrop(Task):
    name = "topdown_crop"
    Options = TopdownCropData
    rows = RowPlan("topdown_crop", shards.SCHEMA, shards.plan_crops, shards.crop_rows)
    artefacts = (
        Artefact("metrics.json", "metrics"),
        Artefact("pck_curve.json", "plot", {"x": "threshold"}),
        Artefact(
            "per_keypoint.json", "plot", {"x": "keypoint", "y": "pck", "template": "bar_horizontal"}
        ),
        Artefact("pck_curve.png"),
        Artefact("per_keypoint_pck.png"),
        Artefact("overlays.png"),
        Artefact("best_worst.png"),
    )
    headline = (("pck", "PCK@0.2"), ("auc", "AUC"), ("epe_px", "EPE px"))

    # ------------------------------------------------------------ training
    def train_loader(self, cfg: dict, model: nn.Module, rank: int, world: int):
        dataset = CropDataset(
            cfg["dataset_url"],
            "train",
            cfg["input_size"],
            cfg["data"]["crop_margin"],
            augment=AugmentParams(**cfg["data"]["augment"]),
            seed=cfg["seed"],
            rank=rank,
            world_size=world,
        )
        return dataset, DataLoader(
            dataset,
            batch_size=max(1, cfg["batch_size"] // world),
            num_workers=cfg["loader_workers"],
        )

    def load_validation(self, cfg: dict):
        return load_split_arrays(
            cfg["dataset_url"], "val", cfg["input_size"], cfg["data"]["crop_margin"]
        )

    def train_step(
        self, model: nn.Module, batch: dict[str, torch.Tensor], optimizer
    ) -> dict[str, float]:
        """One optimisation step on a loader batch: image uint8 [B,3,S,S], keypoints [B,K,2] input px,
        visibility [B,K]; returns the loss and its named terms as floats."""
        core = unwrap(model)
        images = core.preprocess(batch["image"])
        targets = {
            "target_norm": to_norm(batch["keypoints"], core.config.input_size),
            "weight": (batch["visibility"] > 0).float(),
        }
        model.train()
        terms = core.loss(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        return {name: float(value.detach()) for name, value in terms.items()}

    def validate(
        self, model: nn.Module, val: dict[str, np.ndarray], threshold: float = 0.2
    ) -> dict[str, float]:
        """PCK@threshold on the validation split held as arrays (datasets.loader.load_split_arrays); a
        multi-stage model also gets each stage's (`val_pck_stage<t>`), so one run shows the stage curve."""
        pred, _ = predict_crops(model, val["image"])
        gt = val.get("keypoints_clean", val["keypoints"])
        result = metrics.pck(pred, gt, val["visibility"] > 0, val["norm_size"], threshold=threshold)
        per_stage = stage_pck(predict_stage_crops(model, val["image"]), val, threshold)
        return {"val_pck": result.value, **{f"val_pck_{k}": v for k, v in per_stage.items()}}

    def inference(self, fam: FamilyParams, model_defaults: dict[str, Any]) -> dict[str, Any]:
        return {"crop_margin": fam.data.crop_margin}

    # ------------------------------------------------------------ evaluation
    def evaluate(
        self,
        family,
        fam: FamilyParams,
        model: nn.Module,
        dataset_url: str,
        split: str,
        card: dict,
        settings: dict[str, Any],
    ) -> Evaluation:
        size, margin = int(fam.model.input_size), fam.data.crop_margin
        val = load_split_arrays(dataset_url, split, size, margin)
        train = (
            load_split_arrays(dataset_url, "train", size, margin)
            if "train" in card.get("splits", {})
            else None
        )
        skeleton = get_skeleton(family.skeleton)
        names = list(skeleton.keypoints)

        pred, _ = predict_crops(model, val["image"])
        torch.manual_seed(fam.train.seed)
        untrained = build_from_config(family.model, fam.model)
        pred_untrained, _ = predict_crops(untrained, val["image"])
        results = {
            "trained": score_predictions(pred, val, names),
            "untrained": score_predictions(pred_untrained, val, names),
        }
        if train is not None and len(train["keypoints"]):
            pose = mean_pose(train["keypoints"], train["visibility"] > 0)
            results["mean_pose"] = score_predictions(
                np.broadcast_to(pose, pred.shape).copy(), val, names
            )

        trained = results["trained"]
        baselines = {name: r["pck"].value for name, r in results.items() if name != "trained"}
        clean = val.get("keypoints_clean", val["keypoints"])
        report = {
            "family": family.name,
            "split": split,
            "data": card.get("source", {}).get("kind", "synthetic"),
            "data_mix": card.get("source", {})
            .get("mix", {})
            .get("train", {}),  # training samples per source
            "dataset_checksum": dataset_checksum(card),
            "num_samples": int(len(pred)),
            "pck": trained["pck"].value,
            "auc": trained["auc"].value,
            "nme": trained["nme"].value,
            "epe_px": float(
                metrics.epe(
                    to_source(pred, val), to_source(clean, val), val["visibility"] > 0
                ).value
            ),
            "baselines": {f"{name}_pck": value for name, value in baselines.items()},
            "margin_over_best_baseline": trained["pck"].value
            - max(baselines.values(), default=0.0),
            "per_keypoint_pck": trained["per_keypoint"],
            # every stage's PCK@0.2 of a multi-stage model (empty otherwise): the stage curve of one model
            "per_stage_pck": stage_pck(predict_stage_crops(model, val["image"]), val),
            "protocol": {
                "pck": trained["pck"].protocol,
                "auc": trained["auc"].protocol,
                "nme": trained["nme"].protocol,
                "epe_px": "mean Euclidean distance in source-image pixels over visible keypoints",
                "labels": "clean labels (keypoints_clean) where the dataset has them; scored keypoints: "
                "visible in the clean labels and inside the input crop",
                "per_stage_pck": "PCK@0.2 of each stage's output, same keypoints and normaliser",
            },
        }
        curves = {n: r["curve"]["values"] for n, r in results.items()}
        count = min(8, len(pred))

        def overlays(path):
            grid = sample_grid(
                [img[..., ::-1] for img in val["image"][:count]], pred[:count], skeleton, cols=4
            )
            cv2.imwrite(str(path), grid)

        order = best_to_worst(pred, val)
        shown = min(4, len(order) // 2)

        def best_worst(path):
            picked = [*order[:shown], *order[len(order) - shown :]] if shown else []
            grid = sample_grid(
                [val["image"][i][..., ::-1] for i in picked],
                pred[picked],
                skeleton,
                cols=max(shown, 1),
            )
            cv2.imwrite(str(path), grid)

        files = {
            "best_worst.png": best_worst,
            "pck_curve.json": [
                {"threshold": t, **{name: values[i] for name, values in curves.items()}}
                for i, t in enumerate(PCK_THRESHOLDS)
            ],
            "per_keypoint.json": [
                {"keypoint": k, "pck": v} for k, v in trained["per_keypoint"].items()
            ],
            "pck_curve.png": lambda path: plot_curves(
                path,
                PCK_THRESHOLDS,
                curves,
                "threshold (fraction of the keypoint box's longer side)",
                "PCK",
                f"{family.name}: PCK on {split}",
            ),
            "per_keypoint_pck.png": lambda path: plot_bars(
                path,
                names,
                list(trained["per_keypoint"].values()),
                "PCK@0.2",
                f"{family.name}: per-keypoint PCK@0.2",
            ),
            "overlays.png": overlays,
        }
        return Evaluation(report, files)

    # ------------------------------------------------------------ serving
    def predictor(self, model: nn.Module, name: str, version: str, settings: dict[str, Any]):
        return TopDownPredictor(model, name, version, settings["crop_margin"])
