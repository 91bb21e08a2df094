"""vmhpe: bottom-up multi-person 2D pose (COCO-17), CID + MFCM + MFFM on HRNet.

Zhang, He, Wu, "VMHPE: Human Pose Estimation for Virtual Maintenance Tasks", 2025.

    images [B,3,H,W] --HRNet--> 4 branches --concat at 1/4--> F [B,D,h,w]    (D = 15w: 480 for W32)
    F --MFCM (opt.)--> F
    IRL:    heatmaps = sigmoid(1x1(F)) [B,K+1,h,w]         (K keypoints + person centre)
            f_i = F[img_i, :, centre_i]  [N,D]                (GT centres +-1 cell jitter in training)
    global  G = ReLU(BN(1x1(F))) [B,E,h,w]                    (E = embed_dim)
    MFFM (opt.): X = MFFM(G, G at 1/2) [B,E,h,w]            (once per image)
    per instance i: F^i = ReLU(1x1([ChannelAtt(G_img, f_i); SpatialAtt(G_img, f_i, centre_i)])) [N,E,h,w]
    KE:     H^i = sigmoid(head([F^i; X_img])) [N,K,h,w]     (head: 1x1 conv `cid` or U-Net `unet`)
    loss:   L(heatmaps) * 1 + L(H^i) * 4 + InfoNCE(f_i, f_i+) * lambda_c (+ L1 on attention gates); L = focal
            (CornerNet, / positives) or MSE summed over keypoints and cells, / instances (Eq. 29)
    components: none | mfcm | mffm | both on the VMHPE attentions (Eqs. 1-10); `cid` is CID itself (Wang, Zhang,
            2022): plain 1x1 reduction, CID's gating channel attention and single spatial mask, in-image
            contrastive loss at tau 0.05, weight 1 (the Table 3 / Table 6 baseline)
    predict: centre NMS -> top-k proposals -> H^i -> argmax + sub-cell refine -> input pixels (flip test opt.)

Targets come from `poseops.codecs.bottomup.encode_targets` (call with `target_kwargs(config)`).
Images fed to `forward` are already normalised (see `preprocess`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from poseops.codecs.bottomup import decode_instances, find_centres, flip_back, peak_mask
from poseops.models import register_model
from poseops.models.blocks.images import IMAGE_MEAN, IMAGE_STD, preprocess  # noqa: F401 (re-exported)
from poseops.models.blocks.attention import (
    MFCM,
    MFFM,
    CIDChannelAttention,
    CIDSpatialAttention,
    InstanceChannelAttention,
    InstanceSpatialAttention,
    prior_bias,
)
from poseops.models.blocks.hrnet import HRNetConfig, HRNetTrunk, concat_branches, load_pretrained
from poseops.skeletons import get_skeleton

PROB_EPS = 1e-4  # CID clamps sigmoid outputs to [1e-4, 1 - 1e-4]
# CID's own loss and width (Wang, Zhang, 2022, public code: ContrastiveLoss(temperature=0.05) within each image,
# weight 1; GFD channels 32): `components: cid` takes these (tests/unit/test_models_vmhpe.py::test_cid_is_cids_own)
CID_LOSS = {"contrastive": "image", "temperature": 0.05, "contrastive_w": 1.0}
CID_EMBED_DIM = 32


class Config(HRNetConfig):
    """HRNetConfig's trunk fields (official W32 = 32 / 64 / 4 / (1, 4, 3)) and checks, then VMHPE's."""

    input_size: int = Field(512, ge=32, description="square training crop side S (px); heatmaps are S/4")
    # VMHPE modules
    components: Literal["cid", "none", "mfcm", "mffm", "both"] = "both"  # Table 6 grid; cid = CID itself
    embed_dim: int = Field(16, ge=1, description="E: GFD width (paper best 16; CID 32)")
    spatial_hidden: int = Field(16, ge=1, description="3x3 conv width in the spatial attention gate")
    mfcm_scales: tuple[int, ...] = (1, 2)
    mfcm_reduction: int = Field(16, ge=1, description="SE reduction r")
    mfcm_lambda_init: float = 0.5
    mffm_inputs: Literal["scales", "cs_branches"] = "scales"  # G at 1 and 1/2 (once per image) or the per-instance c/s outputs
    mffm_kernels: tuple[int, ...] = (3, 5, 7)
    mffm_max_kv: int = Field(32, ge=1, description="key/value tokens pooled to at most this side")
    ke_type: Literal["cid", "unet"] = "cid"
    ke_widths: tuple[int, ...] = (64, 128, 256, 512)
    # loss
    # focal by default: CID's loss, and the paper's second total loss (L_hm, a focal variant, + lambda_c L_cl);
    # mse is its Eq. 29, summed over keypoints and cells per map. The two differ in scale, and lambda_c is
    # not rescaled between them: measured on the smoke model at initialisation (4 batches of 8 128-px
    # windows), multi/instance heatmap terms are 6.0/4.5 with focal and 367/189 with Eq. 29's sum, against a
    # contrastive term of 0.30 (benchmarks/vmhpe_loss_scale.py), so lambda_c 0.1 gives it 0.12 % of the
    # loss under focal and 0.003 % under Eq. 29's sum, ~47x less. Both are per-map sums (a per-pixel mean
    # would divide the MSE terms by h*w); the t5_contrastive grid compares lambda_c 0.1 with 0 under the
    # heatmap loss in use.
    heatmap_loss: Literal["focal", "mse"] = "focal"
    multi_heatmap_w: float = Field(1.0, ge=0)
    instance_heatmap_w: float = Field(4.0, ge=0)
    contrastive_w: float = Field(0.1, ge=0, description="lambda_c")
    temperature: float = Field(0.07, gt=0, description="tau")
    contrastive: Literal["batch", "image"] = "batch"  # image = CID's in-image form (0 for one person)
    attn_l1_w: float = Field(0.0, ge=0, description="lambda_s: L1 on the attention gates")
    centre_jitter: int = Field(1, ge=0, description="training: instance features sampled +-this many cells off the centre")
    max_instances: int = Field(200, ge=1)
    # targets (pass to encode_targets via target_kwargs)
    sigma: float = Field(2.0, gt=0, description="keypoint Gaussian sigma, heatmap cells")
    centre_sigma: float = Field(4.0, gt=0)
    min_person_area: float = Field(32.0**2, ge=0, description="keypoint-box area (input px^2) below which a person gets no centre")
    # decoding
    max_people: int = Field(30, ge=1)
    centre_threshold: float = Field(0.01, ge=0)
    nms_kernel: int | None = Field(None, description="None: CID's rule from the map size")
    refine: Literal["quadratic", "quarter", "none"] = "quadratic"

    @model_validator(mode="before")
    @classmethod
    def _cid_defaults(cls, values: Any) -> Any:
        """`components: cid` takes CID's loss and width where they are not given."""
        if isinstance(values, dict) and values.get("components") == "cid":
            return {"embed_dim": CID_EMBED_DIM, **CID_LOSS, **values}
        return values

    @model_validator(mode="after")
    def _check(self) -> "Config":
        if self.components == "cid":
            wrong = {k: getattr(self, k) for k, v in CID_LOSS.items() if getattr(self, k) != v}
            if wrong:
                raise ValueError(
                    f"components 'cid' is CID's own network and loss (Wang, Zhang, 2022): it needs {CID_LOSS}, "
                    f"got {wrong}; use components 'none' for VMHPE's attentions without MFCM/MFFM"
                )
        if not self.mfcm_scales or min(self.mfcm_scales) < 1:
            raise ValueError(f"mfcm_scales must be positive integers, got {self.mfcm_scales}")
        if not self.ke_widths:
            raise ValueError("ke_widths must name at least one level")
        return self

    @property
    def use_mfcm(self) -> bool:
        return self.components in ("mfcm", "both")

    @property
    def use_mffm(self) -> bool:
        return self.components in ("mffm", "both")


PRESETS: dict[str, dict] = {
    # the paper's network: HRNet-W32 (Zhang, He, Wu, 2025, Table 3; official layout), 512 input, 128 heatmaps,
    # E=16, MFCM + MFFM, U-Net KE (tests/unit/test_models_vmhpe.py::test_paper_preset_is_hrnet_w32_at_512)
    # KE: the U-Net of Eq. 32 (encoder to /8 and 512 channels, decoder with skips)
    "paper": dict(input_size=512, width=32, stem_width=64, blocks=4, modules=(1, 4, 3), components="both",
                  embed_dim=16, ke_type="unet", ke_widths=(64, 128, 256, 512)),
    # same code on 2 CPU cores: HRNet-W16, one block per branch, one module per stage, 128 input
    # (32x32 heatmaps; ~0.43 s per batch-8 training step on 2 threads), K/V of MFFM pooled to 16x16
    "smoke": dict(input_size=128, width=16, stem_width=32, blocks=1, modules=(1, 1, 1), components="both",
                  embed_dim=16, ke_type="cid", ke_widths=(16, 32, 64, 128), mffm_max_kv=16, min_person_area=16.0**2),
    # unit tests
    "tiny": dict(input_size=64, width=4, stem_width=8, blocks=1, modules=(1, 1, 1), components="both",
                 embed_dim=8, spatial_hidden=4, ke_widths=(8, 16), mffm_max_kv=8, min_person_area=4.0**2),
}


def target_kwargs(config: Config, window: int | None = None) -> dict:
    """Keyword arguments of `encode_targets` that must match the model: sizes, sigmas, min area.

    window: the side of the training squares when training on windows of the input (heatmaps window/4).
    """
    side = window or config.input_size
    return dict(input_size=side, heatmap_size=side // 4, sigma=config.sigma,
                centre_sigma=config.centre_sigma, min_person_area=config.min_person_area)


def probabilities(logits: Tensor) -> Tensor:
    return torch.sigmoid(logits).clamp(PROB_EPS, 1 - PROB_EPS)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """2 x (3x3 conv, BN, ReLU)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
    )


class UNetHead(nn.Module):
    """KE `unet` (Eq. 32): encoder of conv blocks with 2x max-pool between levels, decoder upsample +
    skip concat + conv block, 1x1 to K logits. widths (64, 128, 256, 512) = /8 at the bottom."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], out_channels: int):
        super().__init__()
        self.down = nn.ModuleList([conv_block(c_in, c_out) for c_in, c_out in zip((in_channels,) + widths[:-1], widths)])
        self.up = nn.ModuleList([conv_block(widths[i] + widths[i - 1], widths[i - 1]) for i in range(len(widths) - 1, 0, -1)])
        self.out = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for index, block in enumerate(self.down):
            x = block(x if index == 0 else F.max_pool2d(x, 2, ceil_mode=True))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], dim=1))
        return self.out(x)


class VMHPE(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        k, e = config.num_keypoints, config.embed_dim
        self.flip_permutation = get_skeleton(config.skeleton).flip_permutation()
        self.backbone = HRNetTrunk(config.width, config.stem_width, config.blocks, config.modules)
        if config.pretrained:
            load_pretrained(self.backbone, config.pretrained)
        d = sum(self.backbone.out_channels)
        self.feature_dim = d
        self.mfcm = MFCM(d, config.mfcm_scales, config.mfcm_reduction, config.mfcm_lambda_init) if config.use_mfcm else None
        self.irl = nn.Conv2d(d, k + 1, 1)  # K keypoints + centre
        if config.components == "cid":  # CID's GFD: plain 1x1 reduction, gating channel attention, one spatial mask
            self.conv_down = nn.Conv2d(d, e, 1)
            self.channel_attention = CIDChannelAttention(d, e)
            self.spatial_attention = CIDSpatialAttention(d, e)
        else:
            self.conv_down = nn.Sequential(nn.Conv2d(d, e, 1, bias=False), nn.BatchNorm2d(e), nn.ReLU(inplace=True))
            self.channel_attention = InstanceChannelAttention(d, e)
            self.spatial_attention = InstanceSpatialAttention(d, e, config.spatial_hidden)
        self.mffm = MFFM(e, config.mffm_kernels, config.mffm_max_kv) if config.use_mffm else None
        cs_fusion = self.mffm is not None and config.mffm_inputs == "cs_branches"
        self.fuse = None if cs_fusion else nn.Conv2d(2 * e, e, 1)
        ke_in = 2 * e if (self.mffm is not None and not cs_fusion) else e
        self.ke = nn.Conv2d(ke_in, k, 1) if config.ke_type == "cid" else UNetHead(ke_in, config.ke_widths, k)
        nn.init.constant_(self.irl.bias, prior_bias(0.01))
        nn.init.constant_((self.ke if isinstance(self.ke, nn.Conv2d) else self.ke.out).bias, prior_bias(0.01))

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """uint8 RGB [B,H,W,3] or [B,3,H,W] -> the normalised float batch `forward` takes."""
        return preprocess(images)

    # ------------------------------------------------------------------ per image

    def target_kwargs(self, window: int | None = None) -> dict:
        """`encode_targets` keyword arguments that match this model (see `target_kwargs`)."""
        return target_kwargs(self.config, window)

    def forward(self, images: Tensor, targets: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """images [B,3,H,W] normalised (H, W multiples of 32) -> raw outputs:

        heatmaps [B,K+1,h,w] probabilities (channel K = centres), features [B,D,h,w], global [B,E,h,w],
        fused [B,E,h,w] (MFFM on scales only). With `targets` (from encode_targets) also the instance
        branch: instance_heatmaps [N,K,h,w], instance_index [N], instance_features/positives [N,D], attention_l1 [].
        """
        features = concat_branches(self.backbone(images))
        if self.mfcm is not None:
            features = self.mfcm(features)
        global_maps = self.conv_down(features)
        out = {"heatmaps": probabilities(self.irl(features)), "features": features, "global": global_maps}
        if self.mffm is not None and self.config.mffm_inputs == "scales":
            half = F.interpolate(global_maps, scale_factor=0.5, mode="bilinear", align_corners=False)
            out["fused"] = self.mffm(global_maps, half)
        if targets is not None:
            out.update(self.instance_outputs(out, targets))
        return out

    # ------------------------------------------------------------------ per instance

    def instance_heatmaps(self, out: dict[str, Tensor], image: Tensor, centres: Tensor, instance: Tensor) -> tuple[Tensor, Tensor]:
        """image [N] long, centres [N,2] (y,x) cells, instance [N,D] -> (heatmaps [N,K,h,w], mean |attention gate| [])."""
        global_maps = out["global"][image]
        channel, channel_gates = self.channel_attention(global_maps, instance)
        spatial, spatial_gate = self.spatial_attention(global_maps, instance, centres)
        if self.fuse is None:  # MFFM fuses the channel- and spatial-attention branches
            individual = self.mffm(channel, spatial)
        else:
            individual = F.relu(self.fuse(torch.cat([channel, spatial], dim=1)))
        if "fused" in out:
            individual = torch.cat([individual, out["fused"][image]], dim=1)
        attention_l1 = (channel_gates.abs().mean() + spatial_gate.abs().mean()) / 2
        return probabilities(self.ke(individual)), attention_l1

    def instance_outputs(self, out: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """Training branch: GT centres (capped at max_instances, jittered in training) -> instance heatmaps.

        instance_index [N] rows of the targets used; instance_features / instance_positives [N,D]: the
        feature at two independent jitters of the same centre (the InfoNCE pair).
        """
        features = out["features"]
        device = features.device
        image = targets["instance_image"].to(device)
        coords = targets["instance_coords"].to(device)
        index = torch.arange(len(image), device=device)
        if len(index) > self.config.max_instances:
            index = torch.randperm(len(index), device=device)[: self.config.max_instances].sort().values
        image, coords = image[index], coords[index]
        anchor, positive = self._jitter(coords, features.shape[-2:]), self._jitter(coords, features.shape[-2:])
        anchor_vec = sample_features(features, image, anchor)
        positive_vec = sample_features(features, image, positive)
        heatmaps, attention_l1 = self.instance_heatmaps(out, image, anchor, anchor_vec)
        return {"instance_heatmaps": heatmaps, "instance_index": index, "instance_features": anchor_vec,
                "instance_positives": positive_vec, "attention_l1": attention_l1}

    def _jitter(self, coords: Tensor, size: torch.Size) -> Tensor:
        if not self.training or self.config.centre_jitter == 0 or len(coords) == 0:
            return coords
        j = self.config.centre_jitter
        moved = coords + torch.randint(-j, j + 1, coords.shape, device=coords.device)
        return torch.stack([moved[:, 0].clamp(0, size[0] - 1), moved[:, 1].clamp(0, size[1] - 1)], dim=1)

    # ------------------------------------------------------------------ loss

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Weighted sum of the multi heatmap loss, the instance heatmap loss, InfoNCE and the gate L1.

        outputs from `forward` (with or without targets); batch["targets"] from `encode_targets`.
        Returns the named terms {"loss_multi", "loss_instance", "loss_contrastive", "loss_attention", "loss"
        (the weighted sum, the one to minimise)} as tensors.
        """
        cfg = self.config
        targets = batch["targets"]
        if "instance_heatmaps" not in outputs:
            outputs = {**outputs, **self.instance_outputs(outputs, targets)}
        device = outputs["heatmaps"].device
        multi = heatmap_loss(outputs["heatmaps"], targets["heatmaps"].to(device), targets["heatmap_weight"].to(device), cfg.heatmap_loss)
        index = outputs["instance_index"]
        zero = outputs["heatmaps"].sum() * 0
        if len(index):
            weight = targets["instance_weight"].to(device)[index][..., None, None]
            instance = heatmap_loss(outputs["instance_heatmaps"], targets["instance_heatmaps"].to(device)[index], weight, cfg.heatmap_loss)
            image = targets["instance_image"].to(device)[index]
            contrastive = info_nce(outputs["instance_features"], outputs["instance_positives"], image, cfg.temperature, cfg.contrastive)
            attention = outputs["attention_l1"]
        else:
            instance = contrastive = attention = zero
        parts = {"loss_multi": multi, "loss_instance": instance, "loss_contrastive": contrastive, "loss_attention": attention}
        total = (cfg.multi_heatmap_w * multi + cfg.instance_heatmap_w * instance
                 + cfg.contrastive_w * contrastive + cfg.attn_l1_w * attention)
        return {**parts, "loss": total}

    def loss_description(self) -> str:
        """What this model trains with, in words (metrics.json's `loss`, the family report)."""
        cfg = self.config
        heatmap = "focal (CornerNet, / positives)" if cfg.heatmap_loss == "focal" else "MSE summed per Eq. 29"
        contrast = "in-image" if cfg.contrastive == "image" else "in-batch"
        return (
            f"{heatmap}: multi x{cfg.multi_heatmap_w:g} + instance x{cfg.instance_heatmap_w:g}; {contrast} InfoNCE "
            f"tau {cfg.temperature:g} x{cfg.contrastive_w:g}; attention L1 x{cfg.attn_l1_w:g}; components "
            f"{cfg.components}, E {cfg.embed_dim}, KE {cfg.ke_type}"
        )

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def predict(self, images: Tensor, flip_test: bool = False) -> list[dict[str, Tensor]]:
        """images [B,3,H,W] normalised -> per image dict(keypoints [P,K,2] input px, keypoint_scores [P,K], scores [P]).

        Centre map (averaged with the mirrored image's when flip_test) -> smooth, max-pool NMS, top
        `max_people` above `centre_threshold` -> instance heatmaps (flip test: also from the mirrored
        image at mirrored centres, mirrored back and left/right swapped, then averaged) -> decode.
        """
        cfg = self.config
        was_training = self.training
        self.eval()
        try:
            out = self(images)
            out_flip = self(images.flip(-1)) if flip_test else None
            k = cfg.num_keypoints
            centre_maps = out["heatmaps"][:, k]
            if out_flip is not None:
                centre_maps = (centre_maps + out_flip["heatmaps"][:, k].flip(-1)) / 2
            proposals = [find_centres(c, cfg.max_people, cfg.centre_threshold, cfg.nms_kernel) for c in centre_maps]
            image = torch.cat([torch.full((len(c),), b, dtype=torch.long, device=images.device) for b, (c, _) in enumerate(proposals)])
            coords = torch.cat([c for c, _ in proposals])
            scores = torch.cat([s for _, s in proposals])
            h, w = centre_maps.shape[-2:]
            if len(coords):
                heatmaps, _ = self.instance_heatmaps(out, image, coords, sample_features(out["features"], image, coords))
                if out_flip is not None:
                    mirrored = torch.stack([coords[:, 0], w - 1 - coords[:, 1]], dim=1)
                    flipped, _ = self.instance_heatmaps(out_flip, image, mirrored, sample_features(out_flip["features"], image, mirrored))
                    heatmaps = (heatmaps + flip_back(flipped, self.flip_permutation)) / 2
                keypoints, keypoint_scores, pose_scores = decode_instances(heatmaps, scores, (images.shape[-1], images.shape[-2]), cfg.refine)
            else:
                keypoints = images.new_zeros(0, k, 2)
                keypoint_scores, pose_scores = images.new_zeros(0, k), images.new_zeros(0)
        finally:
            self.train(was_training)
        return [{"keypoints": keypoints[image == b], "keypoint_scores": keypoint_scores[image == b], "scores": pose_scores[image == b]}
                for b in range(images.shape[0])]


def sample_features(features: Tensor, image: Tensor, coords: Tensor) -> Tensor:
    """features [B,D,h,w], image [N], coords [N,2] (y,x) -> the feature vectors [N,D] at those cells."""
    return features[image, :, coords[:, 0], coords[:, 1]]


def focal_loss(pred: Tensor, target: Tensor, weight: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CornerNet focal loss (CID): positives = each Gaussian's peak cell (`peak_mask`), negatives weighted
    by (1 - target)^beta; summed and divided by the number of positives. pred/target [..., h, w], weight broadcastable."""
    positive = peak_mask(target) * weight
    negative = (1 - peak_mask(target)) * weight
    pos_loss = (torch.log(pred) * (1 - pred) ** alpha * positive).sum()
    neg_loss = (torch.log(1 - pred) * pred**alpha * (1 - target) ** beta * negative).sum()
    return -(pos_loss + neg_loss) / positive.sum().clamp(min=1)


def heatmap_loss(pred: Tensor, target: Tensor, weight: Tensor, kind: str) -> Tensor:
    """pred/target [N,K,h,w], weight broadcastable. focal: CornerNet's, / positives (CID). mse: Eq. 29 of Zhang,
    He, Wu (2025), (1/N) sum_i sum_j ||H_ij - H^_ij||^2, squared errors summed over keypoints and cells and
    averaged over the N maps (images or instances), so its scale against the contrastive term is the paper's
    (tests/unit/test_models_vmhpe.py::test_mse_heatmap_loss_sums_per_eq_29)."""
    if kind == "focal":
        return focal_loss(pred, target, weight)
    return ((pred - target) ** 2 * weight.expand_as(pred)).sum() / max(pred.shape[0], 1)


def info_nce(anchors: Tensor, positives: Tensor, image: Tensor, temperature: float, kind: str) -> Tensor:
    """InfoNCE over L2-normalised instance features [N,D] (van den Oord, Li, Vinyals, 2018, "Representation Learning
    with Contrastive Predictive Coding", Eq. 4; CID's instance contrast: Wang, Zhang, 2022, "Contextual Instance
    Decoupling for Robust Multi-Person Pose Estimation", CVPR).

    batch: logits = a . p^T / tau over every instance in the batch, cross-entropy toward the diagonal
    (positive = the same person at a second jitter; negatives = all other people in the batch).
    image: CID's form, a . a^T / tau within each image (exactly 0 for an image with one person).
    """
    a = F.normalize(anchors, dim=1)
    if kind == "batch":
        p = F.normalize(positives, dim=1)
        logits = a @ p.t() / temperature
        return F.cross_entropy(logits, torch.arange(len(a), device=a.device))
    total = a.new_zeros(())
    for b in image.unique():
        rows = a[image == b]
        total = total + F.cross_entropy(rows @ rows.t() / temperature, torch.arange(len(rows), device=a.device), reduction="sum")
    return total / len(a)



@register_model("vmhpe", Config, PRESETS, inference={"input_size": None, "flip_test": True})
def build(config: Config) -> VMHPE:
    return VMHPE(config)
