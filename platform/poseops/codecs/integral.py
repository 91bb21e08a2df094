"""Integral regression (soft-argmax) and heatmap codecs, in normalised coordinates.

Conventions (the package's pixel convention, `poseops.codecs`)
- The centre of pixel i is x = i (OpenCV's convention); pixel i covers [i - 0.5, i + 0.5), so an
  S-wide input spans [-0.5, S - 0.5].
- Normalised coordinates `xy_norm` lie in [-0.5, 0.5] across that span: x_norm = (x_px + 0.5) / S - 0.5;
  mirroring the input (x -> S - 1 - x) is x_norm -> -x_norm.
- Heatmap cell p (0-based) of an h-wide map has its centre at (p + 0.5) / h - 0.5 (the cell centres of
  Sun, Xiao, Liang, Wei, 2018, "Integral Human Pose Regression", Eq. 2's sum over locations), which is
  input pixel (p + 0.5) * S / h - 0.5: heatmaps and inputs share one frame.
- Coordinates are (x, y) pairs in the last axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def to_norm(xy_px: Tensor, input_size: int | tuple[int, int]) -> Tensor:
    """Input-pixel coordinates [..., 2] -> normalised [..., 2] ((x + 0.5) / W - 0.5, (y + 0.5) / H - 0.5)."""
    width, height = _size(input_size)
    return (xy_px + 0.5) / xy_px.new_tensor([width, height]) - 0.5


def to_pixels(xy_norm: Tensor, input_size: int | tuple[int, int]) -> Tensor:
    """Normalised coordinates [..., 2] -> input pixels [..., 2]; inverse of `to_norm`."""
    width, height = _size(input_size)
    return (xy_norm + 0.5) * xy_norm.new_tensor([width, height]) - 0.5


def cell_centres(size: int, like: Tensor) -> Tensor:
    """Normalised centres [size] of the cells of a heatmap axis: (p + 0.5) / size - 0.5."""
    return (torch.arange(size, dtype=like.dtype, device=like.device) + 0.5) / size - 0.5


def spatial_softmax(logits: Tensor) -> Tensor:
    """Softmax over each map: [B, K, H, W] -> probabilities [B, K, H, W] summing to 1 per (b, k)."""
    b, k, h, w = logits.shape
    return logits.reshape(b, k, h * w).softmax(dim=-1).reshape(b, k, h, w)


def integrate(probs: Tensor) -> Tensor:
    """Expected cell centre under per-map probabilities [B, K, H, W] -> xy_norm [B, K, 2]."""
    x = (probs.sum(dim=2) * cell_centres(probs.shape[3], probs)).sum(dim=-1)
    y = (probs.sum(dim=3) * cell_centres(probs.shape[2], probs)).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


def soft_argmax(logits: Tensor) -> Tensor:
    """Integral regression (Lou, Lin, Zhu, Chen, 2024, "MLE-Loss Driven Robust Hand Pose Estimation", Eq. 1): heatmap logits [B, K, H, W] -> xy_norm [B, K, 2] in [-0.5, 0.5]."""
    return integrate(spatial_softmax(logits))


def argmax_decode(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """Classic heatmap decoding: argmax plus a quarter-cell shift toward the higher neighbour.

    heatmaps [B, K, H, W] (e.g. trained with MSE to Gaussian targets) -> (xy_norm [B, K, 2], peak values [B, K]).
    Not differentiable in the coordinates.
    """
    b, k, h, w = heatmaps.shape
    peaks, index = heatmaps.reshape(b, k, h * w).max(dim=-1)
    px, py = index % w, torch.div(index, w, rounding_mode="floor")
    padded = F.pad(heatmaps, (1, 1, 1, 1), mode="replicate").reshape(b, k, -1)
    row = w + 2

    def at(dx: int, dy: int) -> Tensor:
        return padded.gather(-1, ((py + 1 + dy) * row + (px + 1 + dx)).unsqueeze(-1)).squeeze(-1)

    shift_x = 0.25 * torch.sign(at(1, 0) - at(-1, 0))
    shift_y = 0.25 * torch.sign(at(0, 1) - at(0, -1))
    x = (px.to(heatmaps.dtype) + 0.5 + shift_x) / w - 0.5
    y = (py.to(heatmaps.dtype) + 0.5 + shift_y) / h - 0.5
    return torch.stack([x, y], dim=-1), peaks


def gaussian_heatmaps(
    xy_norm: Tensor, heatmap_size: int | tuple[int, int], sigma_px: float = 2.0
) -> Tensor:
    """Gaussian target maps for the heatmap-L2 baseline: xy_norm [B, K, 2] -> [B, K, H, W], peak 1.

    `sigma_px` is in heatmap cells (2 at 64x64 as in SimpleBaseline); the peak sits at the target's
    sub-cell position, so `integrate`/`argmax_decode` of the map recover it.
    """
    width, height = _size(heatmap_size)
    xs = (
        cell_centres(width, xy_norm) * width
    )  # cell centres in heatmap cells, origin at the map centre
    ys = cell_centres(height, xy_norm) * height
    dx = xs.view(1, 1, 1, width) - (xy_norm[..., 0] * width)[..., None, None]
    dy = ys.view(1, 1, height, 1) - (xy_norm[..., 1] * height)[..., None, None]
    return torch.exp(-(dx**2 + dy**2) / (2 * sigma_px**2))


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    """(width, height) from an int (square) or a (width, height) pair."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def dark_kernel(sigma: float) -> int:
    """The odd blur kernel size whose OpenCV Gaussian sigma (0.3 ((k - 1) / 2 - 1) + 0.8) is nearest the
    training target's `sigma` (heatmap cells), at least 3: 11 for sigma 2, 17 for sigma 3 (the kernels of
    mmpose's DARK configs), 5 for sigma 1."""
    half = max(1, round((sigma - 0.8) / 0.3 + 1))
    return 2 * half + 1


def dark_decode(heatmaps: Tensor, kernel: int = 11) -> tuple[Tensor, Tensor]:
    """DARK decoding (Zhang, Zhu, Dai, Ye, Zhu, 2020, "Distribution-Aware Coordinate Representation for
    Human Pose Estimation", Eqs. 5-8 and the Gaussian modulation of Sec. 3.2): blur each map with a
    Gaussian of the training sigma's width (`dark_kernel`), take the log, and refine the argmax by one
    Newton step x* = m - H^-1 D (derivative D and Hessian H by central differences at the maximum m).

    As the authors' code (and mmpose's `gaussian_blur` / `refine_keypoints_dark`): the blur pads the map
    with zeros, and the Newton step is taken only where its 5x5 stencil lies inside the map. Elsewhere
    (a peak within 2 cells of the border) the argmax gets the quarter-cell step of `argmax_decode`: the
    stencil would read replicated border cells there and step up to a whole cell the wrong way.

    heatmaps [B, K, H, W] -> (xy_norm [B, K, 2], peak values [B, K] of the raw maps).
    """
    b, k, h, w = heatmaps.shape
    peaks, index = heatmaps.reshape(b, k, h * w).max(dim=-1)
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a kernel of this size
    offsets = torch.arange(kernel, dtype=heatmaps.dtype, device=heatmaps.device) - (kernel - 1) / 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    g = g / g.sum()
    maps = heatmaps.reshape(b * k, 1, h, w)
    pad = kernel // 2
    maps = F.conv2d(F.pad(maps, (pad, pad, 0, 0)), g.view(1, 1, 1, -1))
    maps = F.conv2d(F.pad(maps, (0, 0, pad, pad)), g.view(1, 1, -1, 1))
    # keep each map's maximum as the raw one's (DARK's modulation), then the log-likelihood
    raw_max = heatmaps.reshape(b * k, -1).amax(-1).view(-1, 1, 1, 1)
    blurred_max = maps.reshape(b * k, -1).amax(-1).view(-1, 1, 1, 1)
    maps = maps * raw_max / blurred_max.clamp_min(1e-10)
    log = maps.clamp_min(1e-10).log().reshape(b, k, h, w)
    padded = F.pad(log, (2, 2, 2, 2), mode="replicate").reshape(b, k, -1)
    row = w + 4
    px, py = index % w, torch.div(index, w, rounding_mode="floor")

    def at(dx: int, dy: int) -> Tensor:
        return padded.gather(-1, ((py + 2 + dy) * row + (px + 2 + dx)).unsqueeze(-1)).squeeze(-1)

    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    dyy = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = dxx * dyy - dxy**2
    inside = (px >= 2) & (px <= w - 3) & (py >= 2) & (py <= h - 3)
    ok = inside & (det.abs() > 1e-12)
    safe = torch.where(ok, det, torch.ones_like(det))
    quarter, _ = argmax_decode(heatmaps)
    quarter_x = (quarter[..., 0] + 0.5) * w - 0.5 - px.to(heatmaps.dtype)
    quarter_y = (quarter[..., 1] + 0.5) * h - 0.5 - py.to(heatmaps.dtype)
    shift_x = torch.where(ok, (-(dyy * dx - dxy * dy) / safe).clamp(-1, 1), quarter_x)
    shift_y = torch.where(ok, (-(dxx * dy - dxy * dx) / safe).clamp(-1, 1), quarter_y)
    x = (px.to(heatmaps.dtype) + 0.5 + shift_x) / w - 0.5
    y = (py.to(heatmaps.dtype) + 0.5 + shift_y) / h - 0.5
    return torch.stack([x, y], dim=-1), peaks
