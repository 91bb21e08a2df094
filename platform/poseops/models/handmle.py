"""handmle: multi-stage heatmap network with an RLE-style MLE (RealNVP) loss for 21 hand keypoints.

Lou, Lin, Zhu, Chen, "MLE-Loss Driven Robust Hand Pose Estimation", IEEE Access 2024.

    images [B,3,S,S] --ResNet trunk--> F [B,C,S/32,S/32]              (shared, computed once)
    stage t: cat(reduce_t(F), heatmap_in_t(avgpool(H~_{t-1})))         (t = 1: reduce_t(F) only)
             -> deconvs + 1x1 -> heatmap logits H_t [B,K,S/4,S/4] -> soft-argmax -> mu_t [B,K,2]
             -> avgpool + 2 FC -> sigma_t [B,K,2]
    loss:    sum_t  -log p_flow_t((target - mu_t) / sigma_t) + log sigma_t      (Eqs. 3-6)
    predict: mu_T (flows unused), score = 1 - mean sigma_T; predict_stages: every mu_t (the stage curve)

`method` swaps the network for the baselines of the paper's comparison (Lou et al., 2024, Sec. IV-C):
    regression  Li et al., 2021, "Human Pose Regression with Residual Log-likelihood Estimation" (RLE):
                avgpool(F) -> FC -> mu [1,B,K,2] and sigma; no heatmaps
    integral    Sun, Xiao, Liang, Wei, 2018, "Integral Human Pose Regression": one heatmap head on F,
                soft-argmax; `num_stages` is not used
    cpm         Wei, Ramakrishna, Kanade, Sheikh, 2016, "Convolutional Pose Machines": T stages, each a
                3x3 convolution body over its image features and the previous stage's raw belief maps

Coordinates are normalised to [-0.5, 0.5] over the input crop (codecs.integral); `predict`
returns input pixels. Images fed to `forward` are already normalised (see `preprocess`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from poseops.codecs.integral import argmax_decode, gaussian_heatmaps, soft_argmax, spatial_softmax, to_pixels
from poseops.models import register_model
from poseops.models.blocks.images import IMAGE_MEAN, IMAGE_STD, preprocess  # noqa: F401 (re-exported)
from poseops.models.blocks.realnvp import RealNVP
from poseops.models.blocks.resnet import ResNetTrunk, load_pretrained

SIGMA_EPS = 1e-9  # sigma = activation(x) + 1e-9: a scale that is divided by (Lou et al., 2024, Eq. 3), never 0
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_size: int = Field(256, ge=16, description="square crop side S in pixels")
    num_keypoints: int = Field(21, ge=1)
    backbone_depth: Literal[18, 34, 50] = 50
    backbone_width: int = Field(64, ge=4, description="base channels of the ResNet (64 = torchvision)")
    backbone_stages: int = Field(4, ge=1, le=4, description="ResNet layers kept: stride 4 * 2**(stages-1)")
    pretrained: str | None = Field(None, description="local torchvision-layout ResNet .pth/.safetensors, or None")
    num_stages: int = Field(5, ge=1, description="T, the number of refinement stages")
    head_width: int = Field(256, ge=1, description="channels of the 1x1 reductions and deconvs")
    deconv_layers: int | None = Field(None, ge=0, description="None: derived so that heatmaps are S/4")
    var_hidden: int = Field(256, ge=1, description="hidden width of the variance head")
    flow_couplings: int = Field(6, ge=0, description="RealNVP couplings per stage; 0 = plain Gaussian NLL")
    flow_mode: Literal["direct", "residual"] = "direct"  # direct: Eq. 4; residual: RLE's + log Q (Laplace)
    flow_term: Literal["per_axis", "per_keypoint"] = Field(
        "per_axis",
        description="per_axis: -log p_flow(eps) counted once per axis, as RLE's reference code does (Li et al., "
        "2021, RegressFlow: nf_loss = log sigma - log phi broadcast over x and y); per_keypoint: once per 2D "
        "residual, the density of Eq. 4 taken literally",
    )
    loss_type: Literal["mle", "integral_l1", "heatmap_l2"] = "mle"
    method: Literal["sequential", "regression", "integral", "cpm"] = Field(
        "sequential",
        description="sequential: the paper's stages; regression (RLE), integral (Sun et al., 2018), cpm "
        "(Wei et al., 2016): the baselines of its method comparison",
    )
    cpm_body_layers: int = Field(3, ge=1, description="3x3 conv+BN+ReLU layers in each cpm stage's body")
    sigma_activation: Literal["sigmoid", "softplus"] = "sigmoid"
    stage_input: Literal["softmax", "logits"] = "softmax"  # heatmap passed to the next stage (Lou et al., 2024, Sec. III-A)
    stage1_heatmap_input: bool = Field(False, description="stage 1 gets a zero heatmap branch, so all stages are alike")
    heatmap_sigma_px: float = Field(2.0, gt=0, description="Gaussian target sigma for heatmap_l2, in heatmap cells")

    @model_validator(mode="after")
    def _check_geometry(self) -> "Config":
        if self.method == "regression" and self.loss_type == "heatmap_l2":
            raise ValueError("method regression predicts coordinates, not heatmaps: loss_type heatmap_l2 needs a heatmap method")
        stride = 4 * 2 ** (self.backbone_stages - 1)
        if self.input_size % stride:
            raise ValueError(f"input_size {self.input_size} must be a multiple of the trunk stride {stride} (backbone_stages={self.backbone_stages})")
        needed = self.backbone_stages - 1  # each 2x deconv undoes one stride-2 layer: S/stride * 2**n == S/4
        if self.deconv_layers is None:
            self.deconv_layers = needed
        elif self.deconv_layers != needed:
            raise ValueError(
                f"deconv_layers={self.deconv_layers} gives heatmaps of side {self.input_size // stride * 2**self.deconv_layers}, "
                f"not input_size/4 = {self.input_size // 4}; with backbone_stages={self.backbone_stages} it must be {needed}"
            )
        return self

    @property
    def stage_count(self) -> int:
        """Outputs T of the network: num_stages for sequential and cpm, 1 for regression and integral."""
        return self.num_stages if self.method in ("sequential", "cpm") else 1

    @property
    def heatmap_size(self) -> int:
        return self.input_size // 4

    @property
    def feature_size(self) -> int:
        return self.input_size // (4 * 2 ** (self.backbone_stages - 1))


PRESETS: dict[str, dict] = {
    # Lou et al., 2024, Fig. 2 and Sec. IV-A: ResNet-50, 256x256, 5 stages, 64x64 heatmaps; 6-coupling RealNVP per stage
    # (tests/unit/test_models_handmle.py::test_paper_preset_is_the_papers_network)
    "paper": dict(input_size=256, backbone_depth=50, backbone_width=64, backbone_stages=4, num_stages=5,
                  head_width=256, deconv_layers=3, var_hidden=256, flow_couplings=6),
    # same code on 2 CPU cores: ResNet-18/32 to layer3 (stride 16), 64 px -> 4x4 features -> 16x16 heatmaps
    "smoke": dict(input_size=64, backbone_depth=18, backbone_width=32, backbone_stages=3, num_stages=3,
                  head_width=64, deconv_layers=2, var_hidden=64, flow_couplings=6),
    # unit tests
    "tiny": dict(input_size=32, backbone_depth=18, backbone_width=8, backbone_stages=3, num_stages=2,
                 head_width=16, deconv_layers=2, var_hidden=16, flow_couplings=2),
}


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class Stage(nn.Module):
    """One refinement stage: features (+ previous heatmap) -> heatmap logits, raw sigma, and its own flow."""

    def __init__(self, config: Config, feature_channels: int, takes_heatmap: bool):
        super().__init__()
        width, k = config.head_width, config.num_keypoints
        self.reduce = conv_bn_relu(feature_channels, width)
        self.heatmap_in = conv_bn_relu(k, width) if takes_heatmap else None
        joined = width * (2 if takes_heatmap else 1)
        # cpm: a convolutional body whose receptive field spans the feature map, so each stage sees the
        # spatial context of the previous beliefs (Wei et al., 2016, Sec. 3.2)
        self.body = (
            nn.Sequential(*[
                layer
                for index in range(config.cpm_body_layers)
                for layer in (nn.Conv2d(joined, joined, 3, padding=1, bias=False), nn.BatchNorm2d(joined), nn.ReLU(inplace=True))
            ])
            if config.method == "cpm"
            else nn.Identity()
        )
        deconvs: list[nn.Module] = []
        for index in range(config.deconv_layers):
            deconvs += [nn.ConvTranspose2d(joined if index == 0 else width, width, 4, stride=2, padding=1, bias=False),
                        nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        last_channels = width if config.deconv_layers else joined
        self.heatmap_head = nn.Sequential(*deconvs, nn.Conv2d(last_channels, k, 1))
        self.variance_head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(joined, config.var_hidden, bias=False), nn.BatchNorm1d(config.var_hidden), nn.ReLU(inplace=True),
            nn.Linear(config.var_hidden, 2 * k),
        )
        self.flow = RealNVP(config.flow_couplings)

    def forward(self, features: Tensor, heatmap_in: Tensor | None) -> tuple[Tensor, Tensor]:
        """features [B,C,f,f], heatmap_in [B,K,f,f] or None -> (heatmap logits [B,K,h,h], sigma logits [B,K,2])."""
        x = self.reduce(features)
        if self.heatmap_in is not None:
            x = torch.cat([x, self.heatmap_in(heatmap_in)], dim=1)
        x = self.body(x)
        sigma_logits = self.variance_head(x).reshape(x.shape[0], -1, 2)
        return self.heatmap_head(x), sigma_logits


class NormalisedLinear(nn.Linear):
    """x W^T / ||x|| + b: RLE's coordinate layer (Li et al., 2021, RegressFlow's fc_coord), xavier gain 0.01."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features)
        nn.init.xavier_uniform_(self.weight, gain=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.t() / x.norm(dim=1, keepdim=True).clamp_min(1e-12) + self.bias


class RegressionHead(nn.Module):
    """RLE's direct regression (Li et al., 2021): global average pool of the backbone's features, then one
    layer each for the coordinates (normalised by the feature norm) and the raw sigma, and one flow."""

    def __init__(self, config: Config, feature_channels: int):
        super().__init__()
        k = config.num_keypoints
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.coords = NormalisedLinear(feature_channels, 2 * k)
        self.sigma = nn.Linear(feature_channels, 2 * k)
        nn.init.xavier_uniform_(self.sigma.weight, gain=0.01)
        self.flow = RealNVP(config.flow_couplings)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """features [B,C,f,f] -> (mu [B,K,2] normalised, sigma logits [B,K,2])."""
        pooled = self.pool(features)
        return self.coords(pooled).reshape(pooled.shape[0], -1, 2), self.sigma(pooled).reshape(pooled.shape[0], -1, 2)


class HandMLE(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.backbone = ResNetTrunk(config.backbone_depth, config.backbone_width, config.backbone_stages)
        if config.pretrained:
            load_pretrained(self.backbone, config.pretrained)
        # `stages` holds one module per output with a `flow`: the heatmap stages, or RLE's regression head
        if config.method == "regression":
            self.stages = nn.ModuleList([RegressionHead(config, self.backbone.out_channels)])
        else:
            self.stages = nn.ModuleList([
                Stage(config, self.backbone.out_channels, takes_heatmap=t > 0 or config.stage1_heatmap_input)
                for t in range(config.stage_count)
            ])
        self.pool = config.heatmap_size // config.feature_size  # heatmap -> feature-map size (AvgPool k = stride)

    @property
    def uses_all_parameters(self) -> bool:
        """Whether `loss` reaches every parameter: only the MLE loss trains the variance heads and flows
        (Lou et al., 2024, Eq. 4); DistributedDataParallel needs `find_unused_parameters` otherwise."""
        return self.config.loss_type == "mle"

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """uint8 RGB crops [B,S,S,3] or [B,3,S,S] -> the normalised float batch `forward` takes."""
        return preprocess(images)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images [B,3,S,S] normalised -> {"mu": [T,B,K,2] norm, "sigma": [T,B,K,2] norm, "heatmaps": [T,B,K,S/4,S/4] logits}
        (method regression: no "heatmaps", T = 1)."""
        cfg = self.config
        features = self.backbone(images)
        if cfg.method == "regression":
            mu, sigma_logits = self.stages[0](features)
            return {"mu": mu.unsqueeze(0), "sigma": self._sigma(sigma_logits).unsqueeze(0)}
        b, f = features.shape[0], features.shape[-1]
        previous = features.new_zeros(b, cfg.num_keypoints, f, f) if cfg.stage1_heatmap_input else None
        mus, sigmas, heatmaps = [], [], []
        for stage in self.stages:
            logits, sigma_logits = stage(features, previous)
            heatmaps.append(logits)
            mus.append(self._decode(logits))
            sigmas.append(self._sigma(sigma_logits))
            # CPM passes the raw belief maps on (Wei et al., 2016, Eq. 2)
            passed = spatial_softmax(logits) if cfg.stage_input == "softmax" and cfg.method != "cpm" else logits
            previous = F.avg_pool2d(passed, self.pool) if self.pool > 1 else passed
        return {"mu": torch.stack(mus), "sigma": torch.stack(sigmas), "heatmaps": torch.stack(heatmaps)}

    def _decode(self, logits: Tensor) -> Tensor:
        if self.config.loss_type == "heatmap_l2":  # MSE heatmaps are not softmax logits: classic argmax
            return argmax_decode(logits)[0]
        return soft_argmax(logits)

    def _sigma(self, sigma_logits: Tensor) -> Tensor:
        if self.config.sigma_activation == "sigmoid":
            return torch.sigmoid(sigma_logits) + SIGMA_EPS
        return F.softplus(sigma_logits) + SIGMA_EPS

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Summed stage losses (Lou et al., 2024, Eq. 6; its reduction, which the paper leaves open: sum over
        stages, keypoints, axes; mean over the batch; times weight).

        outputs from `forward`; batch: target_norm [B,K,2] in [-0.5, 0.5], weight [B,K] (0 = ignore keypoint).
        Returns the named terms {"loss_stage1", ..., "loss" (their sum, the one to minimise)} as tensors.
        """
        cfg = self.config
        target_norm, weight = batch["target_norm"], batch["weight"]
        size = target_norm.shape[0]
        weight = weight.to(target_norm.dtype)
        stage_losses = []
        for t, stage in enumerate(self.stages):
            mu, sigma = outputs["mu"][t], outputs["sigma"][t]
            if cfg.loss_type == "mle":
                per_keypoint = self._mle(stage.flow, mu, sigma, target_norm)
            elif cfg.loss_type == "integral_l1":
                per_keypoint = (mu - target_norm).abs().sum(dim=-1)
            else:
                logits = outputs["heatmaps"][t]
                target_maps = gaussian_heatmaps(target_norm, (logits.shape[-1], logits.shape[-2]), cfg.heatmap_sigma_px)
                per_keypoint = ((logits - target_maps) ** 2).mean(dim=(-2, -1))
            stage_losses.append((per_keypoint * weight).sum() / size)
        terms = {f"loss_stage{t + 1}": value for t, value in enumerate(stage_losses)}
        terms["loss"] = torch.stack(stage_losses).sum()
        return terms

    def _mle(self, flow: RealNVP, mu: Tensor, sigma: Tensor, target: Tensor) -> Tensor:
        """Per-keypoint NLL [B,K]: sum_axes (-log p_flow(eps) + log sigma), eps = (target - mu) / sigma (Eqs. 3-6).

        flow_term per_axis counts -log p_flow(eps) on each axis, as RLE's RegressFlow does (Li et al., 2021,
        "Human Pose Regression with Residual Log-likelihood Estimation": nf_loss = log sigma - log phi, [B,K,2]);
        per_keypoint counts it once. residual mode adds RLE's Laplace term per axis (its RLELoss.logQ):
        -log Q = log(sigma * sqrt(2 pi)) + |target - mu| / (sqrt(2) sigma)
        (tests/unit/test_models_handmle.py::test_residual_log_q_matches_rle_by_hand).
        """
        eps = (target - mu) / sigma
        log_p = flow.log_prob(eps.reshape(-1, 2)).reshape(eps.shape[:-1])
        flow_count = 2.0 if self.config.flow_term == "per_axis" else 1.0
        nll = -flow_count * log_p + sigma.log().sum(dim=-1)
        if self.config.flow_mode == "residual":
            minus_log_q = sigma.log() + HALF_LOG_TWO_PI + (target - mu).abs() / (math.sqrt(2) * sigma + SIGMA_EPS)
            nll = nll + minus_log_q.sum(dim=-1)
        return nll

    def loss_description(self) -> str:
        """What this model trains with, in words (metrics.json's `loss`, the family report)."""
        cfg = self.config
        if cfg.loss_type == "integral_l1":
            return "integral_l1 (L1 on soft-argmax coordinates, summed over stages; Sun et al., 2018)" + self._method_suffix()
        if cfg.loss_type == "heatmap_l2":
            return f"heatmap_l2 (MSE to Gaussian heatmaps, sigma {cfg.heatmap_sigma_px} cells, summed over stages)" + self._method_suffix()
        form = "residual (RLE's log Q + flow)" if cfg.flow_mode == "residual" else "direct (Eq. 4)"
        return (
            f"mle {form}, RealNVP {cfg.flow_couplings} couplings per stage, flow term {cfg.flow_term.replace('_', ' ')}, "
            f"sigma {cfg.sigma_activation}, summed over {cfg.stage_count} stages"
        ) + self._method_suffix()

    def _method_suffix(self) -> str:
        return {
            "sequential": "",
            "regression": "; RLE-style direct regression from pooled backbone features (Li et al., 2021)",
            "integral": "; one integral-regression head (Sun et al., 2018)",
            "cpm": f"; CPM-style stages, {self.config.cpm_body_layers} 3x3 convs each (Wei et al., 2016)",
        }[self.config.method]

    @torch.no_grad()
    def predict_stages(self, images: Tensor) -> Tensor:
        """images [B,3,S,S] normalised -> every stage's coords [T,B,K,2] in input pixels (eval mode)."""
        was_training = self.training
        self.eval()
        try:
            mu = self(images)["mu"]
        finally:
            self.train(was_training)
        return to_pixels(mu, self.config.input_size)

    @torch.no_grad()
    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images [B,3,S,S] normalised -> (final-stage coords [B,K,2] in input pixels, scores [B,K] in [0,1]).

        Score: mle (and method regression) -> 1 - mean sigma (RLE); heatmap_l2 -> heatmap peak; integral_l1 -> softmax mass in 3x3 around the peak.
        """
        was_training = self.training
        self.eval()
        try:
            outputs = self(images)
        finally:
            self.train(was_training)
        mu, sigma = outputs["mu"][-1], outputs["sigma"][-1]
        if self.config.loss_type == "mle" or "heatmaps" not in outputs:
            scores = 1 - sigma.mean(dim=-1)
        elif self.config.loss_type == "heatmap_l2":
            scores = argmax_decode(outputs["heatmaps"][-1])[1]
        else:
            local_mass = F.avg_pool2d(spatial_softmax(outputs["heatmaps"][-1]), 3, stride=1, padding=1) * 9
            scores = local_mass.flatten(2).max(dim=-1).values
        return to_pixels(mu, self.config.input_size), scores.clamp(0, 1)



@register_model("handmle", Config, PRESETS, inference={"crop_margin": 1.25, "flip_test": False})
def build(config: Config) -> HandMLE:
    return HandMLE(config)
