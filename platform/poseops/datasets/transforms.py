"""Crop geometry shared by derive, the loader, evaluate and serving (so all see the same pixels).

Pixel convention: the package's one convention (`poseops.codecs`), OpenCV's: the centre of pixel
(col i, row j) is at (x, y) = (i, j). A crop of side S centred on c maps c to ((S - 1) / 2, (S - 1) / 2). Affines are 2x3 float64 matrices acting on
column vectors [x, y, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def box_affine(
    box_xywh: Sequence[float],
    margin: float,
    out_size: int,
    rotation_deg: float = 0.0,
    scale: float = 1.0,
    shift: Sequence[float] = (0.0, 0.0),
) -> np.ndarray:
    """Source pixels -> an out_size x out_size crop centred on the box, side margin x max(w, h) / scale.

    rotation_deg turns the content counter-clockwise; shift moves the crop window by a fraction of its side.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    side = max(w, h, 1e-6) * float(margin) / float(scale)
    cx = x + (w - 1.0) / 2.0 + float(shift[0]) * side
    cy = y + (h - 1.0) / 2.0 + float(shift[1]) * side
    zoom = out_size / side
    angle = np.deg2rad(rotation_deg)
    cos, sin = np.cos(angle) * zoom, np.sin(angle) * zoom
    half = (out_size - 1) / 2.0
    # p_out = R * zoom * (p - c) + half
    affine = np.array(
        [[cos, sin, half - cos * cx - sin * cy], [-sin, cos, half + sin * cx - cos * cy]]
    )
    # Put the inverse (crop -> source) on the sampling grid `warp` uses, so that `warp` samples exactly
    # where `apply_affine(points, affine)` says and integer moves of the source give identical crops.
    return cv2.invertAffineTransform(snap_to_grid(cv2.invertAffineTransform(affine)))


GRID = 2.0**-10  # px; coefficients on this grid keep OpenCV's float32 sample positions exact


def snap_to_grid(affine: np.ndarray) -> np.ndarray:
    """The 2x3 affine with every coefficient rounded to a multiple of GRID."""
    return np.round(np.asarray(affine, dtype=np.float64) / GRID) * GRID


def warp(image: np.ndarray, affine: np.ndarray, out_size: int) -> np.ndarray:
    """image [H,W,C] -> [out_size,out_size,C] through `affine` (bilinear, zero border).

    The inverse map (output -> source) is snapped to GRID before OpenCV samples it (OpenCV 5 computes
    sample positions in float32): two affines that differ only by an integer translation of the source
    (a padded image; a stored crop vs the full frame) then give bit-identical crops. `box_affine`
    already returns grid-aligned maps, for which the snap changes nothing; for other maps it moves a
    sample by at most GRID/2 * (1 + out_size) px.
    """
    inverse = snap_to_grid(cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64)))
    return cv2.warpAffine(
        image,
        inverse,
        (out_size, out_size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """points [..., 2] -> [..., 2]."""
    points = np.asarray(points, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine applying `inner` first, then `outer`."""
    full = np.vstack([outer, [0.0, 0.0, 1.0]]) @ np.vstack([inner, [0.0, 0.0, 1.0]])
    return full[:2]


def integer_window(box_xywh: Sequence[float], margin: float) -> tuple[int, int, int]:
    """(x0, y0, side): an integer-aligned square window around the box, side ~ margin x max(w, h)."""
    x, y, w, h = (float(v) for v in box_xywh)
    side = max(1, int(np.ceil(max(w, h) * margin)))
    cx, cy = x + (w - 1.0) / 2.0, y + (h - 1.0) / 2.0
    return int(np.floor(cx - (side - 1) / 2.0)), int(np.floor(cy - (side - 1) / 2.0)), side


def cut_window(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """Copy image[y0:y0+side, x0:x0+side], zero-padded where the window leaves the image (no resampling)."""
    h, w = image.shape[:2]
    out = np.zeros((side, side, *image.shape[2:]), dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out
