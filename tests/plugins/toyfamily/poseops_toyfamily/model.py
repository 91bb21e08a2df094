"""A 2-layer keypoint model keeping poseops' model contract for the topdown_crop task.

conv 3x3 stride 4 -> ReLU -> conv 1x1 to K heatmaps; keypoints by integral regression (soft-argmax;
Sun et al. 2018, "Integral Human Pose Regression", Eq. 1), L1 loss on normalised coordinates.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from poseops.codecs.integral import soft_argmax, spatial_softmax, to_pixels
from poseops.models import register_model
from poseops.models.blocks.images import preprocess


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_size: int = Field(64, ge=8, multiple_of=4)
    num_keypoints: int = Field(21, ge=1)
    width: int = Field(8, ge=1)


PRESETS = {"tiny": {"input_size": 64, "width": 8}, "smoke": {"input_size": 64, "width": 16}}


class TwoLayer(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.features = nn.Conv2d(3, config.width, 3, stride=4, padding=1)
        self.heatmaps = nn.Conv2d(config.width, config.num_keypoints, 1)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        return preprocess(images)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        logits = self.heatmaps(torch.relu(self.features(images)))
        return {"heatmaps": logits, "mu": soft_argmax(logits)}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        error = (outputs["mu"] - batch["target_norm"]).abs().sum(-1)
        return {"loss": (error * batch["weight"]).sum() / max(1, len(error))}

    @torch.no_grad()
    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        outputs = self(images)
        scores = spatial_softmax(outputs["heatmaps"]).flatten(2).max(-1).values
        return to_pixels(outputs["mu"], self.config.input_size), scores


@register_model("toy2layer", Config, PRESETS, inference={"crop_margin": 1.25, "flip_test": False})
def build(config: Config) -> TwoLayer:
    return TwoLayer(config)
