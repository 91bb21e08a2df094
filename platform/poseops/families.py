"""The one table of model families: model, dataset kind, skeleton, metrics, gate and serving adapter.

Adding a family means: one model file, one row here, one block in the configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from poseops import config as config_schema
from poseops.models import model_entry

if TYPE_CHECKING:
    from torch import nn


BOTTOM_UP_KINDS = ("bottomup_image",)


@dataclass(frozen=True)
class Family:
    name: str
    model: str  # registry name in poseops.models
    dataset_kind: str  # a derived-dataset kind (poseops.datasets)
    skeleton: str  # poseops.skeletons name
    primary_metric: str  # key in metrics.json the gate and checkpoint selection use
    description: str = ""

    @property
    def bottom_up(self) -> bool:
        """True for whole-image multi-person families (no crops, a list of people per image)."""
        return self.dataset_kind in BOTTOM_UP_KINDS

    @property
    def val_metric(self) -> str:
        """The per-epoch validation metric training reports and selects checkpoints by (`val_<primary>`)."""
        return f"val_{self.primary_metric}"

    def make_predictor(self, model: "nn.Module", version: str = "local", **settings):
        """The serving/evaluation predictor of a checkpoint-built model (`predict(image_bgr, box)`).

        settings override the checkpoint's `extra.inference` (crop_margin; input_size, flip_test).
        """
        inference = {**inference_settings(model), **settings}
        name = f"poseops-{self.name}"
        if self.bottom_up:
            return BottomUpPredictor(model, name, version, inference.get("input_size"), inference["flip_test"])
        return TopDownPredictor(model, name, version, inference["crop_margin"])

    def predictor(self, model: "nn.Module", crop_margin: float | None = None, version: str = "local"):
        """`records -> predictions` over a checkpoint-built model (the MLflow pyfunc's entry point).

        records: [{"image_bgr": uint8 [H,W,3], "box": [x, y, w, h] | None}]. The crop margin is the one
        the checkpoint was trained with (its manifest's `extra.inference`), unless given.
        """
        settings = {} if crop_margin is None else {"crop_margin": crop_margin}
        predictor = self.make_predictor(model, version, **settings)
        return lambda records: [predictor.predict(r["image_bgr"], r.get("box")) for r in records]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="handmle",
            model="handmle",
            dataset_kind="hand_crop",
            skeleton="hand21",
            primary_metric="pck",
            description="seed 004: 21-keypoint hands, sequential stages, RealNVP MLE loss",
        ),
        Family(
            name="vmhpe",
            model="vmhpe",
            dataset_kind="bottomup_image",
            skeleton="coco17",
            primary_metric="ap",
            description="seed 000: bottom-up multi-person COCO-17, CID + MFCM + MFFM on HRNet",
        ),
    )
}


def get_family(name: str) -> Family:
    from poseops.errors import ConfigError

    if name not in FAMILIES:
        raise ConfigError(f"unknown family {name!r}; families: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def model_schemas() -> dict[str, type]:
    """family name -> the pydantic Config of its model, for validating params.yaml."""
    return {name: model_entry(fam.model).config_class for name, fam in FAMILIES.items()}


def load_params(path: str | Path = "params.yaml") -> config_schema.Params:
    """Read and validate `params.yaml` (the edge): every family's model block with its own Config."""
    return config_schema.load_params(path, model_schemas())


# ---------------------------------------------------------------- serving / evaluation adapter
def predict_crops(model: "nn.Module", crops_rgb: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """crops_rgb [N,S,S,3] uint8 -> (keypoints [N,K,2] input px, scores [N,K]), in batches.

    The one inference path shared by evaluate, training's validation and the endpoint.
    """
    import torch

    coords, scores = [], []
    with torch.no_grad():
        for start in range(0, len(crops_rgb), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(crops_rgb[start : start + batch_size]))
            c, s = model.predict(model.preprocess(chunk))
            coords.append(c.numpy())
            scores.append(s.numpy())
    if not coords:
        return np.zeros((0, 0, 2)), np.zeros((0, 0))
    return np.concatenate(coords).astype(np.float64), np.concatenate(scores).astype(np.float64)


class TopDownPredictor:
    """Crop-based predictor shared by `evaluate` and the endpoint, so both see the same pixels.

    `predict(image_bgr[H,W,3] uint8, box_xywh | None) -> {"keypoints": [[x, y, score] x K]}` in the
    original image's pixels; no box means the whole image is the crop.
    """

    def __init__(self, model: "nn.Module", name: str, version: str, crop_margin: float):
        self.model = model.eval()
        self.name, self.version = name, version
        self.input_size = int(model.config.input_size)
        self.crop_margin = float(crop_margin)

    def crop(self, image_bgr: np.ndarray, box_xywh: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
        """(input crop RGB uint8 [S,S,3], affine source->input [2,3])."""
        from poseops.datasets.transforms import box_affine, warp

        h, w = image_bgr.shape[:2]
        box = tuple(float(v) for v in box_xywh) if box_xywh is not None else (0.0, 0.0, float(w), float(h))
        affine = box_affine(box, self.crop_margin, self.input_size)
        crop = warp(image_bgr, affine, self.input_size)
        return np.ascontiguousarray(crop[..., ::-1]), affine

    def predict(self, image_bgr: np.ndarray, box_xywh: Sequence[float] | None = None) -> dict:
        from poseops.datasets.transforms import apply_affine, invert_affine

        crop, affine = self.crop(image_bgr, box_xywh)
        coords, scores = predict_crops(self.model, crop[None])
        points = apply_affine(coords[0], invert_affine(affine))
        return {"keypoints": [[float(x), float(y), float(s)] for (x, y), s in zip(points, scores[0])]}


# ---------------------------------------------------------------- bottom-up (whole image, many people)
def bottomup_input(image_bgr: np.ndarray, input_size: int, box_xywh: Sequence[float] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Source image -> (network input RGB uint8 [S,S,3], affine source -> input [2,3]).

    The training loader's geometry (poseops.datasets.bottomup.letterbox_affine): the image's (or the
    box's) longer side fills the S x S input, centred, zero border.
    """
    from poseops.datasets.bottomup import letterbox_affine
    from poseops.datasets.transforms import box_affine, warp

    if box_xywh is None:
        height, width = image_bgr.shape[:2]
        affine = letterbox_affine(width, height, input_size)
    else:
        affine = box_affine(tuple(float(v) for v in box_xywh), 1.0, input_size)
    return np.ascontiguousarray(warp(image_bgr, affine, input_size)[..., ::-1]), affine


def predict_people_inputs(model: "nn.Module", images_rgb: np.ndarray, flip_test: bool = False,
                          batch_size: int = 8) -> list[dict[str, np.ndarray]]:
    """images_rgb [N,H,W,3] uint8 (H, W multiples of 32) -> per image {"keypoints" [P,K,2] input px,
    "keypoint_scores" [P,K], "scores" [P]}.

    The one bottom-up inference path shared by evaluate, training's validation and the endpoint.
    """
    import torch

    core = model.module if hasattr(model, "module") else model
    people: list[dict[str, np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(images_rgb), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images_rgb[start : start + batch_size]))
            for result in core.predict(core.preprocess(chunk), flip_test=flip_test):
                people.append({key: value.numpy().astype(np.float64) for key, value in result.items()})
    return people


def people_in_source(found: dict[str, np.ndarray], input_to_source: np.ndarray,
                     bounds: tuple[float, float, float, float]) -> dict[str, np.ndarray]:
    """Input-px people -> source px, best score first, keypoints clipped to bounds (x0, y0, x1, y1)
    (the zero border around a letterboxed image may hold peaks)."""
    from poseops.datasets.transforms import apply_affine

    order = np.argsort(-found["scores"], kind="stable")
    found = {key: value[order] for key, value in found.items()}
    x0, y0, x1, y1 = bounds
    points = apply_affine(found["keypoints"], input_to_source)
    points = np.stack([points[..., 0].clip(x0, max(x0, x1)), points[..., 1].clip(y0, max(y0, y1))], axis=-1)
    return {**found, "keypoints": points}


def people_json(keypoints: np.ndarray, keypoint_scores: np.ndarray, scores: np.ndarray) -> list[dict]:
    """[P,K,2], [P,K], [P] -> [{"keypoints": [[x, y, score] x K], "score": s}] (plain floats)."""
    return [
        {"keypoints": [[float(x), float(y), float(c)] for (x, y), c in zip(points, point_scores)], "score": float(score)}
        for points, point_scores, score in zip(keypoints, keypoint_scores, scores)
    ]


class BottomUpPredictor:
    """Whole-image multi-person predictor shared by `evaluate` and the endpoint.

    `predict(image_bgr [H,W,3] uint8, box_xywh | None) -> {"people": [{"keypoints": [[x, y, score] x K],
    "score": s}]}` in the original image's pixels, best first. A box restricts the search to that
    region (letterboxed like a whole image); no box means the whole image.
    """

    def __init__(self, model: "nn.Module", name: str, version: str, input_size: int | None = None,
                 flip_test: bool = True):
        self.model = model.eval()
        self.name, self.version = name, version
        self.input_size = int(input_size or model.config.input_size)
        self.flip_test = bool(flip_test)

    def predict_arrays(self, image_bgr: np.ndarray, box_xywh: Sequence[float] | None = None) -> dict[str, np.ndarray]:
        """{"keypoints" [P,K,2] source px (clipped to the image or box), "keypoint_scores" [P,K],
        "scores" [P]}, best score first."""
        from poseops.datasets.transforms import invert_affine

        pixels, affine = bottomup_input(image_bgr, self.input_size, box_xywh)
        found = predict_people_inputs(self.model, pixels[None], self.flip_test)[0]
        height, width = image_bgr.shape[:2]
        bounds = (0.0, 0.0, width - 1.0, height - 1.0)
        if box_xywh is not None:
            x, y, w, h = (float(v) for v in box_xywh)
            bounds = (max(0.0, x), max(0.0, y), min(width - 1.0, x + w - 1), min(height - 1.0, y + h - 1))
        return people_in_source(found, invert_affine(affine), bounds)

    def predict(self, image_bgr: np.ndarray, box_xywh: Sequence[float] | None = None) -> dict:
        found = self.predict_arrays(image_bgr, box_xywh)
        return {"people": people_json(found["keypoints"], found["keypoint_scores"], found["scores"])}


DEFAULT_INFERENCE = {"crop_margin": 1.25, "input_size": None, "flip_test": True}


def inference_settings(model: "nn.Module") -> dict:
    """Preprocessing a checkpoint was trained with (manifest `extra.inference`), else the defaults."""
    info = getattr(model, "checkpoint_info", None) or {}
    return {**DEFAULT_INFERENCE, **(info.get("extra", {}).get("inference") or {})}


def load_predictor(checkpoint_dir: str | Path, version: str = "local"):
    """A predictor (top-down or bottom-up, by the checkpoint's family) from a published checkpoint
    folder, with the preprocessing it was trained with."""
    from poseops.checkpoints import build_model_from_checkpoint

    model = build_model_from_checkpoint(checkpoint_dir)
    return get_family(model.checkpoint_info["family"]).make_predictor(model, version=version)
