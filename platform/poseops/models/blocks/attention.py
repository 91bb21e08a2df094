"""Attention blocks of VMHPE (Zhang, He, Wu, 2025, Sec. 3.2): instance-conditioned channel/spatial
attention (CID's GFD, modified: Eqs. 1-10), MFCM (Eqs. 11-19) and MFFM (Eqs. 20-28).

Shapes: global maps [N, C, h, w] (one row per instance after indexing by image id), instance
vectors [N, D] (D = backbone channels, 480 for W32), instance centres [N, 2] (y, x) cells.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class InstanceChannelAttention(nn.Module):
    """Eqs. 1-5. F'_inst = Linear(f_inst); W_c = sigmoid(MLP([GAP; GMP] of [F_global, F''_inst]));
    out = F_global * (1 + W_c[0]) + F'_inst * W_c[1]. MLP: 4C -> C -> 2C (hidden = C, note [REC])."""

    def __init__(self, instance_dim: int, channels: int):
        super().__init__()
        self.project = nn.Linear(instance_dim, channels)
        self.mlp = nn.Sequential(nn.Linear(4 * channels, channels), nn.ReLU(inplace=True), nn.Linear(channels, 2 * channels))

    def forward(self, global_maps: Tensor, instance: Tensor) -> tuple[Tensor, Tensor]:
        """global_maps [N,C,h,w], instance [N,D] -> (features [N,C,h,w], gates [N,2C])."""
        n, c = global_maps.shape[:2]
        inst = self.project(instance).reshape(n, c, 1, 1)
        stacked = torch.cat([global_maps, inst.expand_as(global_maps)], dim=1)  # F_cat [N,2C,h,w]
        pooled = torch.cat([stacked.mean(dim=(2, 3)), stacked.amax(dim=(2, 3))], dim=1)  # [N,4C]
        gates = torch.sigmoid(self.mlp(pooled))
        w_global, w_inst = gates[:, :c, None, None], gates[:, c:, None, None]
        return global_maps * (1 + w_global) + inst * w_inst, gates


def relative_coords(centres: Tensor, height: int, width: int, scale: float = 32.0) -> Tensor:
    """centres [N, 2] (y, x) cells -> [N, 2, h, w] (x, y) offsets of each cell from the centre / scale (CID)."""
    ys = torch.arange(height, device=centres.device, dtype=torch.float32)
    xs = torch.arange(width, device=centres.device, dtype=torch.float32)
    cy, cx = centres[:, 0].float(), centres[:, 1].float()
    dx = (cx[:, None, None] - xs[None, None, :]).expand(-1, height, width)
    dy = (cy[:, None, None] - ys[None, :, None]).expand(-1, height, width)
    return torch.stack([dx, dy], dim=1) / scale


class InstanceSpatialAttention(nn.Module):
    """Eqs. 6-10. F_feat = F_global * Linear(f_inst); W_s = sigmoid(1x1(ReLU(BN(3x3([sum_c F_feat; R])))));
    out = F_global * (1 + W_s) + F_feat * W_s (note [REC] reading of the undefined F_input/pad)."""

    def __init__(self, instance_dim: int, channels: int, hidden: int = 16, coord_scale: float = 32.0):
        super().__init__()
        self.project = nn.Linear(instance_dim, channels)
        self.gate = nn.Sequential(nn.Conv2d(3, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden),
                                  nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))
        self.coord_scale = coord_scale

    def forward(self, global_maps: Tensor, instance: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
        """global_maps [N,C,h,w], instance [N,D], centres [N,2] (y,x) -> (features [N,C,h,w], gate [N,1,h,w])."""
        n, c, h, w = global_maps.shape
        feat = global_maps * self.project(instance).reshape(n, c, 1, 1)
        coords = relative_coords(centres, h, w, self.coord_scale).to(global_maps.dtype)
        gate = torch.sigmoid(self.gate(torch.cat([feat.sum(dim=1, keepdim=True), coords], dim=1)))
        return global_maps * (1 + gate) + feat * gate, gate


class CIDChannelAttention(nn.Module):
    """CID's channel attention (Wang, Zhang, 2022, "Contextual Instance Decoupling for Robust Multi-Person Pose
    Estimation", CVPR, Sec. 3.3): the instance vector, projected to C, gates the global map channel-wise,
    out = F_global * Linear(f_inst) (no sigmoid, no residual)."""

    def __init__(self, instance_dim: int, channels: int):
        super().__init__()
        self.project = nn.Linear(instance_dim, channels)

    def forward(self, global_maps: Tensor, instance: Tensor) -> tuple[Tensor, Tensor]:
        """global_maps [N,C,h,w], instance [N,D] -> (features [N,C,h,w], gates [N,C])."""
        n, c = global_maps.shape[:2]
        gates = self.project(instance)
        return global_maps * gates.reshape(n, c, 1, 1), gates


class CIDSpatialAttention(nn.Module):
    """CID's spatial attention (Wang, Zhang, 2022, Sec. 3.3): one mask per instance,
    M = sigmoid(Conv5x5([sum_c F_global * Linear(f_inst); R])), out = F_global * M, with R the (x, y) offsets of
    each cell from the instance centre / 32."""

    def __init__(self, instance_dim: int, channels: int, coord_scale: float = 32.0):
        super().__init__()
        self.project = nn.Linear(instance_dim, channels)
        self.mask = nn.Conv2d(3, 1, 5, padding=2)
        self.coord_scale = coord_scale

    def forward(self, global_maps: Tensor, instance: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
        """global_maps [N,C,h,w], instance [N,D], centres [N,2] (y,x) -> (features [N,C,h,w], mask [N,1,h,w])."""
        n, c, h, w = global_maps.shape
        feat = global_maps * self.project(instance).reshape(n, c, 1, 1)
        coords = relative_coords(centres, h, w, self.coord_scale).to(global_maps.dtype)
        mask = torch.sigmoid(self.mask(torch.cat([feat.sum(dim=1, keepdim=True), coords], dim=1)))
        return global_maps * mask, mask


class MFCM(nn.Module):
    """Multi-scale Feature Correction Module (Eqs. 11-19) on a [B, C, h, w] map.

    For s in scales: F_s = resize(F, 1/s); F_s' = F_s + lambda_c * F_s * SE(F_s) + lambda_s * F_s * SA(F_s)
    (SE: C -> C/r -> C; SA: CBAM 7x7 over [mean_c; max_c]); out = sum_s softmax(W_g GAP(F))_s * resize(F_s', 1).
    lambda_c, lambda_s: learnable scalars (init `lambda_init`, 0.5).
    """

    def __init__(self, channels: int, scales: tuple[int, ...] = (1, 2), reduction: int = 16, lambda_init: float = 0.5):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.scales = tuple(scales)
        self.channel_gates = nn.ModuleList([
            nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)) for _ in scales
        ])
        self.spatial_gates = nn.ModuleList([nn.Conv2d(2, 1, 7, padding=3) for _ in scales])
        self.lambda_c = nn.Parameter(torch.tensor(float(lambda_init)))
        self.lambda_s = nn.Parameter(torch.tensor(float(lambda_init)))
        self.scale_logits = nn.Linear(channels, len(scales))

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        weights = self.scale_logits(x.mean(dim=(2, 3))).softmax(dim=1)  # [B, S]
        out = torch.zeros_like(x)
        for index, scale in enumerate(self.scales):
            xs = x if scale == 1 else F.interpolate(x, scale_factor=1 / scale, mode="bilinear", align_corners=False)
            a_ch = torch.sigmoid(self.channel_gates[index](xs.mean(dim=(2, 3))))[:, :, None, None]
            a_sp = torch.sigmoid(self.spatial_gates[index](torch.cat([xs.mean(dim=1, keepdim=True), xs.amax(dim=1, keepdim=True)], dim=1)))
            corrected = xs + self.lambda_c * xs * a_ch + self.lambda_s * xs * a_sp
            if scale != 1:
                corrected = F.interpolate(corrected, size=size, mode="bilinear", align_corners=False)
            out = out + weights[:, index, None, None, None] * corrected
        return out


class CrossAttention(nn.Module):
    """LN(F_q + softmax(Q K^T / sqrt(d)) V), one head, tokens = positions; K/V pooled to <= `max_kv` per side."""

    def __init__(self, channels: int, max_kv: int = 32):
        super().__init__()
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.norm = nn.LayerNorm(channels)
        self.max_kv = max_kv

    def forward(self, queries: Tensor, context: Tensor) -> Tensor:
        """queries [N,C,h,w], context [N,C,h2,w2] -> [N,C,h,w]."""
        n, c, h, w = queries.shape
        if max(context.shape[-2:]) > self.max_kv:
            context = F.adaptive_avg_pool2d(context, (min(context.shape[-2], self.max_kv), min(context.shape[-1], self.max_kv)))
        q_tokens = queries.flatten(2).transpose(1, 2)  # [N, hw, C]
        kv_tokens = context.flatten(2).transpose(1, 2)
        attended = F.scaled_dot_product_attention(self.to_q(q_tokens), self.to_k(kv_tokens), self.to_v(kv_tokens))
        return self.norm(q_tokens + attended).transpose(1, 2).reshape(n, c, h, w)


class MFFM(nn.Module):
    """Multi-scale Feature Fusion Module (Eqs. 20-28): two maps [N,C,h,w] and [N,C,h',w'] -> [N,C,h,w].

    F1ca = LN(F1 + A12 V2), F2ca = LN(F2 + A21 V1); F_red = 1x1([F1ca; resize(F2ca)]);
    F_ce = 1x1(DWSep3x3(F_red) + F_red * sigmoid(MLP(GAP(F_red))));
    out = F_ce + sum_k softmax(w)_k Conv_k(F_ce), k in {3, 5, 7}.
    """

    def __init__(self, channels: int, kernels: tuple[int, ...] = (3, 5, 7), max_kv: int = 32):
        super().__init__()
        self.attend_12 = CrossAttention(channels, max_kv)
        self.attend_21 = CrossAttention(channels, max_kv)
        self.reduce = nn.Conv2d(2 * channels, channels, 1)
        self.spatial = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.Conv2d(channels, channels, 1))
        self.channel_mlp = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True), nn.Linear(channels, channels))
        self.embed = nn.Conv2d(channels, channels, 1)
        self.multi_scale = nn.ModuleList([nn.Conv2d(channels, channels, k, padding=k // 2) for k in kernels])
        self.scale_logits = nn.Parameter(torch.zeros(len(kernels)))  # softmax -> equal weights at init

    def forward(self, f1: Tensor, f2: Tensor) -> Tensor:
        f1_ca = self.attend_12(f1, f2)
        f2_ca = self.attend_21(f2, f1)
        if f2_ca.shape[-2:] != f1.shape[-2:]:
            f2_ca = F.interpolate(f2_ca, size=f1.shape[-2:], mode="bilinear", align_corners=False)
        reduced = self.reduce(torch.cat([f1_ca, f2_ca], dim=1))
        channel = reduced * torch.sigmoid(self.channel_mlp(reduced.mean(dim=(2, 3))))[:, :, None, None]
        embedded = self.embed(self.spatial(reduced) + channel)
        weights = self.scale_logits.softmax(dim=0)
        multi = sum(weights[i] * conv(embedded) for i, conv in enumerate(self.multi_scale))
        return multi + embedded


def prior_bias(probability: float = 0.01) -> float:
    """Bias that makes a sigmoid output `probability` at init (focal-loss prior, -log((1-p)/p))."""
    return -math.log((1 - probability) / probability)
