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


@dataclass(frozen=True)
class Family:
    name: str
    model: str  # registry name in poseops.models
    dataset_kind: str  # a derived-dataset kind (poseops.datasets)
    skeleton: str  # poseops.skeletons name
    primary_metric: str  # key in metrics.json the gate and checkpoint selection use
    description: str = ""

    def predictor(self, model: "nn.Module", crop_margin: float | None = None, version: str = "local"):
        """`records -> predictions` over a checkpoint-built model (the MLflow pyfunc's entry point).

        records: [{"image_bgr": uint8 [H,W,3], "box": [x, y, w, h] | None}]. The crop margin is the one
        the checkpoint was trained with (its manifest's `extra.inference`), unless given.
        """
        margin = crop_margin if crop_margin is not None else inference_settings(model)["crop_margin"]
        top_down = TopDownPredictor(model, f"poseops-{self.name}", version, margin)
        return lambda records: [top_down.predict(r["image_bgr"], r.get("box")) for r in records]


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


DEFAULT_INFERENCE = {"crop_margin": 1.25}


def inference_settings(model: "nn.Module") -> dict:
    """Preprocessing a checkpoint was trained with (manifest `extra.inference`), else the defaults."""
    info = getattr(model, "checkpoint_info", None) or {}
    return {**DEFAULT_INFERENCE, **(info.get("extra", {}).get("inference") or {})}


def load_predictor(checkpoint_dir: str | Path, version: str = "local") -> TopDownPredictor:
    """A predictor from a published checkpoint folder, with the preprocessing it was trained with."""
    from poseops.checkpoints import build_model_from_checkpoint

    model = build_model_from_checkpoint(checkpoint_dir)
    family = model.checkpoint_info["family"]
    margin = inference_settings(model)["crop_margin"]
    return TopDownPredictor(model, name=f"poseops-{family}", version=version, crop_margin=margin)
