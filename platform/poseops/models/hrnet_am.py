"""hrnet_am: top-down HRNet (pose_hrnet layout) with a CAM-then-SAM attention module after stages.

The 2D part of "Lifting 2D-3D Human Pose Estimation System with Attention Module in Industrial
Environment" (its Sec. III-A, Fig. 2, the attention module); the network itself is Sun, Xiao, Liu, Wang, 2019, "Deep
High-Resolution Representation Learning for Human Pose Estimation" (pose_hrnet).

    crop [B,3,S,S] --stem, layer1--> stage 1 --transition, stage 2..4--> 1/4 map [B,w,S/4,S/4]
                    (AM after stages: `am_layout`)          --1x1 conv--> heatmaps [B,K,S/4,S/4]
    AM(X):  CAM  a_c = sigmoid(W2 ReLU(W1 GAP(X))), W1: C -> C/r, W2: C/r -> C;   X' = a_c * X
            SAM  a_s = sigmoid(conv3x3(ReLU(conv3x3(mean_c X'))));                X'' = a_s * X'
            (+ X when am_residual)
    loss:   JointsMSE: 0.5 * mean_{b,k,h,w} (w_bk (H - G))^2, G = Gaussian (sigma 2 cells) at the target
    predict: (flip test: average with the mirrored crop's maps, left/right swapped) -> argmax + 1/4-cell
             shift (or DARK, its blur matched to heatmap_sigma) -> input pixels; score = the map's peak.

Placements (`am_layout`; (stage, branch) pairs, stage 1 = layer1's output, branch 0 = 1/4 resolution):
- "none": no AM (the plain HRNet of the paper's Table I, 28.5M parameters for W32).
- "4": the 1/4 branch after stages 1, 2, 3 and 4 (the paper's "only 4 attention modules").
- "9": every branch of stages 2-4 (2 + 3 + 4, the prose's "9 AMs"). pose_hrnet's last module fuses
  stage 4 into the 1/4 branch, so the AMs on stage 4's branches 1-3 sit on those branches just before
  that final fusion.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from poseops.codecs import flip_back
from poseops.codecs.integral import (
    argmax_decode,
    dark_decode,
    dark_kernel,
    gaussian_heatmaps,
    to_pixels,
)
from poseops.models import register_model
from poseops.models.blocks.hrnet import HRNetConfig, HRNetTrunk, load_pretrained
from poseops.models.blocks.images import preprocess
from poseops.skeletons import get_skeleton

AM_LAYOUTS: dict[str, tuple[tuple[int, int], ...]] = {
    "none": (),
    "4": ((1, 0), (2, 0), (3, 0), (4, 0)),
    "9": ((2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2), (4, 3)),
}


class Config(HRNetConfig):
    am_layout: Literal["none", "4", "9"] = "4"
    am_reduction: int = Field(16, ge=1, description="CAM reduction r")
    am_residual: bool = Field(False, description="AM output X + X'' instead of X''")
    heatmap_sigma: float = Field(2.0, gt=0, description="Gaussian target sigma in heatmap cells")
    decode: Literal["argmax", "dark"] = "argmax"
    flip_test: bool = Field(
        True, description="average with the mirrored crop's heatmaps in predict"
    )


PRESETS: dict[str, dict] = {
    # pose_hrnet W32 (Sun et al., 2019, Table 1: 28.5M at 256x192); the paper's 4 AMs. Crops are square
    # here (the task's crop pipeline), so the paper's 256x192 is run as 256x256 in training.
    "paper": dict(
        input_size=256, width=32, stem_width=64, blocks=4, modules=(1, 4, 3), am_layout="4"
    ),
    "w48": dict(
        input_size=256, width=48, stem_width=64, blocks=4, modules=(1, 4, 3), am_layout="4"
    ),
    # 2 CPU cores: HRNet-"mini", W12, 2 blocks, 1 module per stage, 64-px crops -> 16x16 heatmaps
    "smoke": dict(
        input_size=64, width=12, stem_width=32, blocks=2, modules=(1, 1, 1), am_layout="4"
    ),
    # unit and fast integration tests
    "tiny": dict(input_size=32, width=4, stem_width=8, blocks=1, modules=(1, 1, 1), am_layout="4"),
}


class AttentionModule(nn.Module):
    """CAM (squeeze-excitation gate, reduction r) then SAM (two 3x3 convs on the channel mean)."""

    def __init__(self, channels: int, reduction: int = 16, residual: bool = False):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(1, 1, 3, padding=1)
        )
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = torch.sigmoid(self.channel(x)) * x
        y = torch.sigmoid(self.spatial(y.mean(dim=1, keepdim=True))) * y
        return x + y if self.residual else y


class HRNetAM(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.flip_permutation = get_skeleton(config.skeleton).flip_permutation()
        self.backbone = HRNetTrunk(
            config.width, config.stem_width, config.blocks, config.modules, multi_scale_output=False
        )
        if config.pretrained:
            load_pretrained(self.backbone, config.pretrained)
        channels = {
            1: config.stem_width * 4,
            **{s: [config.width * 2**b for b in range(s)] for s in (2, 3, 4)},
        }
        self.attention = nn.ModuleDict(
            {
                f"s{stage}b{branch}": AttentionModule(
                    channels[1] if stage == 1 else channels[stage][branch],
                    config.am_reduction,
                    config.am_residual,
                )
                for stage, branch in AM_LAYOUTS[config.am_layout]
            }
        )
        self.final_layer = nn.Conv2d(config.width, config.num_keypoints, 1)

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """uint8 RGB crops [B,S,S,3] or [B,3,S,S] -> the normalised float batch `forward` takes."""
        return preprocess(images)

    def _attend(self, stage: int, xs: list[Tensor]) -> list[Tensor]:
        return [
            self.attention[f"s{stage}b{b}"](x) if f"s{stage}b{b}" in self.attention else x
            for b, x in enumerate(xs)
        ]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images [B,3,H,W] normalised -> {"heatmaps": [B,K,H/4,W/4]} (any H, W multiples of 32)."""
        trunk = self.backbone
        x = trunk.relu(trunk.bn1(trunk.conv1(images)))
        x = trunk.relu(trunk.bn2(trunk.conv2(x)))
        xs = self._attend(1, [trunk.layer1(x)])
        for stage in (2, 3, 4):
            transition = getattr(trunk, f"transition{stage - 1}")
            sources = [xs[i] if i < len(xs) else xs[-1] for i in range(len(transition))]
            xs = [x if layer is None else layer(x) for x, layer in zip(sources, transition)]
            modules = list(getattr(trunk, f"stage{stage}"))
            for module in modules[:-1]:
                xs = module(xs)
            last = modules[-1]
            if (
                stage == 4
            ):  # pose_hrnet's last module: branches, AMs, then the fusion into the 1/4 branch
                xs = self._attend(4, [branch(x) for branch, x in zip(last.branches, xs)])
                xs = self._fuse_first(last, xs)
            else:
                xs = self._attend(stage, last(xs))
        return {"heatmaps": self.final_layer(xs[0])}

    @staticmethod
    def _fuse_first(module: nn.Module, xs: list[Tensor]) -> list[Tensor]:
        row, size = module.fuse_layers[0], xs[0].shape[-2:]
        y = xs[0]
        for j, layer in enumerate(row):
            if j > 0:
                y = y + layer(xs[j], size)
        return [module.relu(y)]

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """JointsMSE (Sun et al., 2019, Sec. 3; the lifting paper's Eq. 7 with visibility weights):
        0.5 * mean over batch, keypoints and cells of (w * (H - G))^2.

        batch: target_norm [B,K,2] in [-0.5, 0.5], weight [B,K] (0 = unlabelled). Returns {"loss"}.
        """
        outputs = outputs["heatmaps"]
        h, w = outputs.shape[-2:]
        target = gaussian_heatmaps(
            batch["target_norm"].to(outputs.dtype), (w, h), self.config.heatmap_sigma
        )
        weight = batch["weight"].to(outputs.dtype)[..., None, None]
        return {"loss": 0.5 * ((outputs - target) * weight).pow(2).mean()}

    def heatmaps(self, images: Tensor, flip_test: bool | None = None) -> Tensor:
        """Heatmaps [B,K,h,w], averaged with the mirrored crop's (left/right swapped) when flip_test."""
        flip = self.config.flip_test if flip_test is None else flip_test
        maps = self(images)["heatmaps"]
        if flip:
            mirrored = self(images.flip(-1))["heatmaps"]
            maps = (maps + flip_back(mirrored, self.flip_permutation)) / 2
        return maps

    @torch.no_grad()
    def predict(self, images: Tensor, flip_test: bool | None = None) -> tuple[Tensor, Tensor]:
        """images [B,3,S,S] normalised -> (keypoints [B,K,2] input pixels, scores [B,K] = heatmap peaks in [0, 1])."""
        was_training = self.training
        self.eval()
        try:
            maps = self.heatmaps(images, flip_test)
        finally:
            self.train(was_training)
        if self.config.decode == "dark":
            xy_norm, peaks = dark_decode(maps, dark_kernel(self.config.heatmap_sigma))
        else:
            xy_norm, peaks = argmax_decode(maps)
        size = (images.shape[-1], images.shape[-2])
        return to_pixels(xy_norm, size), peaks.clamp(0, 1)


@register_model("hrnet_am", Config, PRESETS, inference={"crop_margin": 1.25, "flip_test": True})
def build(config: Config) -> HRNetAM:
    return HRNetAM(config)
