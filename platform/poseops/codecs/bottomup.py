"""Bottom-up multi-person codec (CID-style): Gaussian targets, person centres, centre NMS, decoding.

Frames (the package's pixel convention, `poseops.codecs`)
- Input pixels: the centre of pixel i is x = i (OpenCV's convention, as in the loaders). A heatmap of
  width w over an input of width W has stride s = W / w; cell c covers input [c s - 0.5, (c+1) s - 0.5)
  and its centre is input (c + 0.5) s - 0.5. So x_hm = (x_px + 0.5) / s - 0.5 is the continuous cell
  coordinate, and mirroring the map (c -> w - 1 - c) mirrors the input (x -> W - 1 - x).
- Keypoints per image: [P, K, 3] = (x, y, v) in input pixels, COCO visibility (0 = unlabelled).
- Heatmaps: [.., K, h, w]; the centre map is channel K of the "multi" maps [B, K+1, h, w].

Targets (`encode_targets`, usable in a collate_fn): multi-person keypoint + centre heatmaps and,
per person with a centre, its own keypoint heatmaps. Gaussians are centred at the sub-cell position
(peak < 1 off cell centres); focal losses take each Gaussian's peak cell as the positive
(`peak_mask`). Decoding refines the argmax with a log-parabola fit (exact on a Gaussian; `quadratic`)
or CID's quarter-cell step (`quarter`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from poseops.codecs import flip_back  # noqa: F401 (the flip test's map mirror, re-exported)

Refine = Literal["quadratic", "quarter", "none"]


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    """(width, height) from an int (square) or a (width, height) pair."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def person_centres(keypoints: Tensor) -> tuple[Tensor, Tensor]:
    """keypoints [P, K, 3] (x, y, v) -> (centres [P, 2] = mean of labelled keypoints, has_keypoints [P] bool)."""
    labelled = (keypoints[..., 2] > 0).to(keypoints.dtype)
    count = labelled.sum(dim=1)
    centres = (keypoints[..., :2] * labelled[..., None]).sum(dim=1) / count.clamp(min=1)[:, None]
    return centres, count > 0


def keypoint_box_areas(keypoints: Tensor) -> Tensor:
    """keypoints [P, K, 3] -> area [P] (input px^2) of the box around the labelled keypoints (0 if none)."""
    labelled = keypoints[..., 2] > 0
    big = torch.finfo(keypoints.dtype).max
    xy = keypoints[..., :2]
    low = torch.where(labelled[..., None], xy, xy.new_tensor(big)).amin(dim=1)
    high = torch.where(labelled[..., None], xy, xy.new_tensor(-big)).amax(dim=1)
    side = (high - low).clamp(min=0)
    return torch.where(labelled.any(dim=1), side[:, 0] * side[:, 1], side.new_zeros(()))


def gaussian_maps(
    points_hm: Tensor, valid: Tensor, heatmap_size: int | tuple[int, int], sigma: float
) -> Tensor:
    """Gaussians at continuous cell coordinates: points_hm [..., 2] (x, y), valid [...] -> maps [..., h, w].

    Peak exp(0) = 1 only when a point sits on a cell centre; invalid points give all-zero maps.
    """
    width, height = _size(heatmap_size)
    xs = torch.arange(width, dtype=points_hm.dtype, device=points_hm.device)
    ys = torch.arange(height, dtype=points_hm.dtype, device=points_hm.device)
    dx2 = (xs - points_hm[..., 0:1]) ** 2  # [..., w]
    dy2 = (ys - points_hm[..., 1:2]) ** 2  # [..., h]
    maps = torch.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2 * sigma**2))
    return maps * valid[..., None, None].to(maps.dtype)


def to_heatmap_frame(
    xy_px: Tensor, input_size: int | tuple[int, int], heatmap_size: int | tuple[int, int]
) -> Tensor:
    """Input pixels [..., 2] -> continuous cell coordinates [..., 2] (cell c's centre is c): (x + 0.5) / s - 0.5."""
    (iw, ih), (hw, hh) = _size(input_size), _size(heatmap_size)
    stride = xy_px.new_tensor([iw / hw, ih / hh])
    return (xy_px + 0.5) / stride - 0.5


def to_input_frame(
    xy_hm: Tensor, input_size: int | tuple[int, int], heatmap_size: int | tuple[int, int]
) -> Tensor:
    """Continuous cell coordinates [..., 2] -> input pixels [..., 2]; inverse of `to_heatmap_frame`."""
    (iw, ih), (hw, hh) = _size(input_size), _size(heatmap_size)
    stride = xy_hm.new_tensor([iw / hw, ih / hh])
    return (xy_hm + 0.5) * stride - 0.5


def encode_targets(
    keypoints_list: list[Tensor],
    input_size: int | tuple[int, int],
    heatmap_size: int | tuple[int, int],
    sigma: float = 2.0,
    centre_sigma: float = 4.0,
    min_person_area: float = 32.0**2,
    whole_people: list[Tensor] | None = None,
) -> dict[str, Tensor]:
    """Per-image people -> training targets for a batch (CPU tensors; call inside a collate_fn).

    keypoints_list: B tensors [P_b, K, 3] (x, y, v) in input pixels (P_b may be 0).
    sigma / centre_sigma: Gaussian widths in heatmap cells. A person gets a centre (and an instance)
    when it has a labelled keypoint inside the map and its keypoint box area >= min_person_area (input px^2).
    whole_people: B tensors [P_b, 3] (centre x, centre y, keypoint box area) of each person from all its
    labelled keypoints, wherever they lie, for inputs cut from a larger picture (training windows): a
    person cut by the border then keeps its true centre (and gets none when that centre is outside the
    map) instead of the mean of the keypoints left inside. None: from the keypoints inside the map.
    Returns
      heatmaps           [B, K+1, h, w]  max over people of keypoint Gaussians; channel K = centres
      heatmap_weight     [B, 1, h, w]    1 everywhere (0 would ignore a region, e.g. crowds)
      instance_image     [N] long        image index of each instance
      instance_coords    [N, 2] long     (y, x) cell of the instance centre
      instance_heatmaps  [N, K, h, w]    that person's keypoint Gaussians only
      instance_weight    [N, K]          1 where the keypoint is labelled
      instance_keypoints [N, K, 3]       (x, y, v) input pixels, as given
    """
    width, height = _size(heatmap_size)
    num_keypoints = next((k.shape[1] for k in keypoints_list if k.ndim == 3), 17)
    multi, image_ids, coords, inst_maps, inst_weight, inst_kpts = [], [], [], [], [], []
    for b, kpts in enumerate(keypoints_list):
        kpts = torch.as_tensor(kpts, dtype=torch.float32).reshape(-1, num_keypoints, 3)
        xy_hm = to_heatmap_frame(kpts[..., :2], input_size, heatmap_size)
        inside = (
            (xy_hm[..., 0] > -0.5)
            & (xy_hm[..., 0] < width - 0.5)
            & (xy_hm[..., 1] > -0.5)
            & (xy_hm[..., 1] < height - 0.5)
        )
        labelled = (kpts[..., 2] > 0) & inside
        person_maps = gaussian_maps(xy_hm, labelled, heatmap_size, sigma)  # [P, K, h, w]
        kept = kpts.clone()
        kept[..., 2] = torch.where(labelled, kpts[..., 2], torch.zeros_like(kpts[..., 2]))
        if whole_people is None:
            centres_px, has_any = person_centres(kept)
            has_centre = has_any & (keypoint_box_areas(kept) >= min_person_area)
        else:
            whole = torch.as_tensor(whole_people[b], dtype=torch.float32).reshape(-1, 3)
            centres_px, has_centre = (
                whole[:, :2],
                labelled.any(dim=1) & (whole[:, 2] >= min_person_area),
            )
        centres_hm = to_heatmap_frame(centres_px, input_size, heatmap_size)
        has_centre = (
            has_centre
            & (centres_hm[:, 0] > -0.5)
            & (centres_hm[:, 0] < width - 0.5)
            & (centres_hm[:, 1] > -0.5)
            & (centres_hm[:, 1] < height - 0.5)
        )
        centre_maps = gaussian_maps(centres_hm, has_centre, heatmap_size, centre_sigma)  # [P, h, w]
        image_multi = torch.zeros(num_keypoints + 1, height, width)
        if len(kpts):
            image_multi[:num_keypoints] = person_maps.amax(dim=0)
            image_multi[num_keypoints] = centre_maps.amax(dim=0)
        multi.append(image_multi)
        for p in torch.nonzero(has_centre).flatten().tolist():
            cell = centres_hm[p].round().long()
            coords.append(torch.stack([cell[1].clamp(0, height - 1), cell[0].clamp(0, width - 1)]))
            image_ids.append(b)
            inst_maps.append(person_maps[p])
            inst_weight.append(labelled[p].float())
            inst_kpts.append(kpts[p])
    n = len(coords)
    return {
        "heatmaps": torch.stack(multi),
        "heatmap_weight": torch.ones(len(keypoints_list), 1, height, width),
        "instance_image": torch.tensor(image_ids, dtype=torch.long),
        "instance_coords": torch.stack(coords) if n else torch.zeros(0, 2, dtype=torch.long),
        "instance_heatmaps": torch.stack(inst_maps)
        if n
        else torch.zeros(0, num_keypoints, height, width),
        "instance_weight": torch.stack(inst_weight) if n else torch.zeros(0, num_keypoints),
        "instance_keypoints": torch.stack(inst_kpts) if n else torch.zeros(0, num_keypoints, 3),
    }


def peak_mask(targets: Tensor, threshold: float = 0.5) -> Tensor:
    """Focal-loss positives: cells that are a 3x3 local maximum of a target map and >= threshold.

    targets [..., h, w] -> float mask of the same shape. Each Gaussian's peak cell (value 1 on a cell
    centre, >= exp(-1/(4 sigma^2)) off it) is positive, so sub-cell targets keep one positive each.
    """
    shape = targets.shape
    flat = targets.reshape(-1, 1, *shape[-2:])
    local_max = F.max_pool2d(flat, 3, stride=1, padding=1).reshape(shape)
    return ((targets >= local_max) & (targets >= threshold)).to(targets.dtype)


def centre_nms_kernel(height: int, width: int) -> int:
    """CID's max-pool NMS kernel from the map size: (h + w) / 2 > 300 -> 7, > 200 -> 5, else 3."""
    mean_side = (height + width) / 2
    return 7 if mean_side > 300 else 5 if mean_side > 200 else 3


def smooth(maps: Tensor) -> Tensor:
    """(m + avgpool3(m)) / 2 over the last two axes of [..., h, w] (CID's test-time smoothing)."""
    shape = maps.shape
    flat = maps.reshape(-1, 1, *shape[-2:])
    pooled = F.avg_pool2d(flat, 3, stride=1, padding=1, count_include_pad=False)
    return ((flat + pooled) / 2).reshape(shape)


def find_centres(
    centre_map: Tensor, max_people: int = 30, threshold: float = 0.01, kernel: int | None = None
) -> tuple[Tensor, Tensor]:
    """Person proposals from one centre heatmap [h, w]: smooth, max-pool NMS, top-k, score > threshold.

    Returns (coords [N, 2] long (y, x) cells, scores [N]), best first, N <= max_people.
    """
    height, width = centre_map.shape
    kernel = kernel or centre_nms_kernel(height, width)
    smoothed = smooth(centre_map)
    pooled = F.max_pool2d(smoothed[None, None], kernel, stride=1, padding=(kernel - 1) // 2)[0, 0]
    peaks = torch.where(pooled == smoothed, smoothed, torch.zeros_like(smoothed)).flatten()
    scores, index = peaks.topk(min(max_people, peaks.numel()))
    keep = scores > threshold
    scores, index = scores[keep], index[keep]
    coords = torch.stack([torch.div(index, width, rounding_mode="floor"), index % width], dim=1)
    return coords, scores


def refine_peaks(maps: Tensor, x: Tensor, y: Tensor, refine: Refine) -> tuple[Tensor, Tensor]:
    """Sub-cell offsets (dx, dy) [N, K] at integer peaks (x, y) [N, K] of maps [N, K, h, w].

    quadratic: vertex of the parabola through log m at (-1, 0, +1) (exact for a Gaussian, |d| <= 0.5);
    quarter: 0.25 toward the higher neighbour (CID); none: 0. Border cells use replicated neighbours.
    """
    if refine == "none":
        return torch.zeros_like(x, dtype=maps.dtype), torch.zeros_like(y, dtype=maps.dtype)
    n, k, h, w = maps.shape
    padded = F.pad(maps.reshape(n * k, 1, h, w), (1, 1, 1, 1), mode="replicate").reshape(n, k, -1)

    def at(dx: int, dy: int) -> Tensor:
        return padded.gather(-1, ((y + 1 + dy) * (w + 2) + (x + 1 + dx)).unsqueeze(-1)).squeeze(-1)

    centre, left, right, up, down = at(0, 0), at(-1, 0), at(1, 0), at(0, -1), at(0, 1)
    if refine == "quarter":
        return 0.25 * torch.sign(right - left), 0.25 * torch.sign(down - up)
    log = [v.clamp(min=1e-10).log() for v in (centre, left, right, up, down)]

    def vertex(lo: Tensor, mid: Tensor, hi: Tensor) -> Tensor:
        curvature = lo - 2 * mid + hi
        offset = (
            0.5
            * (lo - hi)
            / torch.where(curvature < -1e-12, curvature, torch.full_like(curvature, -1e12))
        )
        return offset.clamp(-0.5, 0.5)

    return vertex(log[1], log[0], log[2]), vertex(log[3], log[0], log[4])


def decode_instances(
    heatmaps: Tensor,
    instance_scores: Tensor,
    input_size: int | tuple[int, int],
    refine: Refine = "quadratic",
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-instance heatmaps [N, K, h, w] and centre scores [N] -> people in input pixels.

    Smooth, argmax per keypoint, sub-cell refine, map cells to input pixels ((c + 0.5) * stride - 0.5).
    Returns (keypoints [N, K, 2], keypoint_scores [N, K] = peak * centre score, scores [N] = mean).
    """
    n, k, h, w = heatmaps.shape
    maps = smooth(heatmaps)
    peaks, index = maps.reshape(n, k, h * w).max(dim=-1)
    x, y = index % w, torch.div(index, w, rounding_mode="floor")
    dx, dy = refine_peaks(maps, x, y, refine)
    xy_hm = torch.stack([x.to(maps.dtype) + dx, y.to(maps.dtype) + dy], dim=-1)
    keypoints = to_input_frame(xy_hm, input_size, (w, h))
    keypoint_scores = peaks * instance_scores[:, None]
    return (
        keypoints,
        keypoint_scores,
        keypoint_scores.mean(dim=-1) if k else keypoint_scores.new_zeros(n),
    )
