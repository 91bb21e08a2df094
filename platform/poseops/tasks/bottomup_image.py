"""The `bottomup_image` task: whole images, every person in them (multi-person, no boxes at inference).

Rows: poseops.datasets.bottomup_rows. Inputs: the image letterboxed into the model's S x S input
(poseops.datasets.bottomup.letterbox_affine). Targets: poseops.codecs.bottomup.encode_targets, with the
model's own sizes (`model.target_kwargs(window)`). Scores: COCO keypoint AP/AR (pycocotools through
poseops.metrics.coco), PCK@alpha x max(box w, h) of each true person against its greedy-OKS match, and
count accuracy, with the untrained model (same config and seed) as the baseline.

Both sides of scoring are per image, in source-image pixels:
    truth[i]       = {"keypoints": [P,K,2], "visibility": [P,K] (COCO 0/1/2), "boxes": [P,4] x,y,w,h (opt.)}
    predictions[i] = {"keypoints": [Q,K,2], "keypoint_scores": [Q,K], "scores": [Q]}
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal

import cv2
import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from poseops import metrics
from poseops.codecs.bottomup import encode_targets
from poseops.config import AugmentParams, FamilyData, FamilyParams
from poseops.datasets import bottomup_rows
from poseops.datasets.bottomup import (
    BottomUpDataset,
    letterbox_affine,
    load_bottomup_split,
    person_window,
)
from poseops.datasets.derive import RowPlan, dataset_checksum
from poseops.datasets.transforms import apply_affine, box_affine, compose, invert_affine, warp
from poseops.metrics.coco import coco_detections, coco_ground_truth, matched_arrays
from poseops.models import build_from_config
from poseops.skeletons import get_skeleton
from poseops.tasks import Artefact, Evaluation, Task, register_task
from poseops.viz.curves import plot_bars, plot_curves
from poseops.viz.overlay import draw_keypoints

# PCK@alpha x max(box w, h); 0.1 is the alpha of the per-joint table (Wang et al. 2024, "Video-based
# multi-person human pose estimation ... (VMHPE)", Table 5).
PCK_ALPHAS = (0.05, 0.1, 0.2)
# A returned person counts when its score is above this unless the validation images pick another
# (`count_score_from_validation`). The score is the centre peak x the mean keypoint peak (CID's pose
# score), a product of two sigmoid peaks: a model that finds every person may still score them all
# below 0.3 (tests/unit/test_vmhpe_wiring.py).
COUNT_SCORE = 0.3
# The thresholds validation chooses from (pose scores of a smoke model's true people lie at ~0.05-0.3).
COUNT_SCORES = (0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
OVERLAY_SCORE = 0.1  # people drawn on overlays.png
VAL_IMAGES = 32  # validation images scored per epoch (the evaluate stage scores the whole split)


class BottomupImageData(FamilyData):
    kind: Literal["bottomup_image"] = "bottomup_image"
    train_window: int | None = Field(
        None,
        ge=32,
        multiple_of=32,
        description="train on squares of this side cut around a person from the model's letterboxed input, at "
        "that input's scale (None: whole inputs); evaluation and serving stay whole",
    )
    augment: AugmentParams = AugmentParams()


def unwrap(model: nn.Module) -> nn.Module:
    """The module under DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = model.module if hasattr(model, "module") else model._orig_mod
    return model


# ---------------------------------------------------------------- training batches
def people_keypoints(
    keypoints: torch.Tensor, visibility: torch.Tensor, num_people: torch.Tensor
) -> list[torch.Tensor]:
    """Padded batch -> the codec's per-image people: keypoints [B,P_max,K,2] input px, visibility
    [B,P_max,K], num_people [B] -> B tensors [P_b,K,3] (x, y, v)."""
    people = torch.cat([keypoints.float(), visibility.float()[..., None]], dim=-1)
    return [people[b, : int(n)] for b, n in enumerate(num_people)]


def bottomup_collate(
    samples: list[dict[str, torch.Tensor]], target_kwargs: dict
) -> dict[str, torch.Tensor]:
    """A DataLoader collate_fn for bottom-up samples: stacks the images and makes the codec's targets.

    samples: image uint8 [3,S,S], keypoints [P_max,K,2] input px, visibility [P_max,K], num_people [],
    and optionally whole_people [P_max,3] (each person's centre from all its labelled keypoints; see
    `poseops.datasets.bottomup.whole_people`).
    Returns {"image" [B,3,S,S] uint8, "targets": encode_targets(...)} (targets after augmentation).
    """
    batch = {
        key: torch.stack([torch.as_tensor(s[key]) for s in samples])
        for key in ("image", "keypoints", "visibility")
    }
    num_people = torch.as_tensor([int(s["num_people"]) for s in samples])
    people = people_keypoints(batch["keypoints"], batch["visibility"], num_people)
    whole = None
    if all("whole_people" in s for s in samples):
        whole = [torch.as_tensor(s["whole_people"])[: int(n)] for s, n in zip(samples, num_people)]
    targets = encode_targets(people, **target_kwargs, whole_people=whole)
    return {"image": batch["image"], "num_people": num_people, "targets": targets}


def bottomup_losses(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """Loss terms (tensors) of the model in train mode on a `bottomup_collate` batch."""
    core = unwrap(model)
    images = core.preprocess(batch["image"])
    model.train()
    return core.loss(model(images, batch["targets"]), batch)


def bottomup_train_step(
    model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer
) -> dict[str, float]:
    """One optimisation step on a `bottomup_collate` batch; returns the loss and its named terms as floats."""
    terms = bottomup_losses(model, batch)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    return {name: float(value.detach()) for name, value in terms.items()}


def example_people_batch(model: nn.Module, batch_size: int, seed: int = 0, people: int = 2) -> dict:
    """Random images with `people` random skeletons each, through `bottomup_collate` (tests); sample i
    is drawn from seed + i (so consecutive seeds' batches concatenate to a bigger one)."""
    core = unwrap(model)
    size, joints = core.config.input_size, core.config.num_keypoints
    samples = []
    for i in range(batch_size):
        gen = torch.Generator().manual_seed(seed + i)
        samples.append(
            {
                "image": torch.randint(0, 256, (3, size, size), generator=gen, dtype=torch.uint8),
                "keypoints": size * (0.2 + 0.6 * torch.rand(people, joints, 2, generator=gen)),
                "visibility": torch.full((people, joints), 2.0),
                "num_people": torch.tensor(people),
            }
        )
    return bottomup_collate(samples, core.target_kwargs(None))


# ---------------------------------------------------------------- inference (evaluate, validation, endpoint)
def bottomup_input(
    image_bgr: np.ndarray, input_size: int, box_xywh: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Source image -> (network input RGB uint8 [S,S,3], affine source -> input [2,3]).

    The training loader's geometry (poseops.datasets.bottomup.letterbox_affine): the image's (or the
    box's) longer side fills the S x S input, centred, zero border.
    """
    if box_xywh is None:
        height, width = image_bgr.shape[:2]
        affine = letterbox_affine(width, height, input_size)
    else:
        affine = box_affine(tuple(float(v) for v in box_xywh), 1.0, input_size)
    return np.ascontiguousarray(warp(image_bgr, affine, input_size)[..., ::-1]), affine


def predict_people_inputs(
    model: nn.Module, images_rgb: np.ndarray, flip_test: bool = False, batch_size: int = 8
) -> list[dict[str, np.ndarray]]:
    """images_rgb [N,H,W,3] uint8 (H, W multiples of 32) -> per image {"keypoints" [P,K,2] input px,
    "keypoint_scores" [P,K], "scores" [P]}.

    The one bottom-up inference path shared by evaluate, training's validation and the endpoint.
    """
    core = unwrap(model)
    people: list[dict[str, np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(images_rgb), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images_rgb[start : start + batch_size]))
            for result in core.predict(core.preprocess(chunk), flip_test=flip_test):
                people.append(
                    {key: value.numpy().astype(np.float64) for key, value in result.items()}
                )
    return people


def people_in_source(
    found: dict[str, np.ndarray],
    input_to_source: np.ndarray,
    bounds: tuple[float, float, float, float],
) -> dict[str, np.ndarray]:
    """Input-px people -> source px, best score first, keypoints clipped to bounds (x0, y0, x1, y1)
    (the zero border around a letterboxed image may hold peaks)."""
    order = np.argsort(-found["scores"], kind="stable")
    found = {key: value[order] for key, value in found.items()}
    x0, y0, x1, y1 = bounds
    points = apply_affine(found["keypoints"], input_to_source)
    points = np.stack(
        [points[..., 0].clip(x0, max(x0, x1)), points[..., 1].clip(y0, max(y0, y1))], axis=-1
    )
    return {**found, "keypoints": points}


def people_json(
    keypoints: np.ndarray, keypoint_scores: np.ndarray, scores: np.ndarray
) -> list[dict]:
    """[P,K,2], [P,K], [P] -> [{"keypoints": [[x, y, score] x K], "score": s}] (plain floats)."""
    return [
        {
            "keypoints": [
                [float(x), float(y), float(c)] for (x, y), c in zip(points, point_scores)
            ],
            "score": float(score),
        }
        for points, point_scores, score in zip(keypoints, keypoint_scores, scores)
    ]


class BottomUpPredictor:
    """Whole-image multi-person predictor shared by `evaluate` and the endpoint.

    `predict(image_bgr [H,W,3] uint8, box_xywh | None) -> {"people": [{"keypoints": [[x, y, score] x K],
    "score": s}]}` in the original image's pixels, best first. A box restricts the search to that
    region (letterboxed like a whole image); no box means the whole image.
    """

    def __init__(
        self,
        model: nn.Module,
        name: str,
        version: str,
        input_size: int | None = None,
        flip_test: bool = True,
    ):
        self.model = model.eval()
        self.name, self.version = name, version
        self.input_size = int(input_size or model.config.input_size)
        self.flip_test = bool(flip_test)

    def predict_arrays(
        self, image_bgr: np.ndarray, box_xywh: Sequence[float] | None = None
    ) -> dict[str, np.ndarray]:
        """{"keypoints" [P,K,2] source px (clipped to the image or box), "keypoint_scores" [P,K],
        "scores" [P]}, best score first."""
        pixels, affine = bottomup_input(image_bgr, self.input_size, box_xywh)
        found = predict_people_inputs(self.model, pixels[None], self.flip_test)[0]
        height, width = image_bgr.shape[:2]
        bounds = (0.0, 0.0, width - 1.0, height - 1.0)
        if box_xywh is not None:
            x, y, w, h = (float(v) for v in box_xywh)
            bounds = (
                max(0.0, x),
                max(0.0, y),
                min(width - 1.0, x + w - 1),
                min(height - 1.0, y + h - 1),
            )
        return people_in_source(found, invert_affine(affine), bounds)

    def predict(self, image_bgr: np.ndarray, box_xywh: Sequence[float] | None = None) -> dict:
        found = self.predict_arrays(image_bgr, box_xywh)
        return {
            "people": people_json(found["keypoints"], found["keypoint_scores"], found["scores"])
        }


# ---------------------------------------------------------------- splits
def predict_split(model, data: dict, flip_test: bool, batch_size: int = 8) -> list[dict]:
    """The endpoint's inference over a split's letterboxed inputs: per image, people in source px
    (best first, clipped to the image), as `BottomUpPredictor.predict_arrays` answers them."""
    found = predict_people_inputs(model, data["images_rgb"], flip_test, batch_size)
    return [
        people_in_source(f, affine, (0.0, 0.0, w - 1.0, h - 1.0))
        for f, affine, (w, h) in zip(found, data["affine_to_source"], data["sizes"])
    ]


def split_from_images(
    images_bgr: list[np.ndarray], input_size: int, truth: list[dict] | None = None
) -> dict:
    """An evaluation split from source images (tests, ad-hoc sets): the same dict `load_evaluation_split` returns."""
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
    samples = load_bottomup_split(url, split, input_size, limit=limit)
    return {
        "images_rgb": np.stack([s["image"] for s in samples]),
        "affine_to_source": np.stack([s["affine_to_source"] for s in samples]).astype(np.float64),
        "sizes": [(int(s["width"]), int(s["height"])) for s in samples],
        "truth": [
            {
                "keypoints": s["keypoints_clean_source"],
                "visibility": s["visibility"],
                "boxes": s["boxes_source"],
            }
            for s in samples
        ],
        "input_size": input_size,
    }


# ---------------------------------------------------------------- scoring
def count_accuracy(
    predictions: list[dict], truth: list[dict], min_score: float = COUNT_SCORE
) -> float:
    return metrics.coco.count_accuracy(predictions, truth, min_score)


def count_score_from_validation(
    predictions: list[dict], truth: list[dict], candidates: Sequence[float] = COUNT_SCORES
) -> float:
    """The score threshold (of `candidates`) whose count accuracy on these (validation) images is best;
    ties go to the one nearest COUNT_SCORE. The test split is then counted at it, untouched by the choice."""
    return max(
        candidates,
        key=lambda t: (count_accuracy(predictions, truth, t), -abs(t - COUNT_SCORE)),
    )


def score_people(
    predictions: list[dict],
    truth: list[dict],
    skeleton: str = "coco17",
    count_score: float = COUNT_SCORE,
) -> dict[str, Any]:
    """Every number of the bottom-up report for one set of predictions.

    count_score: a returned person counts when its score is above this (`count_score_from_validation`).
    Returns {"ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "count_accuracy", "count_score",
    "pck_<alpha>", "pck_table" (per keypoint and Table-5 joint groups, alpha 0.1), "protocol"}.
    """
    skel = get_skeleton(skeleton)
    coco = metrics.coco_keypoint_ap(
        coco_ground_truth(truth, list(skel.keypoints), list(skel.edges)),
        coco_detections(predictions),
        sigmas=list(skel.sigmas) if skel.sigmas and skeleton != "coco17" else None,
    )
    sigmas = np.asarray(skel.sigmas or metrics.COCO17_SIGMAS, dtype=np.float64)
    matched = matched_arrays(predictions, truth, sigmas)
    report: dict[str, Any] = {
        key.lower(): coco[key] for key in ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50")
    }
    report["count_accuracy"] = count_accuracy(predictions, truth, count_score)
    report["count_score"] = float(count_score)
    scored = len(matched["gt"]) and (matched["visibility"] > 0).any()
    coco17 = skeleton == "coco17"
    for alpha in PCK_ALPHAS:
        report[f"pck_{alpha:g}"] = (
            metrics.pck(
                matched["pred"],
                matched["gt"],
                matched["visibility"],
                matched["box_size"],
                threshold=alpha,
                normaliser_name="bbox",
            ).value
            if scored
            else 0.0
        )
    report["pck_table"] = (
        metrics.pck_table(
            matched["pred"],
            matched["gt"],
            matched["visibility"],
            matched["box_size"],
            threshold=0.1,
            keypoint_names=skel.keypoints,
            groups=metrics.COCO17_TABLE5_GROUPS if coco17 else None,
        )
        if scored
        else None
    )
    report["protocol"] = {
        "ap": coco["protocol"],
        "pck": "PCK@alpha x max(box w, h) of each true person, against the prediction matched to it by "
        "greedy OKS (best-scored first); an unmatched person's keypoints all count as misses",
        "count_accuracy": f"share of images whose count of people with score > {count_score:g} (centre peak x "
        "mean keypoint peak) equals the true count (people with a labelled keypoint)",
        "area": "box w*h (the annotations have no segmentation)",
    }
    return report


def image_pck(
    predictions: list[dict], truth: list[dict], skeleton: str, alpha: float = 0.1
) -> np.ndarray:
    """Per image: PCK@alpha over its true people, an unmatched person counting wrong on every keypoint."""
    sigmas = np.asarray(get_skeleton(skeleton).sigmas or metrics.COCO17_SIGMAS, dtype=np.float64)
    scores = []
    for pred, item in zip(predictions, truth):
        m = matched_arrays([pred], [item], sigmas)
        visible = m["visibility"] > 0
        error = np.linalg.norm(m["pred"] - m["gt"], axis=-1) / m["box_size"][:, None]
        scores.append(float(((error <= alpha) & visible).sum() / max(visible.sum(), 1)))
    return np.asarray(scores)


def window_pck(
    model: nn.Module,
    data: dict,
    window: int,
    flip_test: bool,
    skeleton: str = "coco17",
    alpha: float = 0.1,
) -> float:
    """PCK@alpha of each true person predicted from a `window`-side square cut around it out of the
    letterboxed input (where training cuts its windows: `poseops.datasets.bottomup.person_window`), its
    best-OKS prediction in that window. Against `pck_<alpha>` of the whole inputs, it measures what the
    input's extent changes: the global pooling of MFCM, the channel attention and MFFM sees the window's
    statistics here, as in training, and the whole input's there."""
    sigmas = np.asarray(get_skeleton(skeleton).sigmas or metrics.COCO17_SIGMAS, dtype=np.float64)
    crops, to_source, people = [], [], []
    for pixels, back, item in zip(data["images_rgb"], data["affine_to_source"], data["truth"]):
        visibility = np.asarray(item["visibility"])
        keypoints = apply_affine(np.asarray(item["keypoints"], np.float64), invert_affine(back))
        for p in np.flatnonzero((visibility > 0).any(-1)):
            x0, y0 = person_window(
                keypoints[p : p + 1], visibility[p : p + 1], data["input_size"], window, None
            )
            crops.append(pixels[y0 : y0 + window, x0 : x0 + window])
            to_source.append(compose(back, np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]])))
            people.append(
                {
                    "keypoints": np.asarray(item["keypoints"])[p : p + 1],
                    "visibility": visibility[p : p + 1],
                    "boxes": np.asarray(item["boxes"])[p : p + 1]
                    if item.get("boxes") is not None
                    else None,
                }
            )
    if not crops:
        return 0.0
    found = predict_people_inputs(model, np.stack(crops), flip_test)
    predictions = [
        people_in_source(f, affine, (-np.inf, -np.inf, np.inf, np.inf))
        for f, affine in zip(found, to_source)
    ]
    m = matched_arrays(predictions, people, sigmas)
    visible = m["visibility"] > 0
    error = np.linalg.norm(m["pred"] - m["gt"], axis=-1) / m["box_size"][:, None]
    return float(((error <= alpha) & visible).sum() / max(visible.sum(), 1))


def overlay_grid(
    family_skeleton: str,
    data: dict,
    predictions: list[dict],
    indices: list[int] | None = None,
    min_score: float = OVERLAY_SCORE,
) -> np.ndarray | None:
    """The first 8 inputs (or those at `indices`) with every person scored above `min_score` (the
    evaluation passes the counting threshold, so the drawn people are the counted ones), 4 per row
    (BGR), or None."""
    skeleton = get_skeleton(family_skeleton)
    tiles = []
    chosen = list(range(min(8, len(predictions)))) if indices is None else list(indices)
    for pixels, to_source, pred in [
        (data["images_rgb"][i], data["affine_to_source"][i], predictions[i]) for i in chosen
    ]:
        canvas = np.ascontiguousarray(pixels[..., ::-1])
        for points, score in zip(pred["keypoints"], pred["scores"]):
            if score > min_score:
                draw_keypoints(canvas, apply_affine(points, invert_affine(to_source)), skeleton)
        tiles.append(cv2.resize(canvas, (256, 256)))
    if not tiles:
        return None
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    return np.concatenate(
        [np.concatenate(tiles[i : i + 4], axis=1) for i in range(0, len(tiles), 4)], axis=0
    )


@register_task
class BottomupImage(Task):
    name = "bottomup_image"
    Options = BottomupImageData
    rows = RowPlan(
        "bottomup_image",
        bottomup_rows.BOTTOMUP_SCHEMA,
        bottomup_rows.plan_images,
        bottomup_rows.image_rows,
        bottomup_rows.card_fields,
    )
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
    headline = (("ap", "AP"), ("ar", "AR"), ("count_accuracy", "count accuracy"))
    count_key = "num_images"

    # ------------------------------------------------------------ training
    def train_loader(self, cfg: dict, model: nn.Module, rank: int, world: int):
        window = cfg["data"].get("train_window")
        dataset = BottomUpDataset(
            cfg["dataset_url"],
            "train",
            cfg["input_size"],
            augment=AugmentParams(**cfg["data"]["augment"]),
            seed=cfg["seed"],
            rank=rank,
            world_size=world,
            window=window,
        )
        collate = functools.partial(
            bottomup_collate, target_kwargs=unwrap(model).target_kwargs(window)
        )
        loader = DataLoader(
            dataset,
            batch_size=max(1, cfg["batch_size"] // world),
            num_workers=cfg["loader_workers"],
            collate_fn=collate,
        )
        return dataset, loader

    def load_validation(self, cfg: dict):
        return load_evaluation_split(cfg["dataset_url"], "val", cfg["input_size"], limit=VAL_IMAGES)

    def train_losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return bottomup_losses(model, batch)

    def example_batch(self, model: nn.Module, batch_size: int, seed: int = 0) -> dict:
        return example_people_batch(model, batch_size, seed)

    def validate(self, model: nn.Module, val: dict) -> dict[str, float]:
        """AP (no flip test: the evaluate stage adds it) and count accuracy on the validation images (at
        the count threshold these images pick, as the evaluate stage picks it)."""
        core = unwrap(model)
        found = predict_split(core, val, flip_test=False)
        result = score_people(
            found,
            val["truth"],
            core.config.skeleton,
            count_score_from_validation(found, val["truth"]),
        )
        return {
            "val_ap": float(result["ap"] or 0.0),
            "val_count_accuracy": result["count_accuracy"],
        }

    def inference(self, fam: FamilyParams, model_defaults: dict[str, Any]) -> dict[str, Any]:
        return {
            "input_size": int(fam.model.input_size),
            "flip_test": bool(model_defaults.get("flip_test", True)),
        }

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
        limit: int | None = None,
    ) -> Evaluation:
        """Score `model` and the untrained baseline on a split (at most `limit`, else
        `fam.evaluate.max_images`, images spread over it)."""
        limit = limit or fam.evaluate.max_images
        data = load_evaluation_split(
            dataset_url, split, int(settings.get("input_size") or fam.model.input_size), limit
        )
        flip = bool(settings["flip_test"])
        predictions = predict_split(model, data, flip)
        torch.manual_seed(fam.train.seed)
        untrained = build_from_config(family.model, fam.model)
        # the count threshold of each model is picked on the validation images (never the scored split)
        val = load_evaluation_split(dataset_url, "val", data["input_size"], VAL_IMAGES)
        count_score = count_score_from_validation(predict_split(model, val, flip), val["truth"])
        # no flip test for the untrained baseline: it cannot lift a random model's AP off ~0, and such a
        # model proposes max_people people per image, so it costs twice the trained pass already
        baseline_count_score = count_score_from_validation(
            predict_split(untrained, val, flip_test=False), val["truth"]
        )
        baseline = score_people(
            predict_split(untrained, data, flip_test=False),
            data["truth"],
            family.skeleton,
            baseline_count_score,
        )
        trained = score_people(predictions, data["truth"], family.skeleton, count_score)
        window = fam.data.train_window
        if window is not None and window < data["input_size"]:
            trained["window_pck_0.1"] = window_pck(model, data, window, flip, family.skeleton)

        numbers = {k: v for k, v in trained.items() if k not in ("pck_table", "protocol")}
        table = trained["pck_table"] or {}
        report = {
            "family": family.name,
            "split": split,
            "data": card.get("source", {}).get("kind", "synthetic"),
            "data_mix": card.get("source", {})
            .get("mix", {})
            .get("train", {}),  # training samples per source
            "dataset_checksum": dataset_checksum(card),
            "num_images": len(predictions),
            "input_size": data["input_size"],
            "num_people": int(
                sum(int((np.asarray(t["visibility"]) > 0).any(-1).sum()) for t in data["truth"])
            ),
            **{k: (0.0 if v is None else v) for k, v in numbers.items()},
            "count_accuracy_at_default": count_accuracy(predictions, data["truth"]),
            "baselines": {
                "untrained_ap": baseline["ap"] or 0.0,
                "untrained_count_accuracy": baseline["count_accuracy"],
            },
            "margin_over_best_baseline": (trained["ap"] or 0.0) - (baseline["ap"] or 0.0),
            "flip_test": flip,
            "per_joint_pck": {row["group"]: row["value"] for row in table.get("groups", [])},
            "per_keypoint_pck": {
                row["keypoint"]: row["value"] for row in table.get("keypoints", [])
            },
            "protocol": {
                **trained["protocol"],
                "pck_table": table.get("protocol"),
                "count_score": f"picked on {len(val['truth'])} validation images from {list(COUNT_SCORES)} (the "
                f"untrained baseline's by itself: {baseline_count_score:g}); count_accuracy_at_default counts at {COUNT_SCORE:g}",
                "untrained_flip_test": False,
                "count_accuracy_at_default": f"count accuracy with people counted above {COUNT_SCORE:g}",
                "window_pck_0.1": "PCK@0.1 of each true person from the training-size window cut around it "
                "(the global pooling sees training's statistics) against pck_0.1 from whole inputs",
            },
        }
        alphas = list(PCK_ALPHAS)
        rows = table.get("keypoints", [])

        def overlays(path):
            grid = overlay_grid(family.skeleton, data, predictions, min_score=count_score)
            if grid is not None:
                cv2.imwrite(str(path), grid)

        order = np.argsort(-image_pck(predictions, data["truth"], family.skeleton), kind="stable")
        shown = min(4, len(order) // 2)

        def best_worst(path):
            picked = [*order[:shown], *order[len(order) - shown :]] if shown else []
            grid = overlay_grid(
                family.skeleton, data, predictions, [int(i) for i in picked], count_score
            )
            if grid is None:  # nothing to show: an empty tile keeps the declared file
                grid = np.zeros((256, 256 * 4, 3), np.uint8)
            cv2.imwrite(str(path), grid)

        files = {
            "best_worst.png": best_worst,
            "pck_curve.json": [
                {
                    "threshold": a,
                    "trained": trained[f"pck_{a:g}"],
                    "untrained": baseline[f"pck_{a:g}"],
                }
                for a in alphas
            ],
            "per_keypoint.json": [
                {"keypoint": k, "pck": v} for k, v in report["per_keypoint_pck"].items()
            ],
            "pck_curve.png": lambda path: plot_curves(
                path,
                alphas,
                {
                    "trained": [trained[f"pck_{a:g}"] for a in alphas],
                    "untrained": [baseline[f"pck_{a:g}"] for a in alphas],
                },
                "alpha (fraction of the person box's longer side)",
                "PCK",
                f"{family.name}: PCK of matched people",
            ),
            "per_keypoint_pck.png": lambda path: plot_bars(
                path,
                [r["keypoint"] for r in rows],
                [r["value"] or 0.0 for r in rows],
                "PCK@0.1",
                f"{family.name}: per-keypoint PCK@0.1",
            ),
            "overlays.png": overlays,
        }
        return Evaluation(report, files)

    # ------------------------------------------------------------ serving
    def predictor(self, model: nn.Module, name: str, version: str, settings: dict[str, Any]):
        return BottomUpPredictor(
            model, name, version, settings.get("input_size"), settings["flip_test"]
        )

    def network_inputs(
        self,
        model: nn.Module,
        dataset_url: str,
        split: str,
        settings: dict[str, Any],
        limit: int | None = None,
    ) -> np.ndarray:
        size = int(settings.get("input_size") or model.config.input_size)
        return load_evaluation_split(dataset_url, split, size, limit)["images_rgb"]
