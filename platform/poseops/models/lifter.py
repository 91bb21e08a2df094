"""2D -> 3D lifter: PoseFormer's spatial-then-temporal transformer with CrossFormer's SA and TA modules.

Zheng, Zhu, Mendieta, Yang, Chen, Ding, 2021, "3D Human Pose Estimation with Spatial and Temporal
Transformers" (PoseFormer, ICCV): per-frame joint tokens (Linear 2 -> D, spatial position embedding)
through L_s spatial blocks; each frame flattened to one token of J*D (temporal position embedding)
through L_t temporal blocks; the regression head is LN, a learned weighted mean over frames (Conv1d
T -> 1, k = 1), LN and Linear(J*D -> J*3) (its Sec. 3.2), giving the centre frame's root-relative 3D.

Hassanin, Khamiss, Bennamoun, Boussaid, Radwan, 2022, "CrossFormer: Cross Spatio-Temporal Transformer
for 3D Human Pose Estimation" (arXiv 2203.13387):
- SA (its cross-joint interaction, Eq. 3: P = Conv(Norm(GELU(Conv(P)))) + P): pre-LN, then two
  convolutions along the joint axis (kernel 5; depth-wise, groups = D, by default, or full), GELU between,
  GroupNorm, scaled by a LayerScale gamma (Touvron et al. 2021, "Going deeper with image transformers").
- TA (its cross-frame interaction, Eqs. 7-9): Q, K, V projections of every frame token to `ta_dim`,
  the frame correlation C = Q K^T / (ta_dim * T) (a bilinear outer product, no softmax unless
  `ta_softmax`), Z' = C V projected back to J*D, GroupNorm, LayerScale, residual. Every weight acts per
  frame, so the same module runs at any T (tests/unit/test_lifter_model.py).
Both sit at `pre_msa`, `post_msa` (the paper's choice) or `post_mlp` of their blocks.

`head = "seq2seq"` regresses every frame (Zhang, Wu, Zhang, Yang, Chen, Ding, 2022, "MixSTE", CVPR),
where the loss may add the temporal-consistency and velocity terms of MixSTE (Eq. 8 of the paper this
family follows: L = L_mpjpe + lambda_t L_t + lambda_m L_m).

Inputs [B, T, J, 2] are normalised as VideoPose3D (Pavllo, Feichtenhofer, Grangier, Auli, 2019, "3D
human pose estimation in video with temporal convolutions and semi-supervised training"):
x' = 2x/w - 1, y' = 2y/w - h/w (`normalize_screen`). Outputs are root-relative camera-frame mm.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from poseops.models import register_model
from poseops.skeletons import H36M17

Position = Literal["pre_msa", "post_msa", "post_mlp"]


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    num_joints: int = Field(17, ge=1)
    frames: int = Field(81, ge=1, description="T: input frames per window (odd: a centre frame)")
    embed_dim: int = Field(32, ge=2, description="D per joint; temporal tokens are J*D wide")
    spatial_depth: int = Field(4, ge=0)
    temporal_depth: int = Field(4, ge=0)
    num_heads: int = Field(8, ge=1)
    mlp_ratio: float = Field(2.0, gt=0)
    qkv_bias: bool = True
    drop_rate: float = Field(0.0, ge=0, lt=1)
    attn_drop_rate: float = Field(0.0, ge=0, lt=1)
    drop_path_rate: float = Field(0.1, ge=0, lt=1, description="stochastic depth (PoseFormer: 0.1)")
    sa: bool = Field(True, description="CrossFormer's SA in every spatial block")
    ta: bool = Field(True, description="CrossFormer's TA in every temporal block")
    sa_pos: Position = "post_msa"
    ta_pos: Position = "post_msa"
    sa_kernel: int = Field(5, ge=1)
    sa_depthwise: bool = Field(
        True, description="SA convolutions depth-wise (groups = D), else full"
    )
    ta_dim: int = Field(32, ge=1, description="TA's Q/K/V width")
    ta_softmax: bool = Field(False, description="softmax(QK^T/sqrt(d)) instead of QK^T/(d*T)")
    layer_scale_init: float = Field(1e-5, gt=0)
    head: Literal["seq2frame", "seq2seq"] = "seq2frame"
    lambda_t: float = Field(0.0, ge=0, description="temporal-consistency loss weight (seq2seq)")
    lambda_m: float = Field(0.0, ge=0, description="velocity (MPJVE) loss weight (seq2seq)")
    flip_augment: bool = Field(True, description="train-time horizontal flip with L/R swap")
    target_scale_mm: float = Field(1000.0, gt=0, description="targets are mm / this while training")
    head_init_std: float = Field(
        1e-3, gt=0, description="SD of the output Linear's initial weights (its bias starts at 0)"
    )


PRESETS: dict[str, dict] = {
    # PoseFormer's size (D = 32, 4 + 4 blocks, 8 heads, MLP ratio 2) with SA and TA: the ~9.86M of Table IX
    "paper": {"frames": 81},
    # fits the smoke budget on 2 CPU cores (tests/slow/test_lifter_learns.py)
    "smoke": {
        "frames": 27,
        "embed_dim": 16,
        "spatial_depth": 2,
        "temporal_depth": 2,
        "num_heads": 4,
        "ta_dim": 16,
        "drop_path_rate": 0.0,
    },
    "tiny": {
        "frames": 9,
        "embed_dim": 8,
        "spatial_depth": 1,
        "temporal_depth": 1,
        "num_heads": 2,
        "ta_dim": 8,
        "drop_path_rate": 0.0,
    },
}

# H36M-17 left/right pairs (poseops.skeletons.H36M17): left [4, 5, 6, 11, 12, 13], right [1, 2, 3, 14, 15, 16]
FLIP_PERMUTATION = H36M17.flip_permutation()


def normalize_screen(xy: Tensor, width: Tensor, height: Tensor) -> Tensor:
    """Pixels [..., 2] -> VideoPose3D screen coordinates (x' = 2x/w - 1, y' = 2y/w - h/w); width and
    height broadcast against xy[..., 0]."""
    return torch.stack([2 * xy[..., 0] / width - 1, 2 * xy[..., 1] / width - height / width], -1)


def flip_2d(x: Tensor, permutation) -> Tensor:
    """Normalised 2D [..., J, 2] mirrored about the image's vertical centre line, L/R swapped."""
    x = x[..., list(permutation), :].clone()
    x[..., 0] = -x[..., 0]
    return x


def flip_3d(y: Tensor, permutation) -> Tensor:
    """Camera-frame 3D [..., J, 3] mirrored in x (the camera's y-z plane), L/R swapped."""
    y = y[..., list(permutation), :].clone()
    y[..., 0] = -y[..., 0]
    return y


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016, "Deep Networks with Stochastic Depth")."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= self.p
        return x * keep / (1 - self.p)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1, self.fc2, self.drop = (
            nn.Linear(dim, hidden),
            nn.Linear(hidden, dim),
            nn.Dropout(drop),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017, Eq. 1 of the paper: Softmax(QK^T/sqrt(d))V)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool, attn_drop: float, drop: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop, self.drop = attn_drop, nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class SpatialAttentionModule(nn.Module):
    """CrossFormer's SA on joint tokens [N, J, D]: Z + gamma * Conv(GN(GELU(Conv(LN(Z))))) along joints."""

    def __init__(self, dim: int, kernel: int, depthwise: bool, layer_scale: float):
        super().__init__()
        groups = dim if depthwise else 1
        self.norm = nn.LayerNorm(dim)
        self.conv1 = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.group_norm = nn.GroupNorm(dim, dim)
        self.conv2 = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, z: Tensor) -> Tensor:
        p = self.norm(z).transpose(1, 2)  # [N, D, J]
        p = self.conv2(self.group_norm(F.gelu(self.conv1(p)))).transpose(1, 2)
        return z + self.gamma * p


class TemporalAttentionModule(nn.Module):
    """CrossFormer's TA on frame tokens [B, T, C]: Z + gamma * GN(W_o (C V)), C = Q K^T / (d T).

    Length-agnostic: Q, K, V and W_o act on each frame, so any T runs with the same weights."""

    def __init__(self, dim: int, inner: int, softmax: bool, layer_scale: float):
        super().__init__()
        self.inner, self.softmax = inner, softmax
        self.norm = nn.LayerNorm(dim)
        self.q, self.k, self.v = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.out = nn.Linear(inner, dim)
        self.group_norm = nn.GroupNorm(min(8, dim), dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def correlation(self, z: Tensor) -> Tensor:
        """The frame correlation [B, T, T] of tokens z [B, T, C]."""
        h = self.norm(z)
        q, k = self.q(h), self.k(h)
        if self.softmax:
            return torch.softmax(q @ k.transpose(1, 2) / self.inner**0.5, dim=-1)
        return q @ k.transpose(1, 2) / (self.inner * z.shape[1])

    def forward(self, z: Tensor) -> Tensor:
        mixed = self.correlation(z) @ self.v(self.norm(z))  # [B, T, inner]
        out = self.group_norm(self.out(mixed).transpose(1, 2)).transpose(1, 2)
        return z + self.gamma * out


class Block(nn.Module):
    """Pre-LN transformer block with an optional module at `position`."""

    def __init__(
        self, dim: int, cfg: Config, drop_path: float, module: nn.Module | None, position: str
    ):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, cfg.num_heads, cfg.qkv_bias, cfg.attn_drop_rate, cfg.drop_rate)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.drop_rate)
        self.drop_path = DropPath(drop_path)
        self.module, self.position = module, position

    def _module(self, z: Tensor, where: str) -> Tensor:
        return self.module(z) if self.module is not None and self.position == where else z

    def forward(self, z: Tensor) -> Tensor:
        z = self._module(z, "pre_msa")
        z = z + self.drop_path(self.attn(self.norm1(z)))
        z = self._module(z, "post_msa")
        z = z + self.drop_path(self.mlp(self.norm2(z)))
        return self._module(z, "post_mlp")


class PoseLifter(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.config = cfg
        J, D = cfg.num_joints, cfg.embed_dim
        C = J * D
        self.flip_permutation = FLIP_PERMUTATION if J == H36M17.num_keypoints else tuple(range(J))
        self.joint_embed = nn.Linear(2, D)
        self.spatial_pos = nn.Parameter(torch.zeros(1, J, D))
        self.temporal_pos = nn.Parameter(torch.zeros(1, cfg.frames, C))
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        depth = cfg.spatial_depth + cfg.temporal_depth
        rates = torch.linspace(0, cfg.drop_path_rate, max(depth, 1)).tolist()
        self.spatial_blocks = nn.ModuleList(
            Block(
                D,
                cfg,
                rates[i],
                SpatialAttentionModule(D, cfg.sa_kernel, cfg.sa_depthwise, cfg.layer_scale_init)
                if cfg.sa
                else None,
                cfg.sa_pos,
            )
            for i in range(cfg.spatial_depth)
        )
        self.spatial_norm = nn.LayerNorm(D)
        self.temporal_blocks = nn.ModuleList(
            Block(
                C,
                cfg,
                rates[cfg.spatial_depth + i],
                TemporalAttentionModule(C, cfg.ta_dim, cfg.ta_softmax, cfg.layer_scale_init)
                if cfg.ta
                else None,
                cfg.ta_pos,
            )
            for i in range(cfg.temporal_depth)
        )
        self.temporal_norm = nn.LayerNorm(C)
        if cfg.head == "seq2frame":
            self.weighted_mean = nn.Conv1d(cfg.frames, 1, kernel_size=1)
        self.head = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, J * 3))
        nn.init.trunc_normal_(self.spatial_pos, std=0.02)
        nn.init.trunc_normal_(self.temporal_pos, std=0.02)
        # The regression starts near the root (outputs of ~cfg.head_init_std * sqrt(J*D) target units)
        # instead of PyTorch's default Linear init, whose ~0.6 target units (~1 m a joint) the first
        # hundred steps only unlearn: the head-init scaling of Liu et al. 2022, "A ConvNet for the
        # 2020s" (head_init_scale). Measured in tests/slow/test_lifter_learns.py.
        nn.init.trunc_normal_(self.head[1].weight, std=cfg.head_init_std)
        nn.init.zeros_(self.head[1].bias)

    def preprocess(self, keypoints_norm: Tensor) -> Tensor:
        """Normalised 2D [B, T, J, 2] (see `normalize_screen`) as float32."""
        return keypoints_norm.float()

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, J, 2] normalised -> root-relative 3D in target units [B, J, 3] (seq2frame) or
        [B, T, J, 3] (seq2seq)."""
        b, t, j, _ = x.shape
        if t != self.config.frames:
            raise ValueError(f"lifter built for T = {self.config.frames} frames, got {t}")
        z = self.joint_embed(x.reshape(b * t, j, 2)) + self.spatial_pos
        z = self.pos_drop(z)
        for block in self.spatial_blocks:
            z = block(z)
        z = self.spatial_norm(z).reshape(b, t, -1) + self.temporal_pos
        z = self.pos_drop(z)
        for block in self.temporal_blocks:
            z = block(z)
        z = self.temporal_norm(z)
        if self.config.head == "seq2frame":
            return self.head(self.weighted_mean(z).squeeze(1)).reshape(b, j, 3)
        return self.head(z).reshape(b, t, j, 3)

    # ------------------------------------------------------------ loss and inference
    def loss(self, outputs: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """MPJPE (the paper's Eq. 9) on `target` (the same shape as outputs, target units), plus for
        seq2seq lambda_t * temporal consistency (mean |delta of the prediction|) and lambda_m * velocity
        error (MPJVE) as MixSTE. `weight` [B(, T), J] masks joints without 3D."""
        target = batch["target"]
        weight = batch.get("weight")
        err = torch.linalg.norm(outputs - target, dim=-1)
        if weight is None:
            weight = torch.ones_like(err)
        terms = {"mpjpe": (err * weight).sum() / weight.sum().clamp(min=1.0)}
        total = terms["mpjpe"]
        if self.config.head == "seq2seq" and outputs.shape[1] > 1:
            d_pred = outputs[:, 1:] - outputs[:, :-1]
            if self.config.lambda_t > 0:
                terms["temporal"] = torch.linalg.norm(d_pred, dim=-1).mean()
                total = total + self.config.lambda_t * terms["temporal"]
            if self.config.lambda_m > 0:
                terms["velocity"] = torch.linalg.norm(
                    d_pred - (target[:, 1:] - target[:, :-1]), dim=-1
                ).mean()
                total = total + self.config.lambda_m * terms["velocity"]
        terms["loss"] = total
        return terms

    def predict(self, x: Tensor, flip_test: bool = True) -> Tensor:
        """Root-relative 3D in mm (root set to 0) of normalised 2D [B, T, J, 2]; with `flip_test`, the
        mean of the prediction and the flipped prediction of the flipped input (VideoPose3D)."""
        with torch.no_grad():
            out = self(x)
            if flip_test:
                out = (
                    out + flip_3d(self(flip_2d(x, self.flip_permutation)), self.flip_permutation)
                ) / 2
        out = out * self.config.target_scale_mm
        return out - out[..., :1, :]


@register_model("lifter", Config, PRESETS, inference={"flip_test": True})
def build(config: Config) -> PoseLifter:
    return PoseLifter(config)
