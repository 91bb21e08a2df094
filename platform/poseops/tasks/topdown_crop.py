"""The `topdown_crop` task: one person (or hand) per sample, cut from its box with a margin.

Hand crops (skeleton `hand21`) and person crops (`coco17`, from the synthetic bodies' people) are cases
of it; the keypoint set comes from the family's skeleton. Rows: poseops.datasets.shards (SCHEMA,
plan_crops, crop_rows). Loss targets: keypoints in the input crop's normalised coordinates
(poseops.codecs.integral.to_norm). Scores: PCK at the data block's threshold and normaliser (the
keypoint box's or the person box's longer side), AUC, NME and EPE in source pixels, and, for skeletons
with OKS sigmas, COCO keypoint AP with ground-truth boxes; the untrained model (same config and seed)
and the training set's mean pose are the baselines.
"""

from __future__ import annotations

import inspect
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
from poseops.datasets.transforms import box_affine, invert_affine, warp
from poseops.errors import ConfigError
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
    pck_threshold: float = Field(0.2, gt=0, le=1, description="PCK's threshold, the primary metric")
    pck_normaliser: Literal["keypoint_box", "bbox"] = Field(
        "keypoint_box",
        description="PCK's normaliser: the longer side of the labelled keypoints' box or of the person box",
    )

    def derive_options(self) -> dict[str, Any]:
        return {"crop_format": self.crop_format}


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


# ---------------------------------------------------------------- inference (evaluate, validation, endpoint)
def flip_arguments(core: nn.Module, flip_test: bool | None) -> dict[str, bool]:
    """The keyword arguments that pass `flip_test` to `core.predict`: none for None (the model's own
    setting) or for False to a model without a flip test (handmle); ConfigError for True to one."""
    if flip_test is None:
        return {}
    if "flip_test" in inspect.signature(core.predict).parameters:
        return {"flip_test": bool(flip_test)}
    if flip_test:
        raise ConfigError(f"{type(core).__name__}.predict has no flip test; set flip_test false")
    return {}


def predict_crops(
    model: nn.Module, crops_rgb: np.ndarray, batch_size: int = 64, flip_test: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """crops_rgb [N,S,S,3] uint8 -> (keypoints [N,K,2] input px, scores [N,K]), in batches; unwraps DDP.

    The one inference path shared by evaluate, training's validation, the endpoint and predict@<family>.
    flip_test: None = the model's own setting (its config), else passed to its `predict`.
    """
    core = unwrap(model)
    flip = flip_arguments(core, flip_test)
    coords, scores = [], []
    with torch.no_grad():
        for start in range(0, len(crops_rgb), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(crops_rgb[start : start + batch_size]))
            c, s = core.predict(core.preprocess(chunk), **flip)
            coords.append(c.numpy())
            scores.append(s.numpy())
    if not coords:
        return np.zeros((0, 0, 2)), np.zeros((0, 0))
    return np.concatenate(coords).astype(np.float64), np.concatenate(scores).astype(np.float64)


def crop_people(
    images_bgr: Sequence[np.ndarray],
    boxes_xywh: Sequence[Sequence[float] | None],
    crop_margin: float,
    input_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Each image's person box (None: the whole image) cut as evaluation's crops are cut (`box_affine`,
    `warp`) -> (crops RGB uint8 [N,S,S,3], affines source -> crop [N,2,3])."""
    affines, crops = [], []
    for image, box in zip(images_bgr, boxes_xywh):
        if box is None:
            box = (0.0, 0.0, float(image.shape[1]), float(image.shape[0]))
        affine = box_affine(tuple(float(v) for v in box), crop_margin, input_size)
        affines.append(affine)
        crops.append(warp(image, affine, input_size)[..., ::-1])
    if not crops:
        return np.zeros((0, input_size, input_size, 3), np.uint8), np.zeros((0, 2, 3))
    return np.ascontiguousarray(np.stack(crops)), np.stack(affines)


def map_points(points: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """points [N,K,2] through each sample's affine [N,2,3] -> [N,K,2]."""
    return np.einsum("nij,nkj->nki", affines[:, :, :2], points) + affines[:, None, :, 2]


def predict_people(
    model: nn.Module,
    images_bgr: Sequence[np.ndarray],
    boxes_xywh: Sequence[Sequence[float] | None],
    crop_margin: float,
    flip_test: bool | None = None,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop, predict, map back: one person per (image, box) -> (keypoints [N,K,2] in the source images'
    pixels, scores [N,K]). The top-down path of the endpoint (`TopDownPredictor`) and of predict@<family>
    (`poseops.predict`); flip_test as `predict_crops`."""
    size = int(unwrap(model).config.input_size)
    crops, affines = crop_people(images_bgr, boxes_xywh, crop_margin, size)
    coords, scores = predict_crops(model, crops, batch_size, flip_test)
    if not len(crops):
        return coords, scores
    inverse = np.stack([invert_affine(affine) for affine in affines])
    return map_points(coords, inverse), scores


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
    original image's pixels; no box means the whole image is the crop. flip_test: None = the model's
    own setting, else passed to its `predict` (`predict_crops`).
    """

    def __init__(
        self,
        model: nn.Module,
        name: str,
        version: str,
        crop_margin: float,
        flip_test: bool | None = None,
    ):
        self.model = model.eval()
        self.name, self.version = name, version
        self.input_size = int(model.config.input_size)
        self.crop_margin = float(crop_margin)
        self.flip_test = None if flip_test is None else bool(flip_test)

    def crop(
        self, image_bgr: np.ndarray, box_xywh: Sequence[float] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(input crop RGB uint8 [S,S,3], affine source->input [2,3])."""
        crops, affines = crop_people([image_bgr], [box_xywh], self.crop_margin, self.input_size)
        return crops[0], affines[0]

    def predict(self, image_bgr: np.ndarray, box_xywh: Sequence[float] | None = None) -> dict:
        return self.predict_batch([image_bgr], [box_xywh])[0]

    def predict_batch(
        self, images_bgr: Sequence[np.ndarray], boxes_xywh: Sequence[Sequence[float] | None]
    ) -> list[dict]:
        """`predict` of several images in one forward pass (Serve's request batches)."""
        points, scores = predict_people(
            self.model, images_bgr, boxes_xywh, self.crop_margin, self.flip_test
        )
        return [
            {"keypoints": [[float(x), float(y), float(s)] for (x, y), s in zip(point, score)]}
            for point, score in zip(points, scores)
        ]


# ---------------------------------------------------------------- scoring
def mean_pose(train_keypoints: np.ndarray, train_visible: np.ndarray) -> np.ndarray:
    """[N,K,2], [N,K] -> [K,2]: per-keypoint mean over the visible training labels (input px)."""
    weight = train_visible[..., None].astype(np.float64)
    return (train_keypoints * weight).sum(0) / np.maximum(weight.sum(0), 1.0)


def pck_normaliser(val: dict[str, np.ndarray], name: str) -> np.ndarray:
    """[N] px: the keypoint box's longer side (`keypoint_box`) or the person box's (`bbox`)."""
    return val["box_size"] if name == "bbox" else val["norm_size"]


def score_predictions(
    pred: np.ndarray,
    val: dict[str, np.ndarray],
    names: list[str],
    threshold: float = 0.2,
    normaliser: str = "keypoint_box",
) -> dict[str, Any]:
    """All numbers for one set of predictions [N,K,2] (input px) against the split's clean labels."""
    gt = val.get("keypoints_clean", val["keypoints"])
    visible = val["visibility"] > 0
    norm = pck_normaliser(val, normaliser)
    per_kp = [
        metrics.pck(pred[:, [k]], gt[:, [k]], visible[:, [k]], norm, threshold, normaliser).value
        if visible[:, k].any()
        else float("nan")
        for k in range(gt.shape[1])
    ]
    return {
        "pck": metrics.pck(pred, gt, visible, norm, threshold, normaliser),
        "auc": metrics.auc(pred, gt, visible, norm, max_threshold=0.2),
        "nme": metrics.nme(pred, gt, visible, norm, normaliser),
        "curve": metrics.pck_curve(pred, gt, visible, norm, PCK_THRESHOLDS, normaliser),
        "per_keypoint": dict(zip(names, per_kp)),
    }


def coco_ap_ground_truth_boxes(
    pred: np.ndarray, scores: np.ndarray, val: dict[str, np.ndarray], skeleton
) -> dict[str, Any]:
    """COCO keypoint AP/AR (pycocotools) of crop predictions, top-down with ground-truth boxes as mmpose
    evaluates it: one prediction per true person box, in source pixels, scored by the mean keypoint
    score. Each person is its own COCO image (no detection can match another person); area = box w*h.
    """
    clean = val.get("keypoints_clean", val["keypoints"])
    visibility = np.where(val["visibility"] > 0, 2, 0)
    truth = [
        {"keypoints": gt[None], "visibility": vis[None], "boxes": box[None]}
        for gt, vis, box in zip(to_source(clean, val), visibility, val["box_source"])
    ]
    predictions = [
        {"keypoints": p[None], "keypoint_scores": s[None], "scores": [float(s.mean())]}
        for p, s in zip(to_source(pred, val), scores)
    ]
    return metrics.coco_keypoint_ap(
        metrics.coco.coco_ground_truth(truth, list(skeleton.keypoints), list(skeleton.edges)),
        metrics.coco.coco_detections(predictions),
        sigmas=None if skeleton.name == "coco17" else list(skeleton.sigmas),
    )


def to_source(points: np.ndarray, val: dict[str, np.ndarray]) -> np.ndarray:
    """[N,K,2] input px -> source-image px through each sample's affine_to_source [N,2,3]."""
    return map_points(points, val["affine_to_source"])


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
    headline = (("pck", "PCK"), ("auc", "AUC"), ("epe_px", "EPE px"), ("ap", "AP"))

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
        val = load_split_arrays(
            cfg["dataset_url"], "val", cfg["input_size"], cfg["data"]["crop_margin"]
        )
        data = TopdownCropData(**cfg["data"])
        val["pck_normaliser"] = pck_normaliser(val, data.pck_normaliser)
        val["pck_threshold"] = np.float64(data.pck_threshold)
        return val

    def train_losses(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Loss terms on a loader batch: image uint8 [B,3,S,S], keypoints [B,K,2] input px, visibility [B,K]."""
        core = unwrap(model)
        images = core.preprocess(batch["image"])
        targets = {
            "target_norm": to_norm(batch["keypoints"], core.config.input_size),
            "weight": (batch["visibility"] > 0).float(),
        }
        model.train()
        return core.loss(model(images), targets)

    def example_batch(
        self, model: nn.Module, batch_size: int, seed: int = 0
    ) -> dict[str, torch.Tensor]:
        """Random crops and keypoints; sample i is drawn from seed + i (so consecutive seeds' batches
        concatenate to a bigger one)."""
        size, joints = model.config.input_size, model.config.num_keypoints
        samples = []
        for i in range(batch_size):
            gen = torch.Generator().manual_seed(seed + i)
            samples.append(
                (
                    torch.randint(0, 256, (3, size, size), generator=gen, dtype=torch.uint8),
                    size * (0.2 + 0.6 * torch.rand(joints, 2, generator=gen)),
                )
            )
        return {
            "image": torch.stack([image for image, _ in samples]),
            "keypoints": torch.stack([points for _, points in samples]),
            "visibility": torch.full((batch_size, joints), 2.0),
        }

    def validate(self, model: nn.Module, val: dict[str, np.ndarray]) -> dict[str, float]:
        """PCK on the validation split held as arrays (`load_validation`: its threshold and normaliser);
        a multi-stage model also gets each stage's (`val_pck_stage<t>`), so one run shows the stage curve."""
        pred, _ = predict_crops(model, val["image"])
        gt = val.get("keypoints_clean", val["keypoints"])
        norm = val.get("pck_normaliser", val["norm_size"])
        threshold = float(val.get("pck_threshold", 0.2))
        result = metrics.pck(pred, gt, val["visibility"] > 0, norm, threshold=threshold)
        per_stage = stage_pck(predict_stage_crops(model, val["image"]), val, threshold)
        return {"val_pck": result.value, **{f"val_pck_{k}": v for k, v in per_stage.items()}}

    def inference(self, fam: FamilyParams, model_defaults: dict[str, Any]) -> dict[str, Any]:
        """The crop margin and the flip test (the model block's, else the model's default) the endpoint,
        evaluate and predict@<family> all use."""
        flip_test = getattr(fam.model, "flip_test", model_defaults.get("flip_test"))
        settings: dict[str, Any] = {"crop_margin": fam.data.crop_margin}
        if flip_test is not None:
            settings["flip_test"] = bool(flip_test)
        return settings

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

        flip = settings.get("flip_test")
        pred, pred_scores = predict_crops(model, val["image"], flip_test=flip)
        torch.manual_seed(fam.train.seed)
        untrained = build_from_config(family.model, fam.model)
        pred_untrained, untrained_scores = predict_crops(untrained, val["image"], flip_test=flip)
        scoring = {"threshold": fam.data.pck_threshold, "normaliser": fam.data.pck_normaliser}
        results = {
            "trained": score_predictions(pred, val, names, **scoring),
            "untrained": score_predictions(pred_untrained, val, names, **scoring),
        }
        if train is not None and len(train["keypoints"]):
            pose = mean_pose(train["keypoints"], train["visibility"] > 0)
            results["mean_pose"] = score_predictions(
                np.broadcast_to(pose, pred.shape).copy(), val, names, **scoring
            )

        coco: dict[str, Any] = {}
        coco_protocol: dict[str, Any] = {}
        if (
            skeleton.sigmas
        ):  # OKS is defined: COCO AP with ground-truth boxes, trained and untrained
            ap = coco_ap_ground_truth_boxes(pred, pred_scores, val, skeleton)
            ap_untrained = coco_ap_ground_truth_boxes(
                pred_untrained, untrained_scores, val, skeleton
            )
            coco = {key.lower(): ap[key] for key in ("AP", "AP50", "AP75", "AR")}
            coco["baselines_ap"] = {"untrained_ap": ap_untrained["AP"]}
            coco_protocol = {
                "ap": {
                    **ap["protocol"],
                    "boxes": "top-down with ground-truth boxes, as mmpose: one prediction per true "
                    "person box, score = mean keypoint score, area = box w*h",
                }
            }
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
            **coco,
            # every stage's PCK@0.2 of a multi-stage model (empty otherwise): the stage curve of one model
            "per_stage_pck": stage_pck(predict_stage_crops(model, val["image"]), val),
            "protocol": {
                "pck": trained["pck"].protocol,
                "auc": trained["auc"].protocol,
                "nme": trained["nme"].protocol,
                "epe_px": "mean Euclidean distance in source-image pixels over visible keypoints",
                "labels": "clean labels (keypoints_clean) where the dataset has them; scored keypoints: "
                "visible in the clean labels and inside the input crop",
                "per_stage_pck": "PCK@0.2 of each stage's output, keypoint-box normaliser",
                **coco_protocol,
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
                f"threshold (fraction of the {fam.data.pck_normaliser} longer side)",
                "PCK",
                f"{family.name}: PCK on {split}",
            ),
            "per_keypoint_pck.png": lambda path: plot_bars(
                path,
                names,
                list(trained["per_keypoint"].values()),
                f"PCK@{fam.data.pck_threshold:g}",
                f"{family.name}: per-keypoint PCK@{fam.data.pck_threshold:g} ({fam.data.pck_normaliser})",
            ),
            "overlays.png": overlays,
        }
        return Evaluation(report, files)

    # ------------------------------------------------------------ serving
    def predictor(self, model: nn.Module, name: str, version: str, settings: dict[str, Any]):
        return TopDownPredictor(
            model, name, version, settings["crop_margin"], settings.get("flip_test")
        )

    def network_inputs(
        self,
        model: nn.Module,
        dataset_url: str,
        split: str,
        settings: dict[str, Any],
        limit: int | None = None,
    ) -> np.ndarray:
        size = int(model.config.input_size)
        return load_split_arrays(dataset_url, split, size, settings["crop_margin"], limit)["image"]
