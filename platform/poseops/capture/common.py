"""What the synthetic hand and body captures share: fixed-point drawing, backgrounds, moving
occluders, label noise (one `NoiseParams`), label rounding, and video writing and reading.

Pixel convention (as in `poseops.codecs`): the centre of pixel (col i, row j) is at (x, y) = (i, j),
as in OpenCV; the pixel holding a point p is floor(p + 0.5).

Every function draws from the `rng` it is given in a fixed order, so a capture is byte-identical for
the same seed (`tests/unit/test_capture.py::test_smoke_hand_capture_matches_dvc_lock` and the
same-seed tests there).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from poseops.errors import DataError

# ---------------------------------------------------------------- fixed-point drawing
SUBPIXEL_BITS = 4  # OpenCV's `shift`: coordinates are drawn in 1/16 px
ONE = 1 << SUBPIXEL_BITS


def fixed(point: Sequence[float] | np.ndarray) -> tuple[int, int]:
    """A point (x, y) px -> OpenCV fixed-point coordinates with `SUBPIXEL_BITS` fractional bits."""
    return int(round(float(point[0]) * ONE)), int(round(float(point[1]) * ONE))


def shade(colour: Sequence[float], factor: float) -> tuple[float, ...]:
    """A colour scaled by `factor`, each channel capped at 255."""
    return tuple(float(min(255.0, c * factor)) for c in colour)


def pixel_of(points: np.ndarray) -> np.ndarray:
    """Integer (col, row) [..., 2] of the pixel holding each point [..., 2]."""
    return np.floor(np.asarray(points) + 0.5).astype(np.int64)


# ---------------------------------------------------------------- backgrounds
def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured BGR background [size, size, 3] uint8 (noise-free: lossless video stays small)."""
    style = int(rng.integers(0, 4))
    base = rng.uniform(20, 235, size=3)
    if style == 0:  # smooth low-frequency noise
        cells = int(rng.integers(3, 9))
        img = cv2.resize(
            rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32),
            (size, size),
            interpolation=cv2.INTER_CUBIC,
        )
    elif style == 1:  # gradient plus fine grain
        ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
        g = ramp[None, :, None] * rng.uniform(-120, 120, 3) + ramp[:, None, None] * rng.uniform(
            -120, 120, 3
        )
        img = base + g
    elif style == 2:  # stripes or checks
        period = rng.uniform(6, 24)
        angle = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        wave = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        if rng.random() < 0.5:
            wave = wave * np.sin(
                (-xx * math.sin(angle) + yy * math.cos(angle)) * 2 * math.pi / period
            )
        img = base + wave[..., None] * rng.uniform(20, 70, 3)
    else:  # clutter of random shapes
        img = np.empty((size, size, 3), np.float32)
        img[:] = base
        for _ in range(int(rng.integers(6, 16))):
            colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
            centre = tuple(int(c) for c in rng.integers(0, size, 2))
            if rng.random() < 0.5:
                cv2.circle(img, centre, int(rng.integers(3, size // 4)), colour, -1)
            else:
                other = tuple(int(c) for c in rng.integers(0, size, 2))
                cv2.rectangle(img, centre, other, colour, -1)
        img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- moving occluders
@dataclass(frozen=True)
class OccluderStyle:
    """How a capture draws its rectangle occluders (sizes as fractions of the frame's shorter side).

    extent: (low, high) of the uniform width/height draw; pad: px added to each; offset: the placement
    around the tracked centre, ("uniform", a) for U(-a, a) or ("normal", s) for N(0, s); drift: U(-d, d)
    of a straight move over the sequence; stripe_period / stripe_width: px of the optional stripes.
    """

    extent: tuple[float, float]
    pad: int
    offset: tuple[Literal["uniform", "normal"], float]
    drift: float
    stripe_period: int
    stripe_width: int


def occluder_track(
    rng: np.random.Generator, style: OccluderStyle, frames: int, side: int, centres: np.ndarray
) -> dict[str, Any]:
    """One moving rectangle near `centres` [T, 2]: {x0 [T], y0 [T], w, h, colour, striped}."""
    w, h = (rng.uniform(style.extent[0], style.extent[1], 2) * side).astype(int) + style.pad
    kind, spread = style.offset
    offset = (
        rng.uniform(-spread, spread, 2) if kind == "uniform" else rng.normal(0.0, spread, 2)
    ) * side
    drift = rng.uniform(-style.drift, style.drift, 2) * side * np.linspace(-1, 1, frames)[:, None]
    centre = centres + offset + drift
    return {
        "x0": np.round(centre[:, 0] - w / 2).astype(int),
        "y0": np.round(centre[:, 1] - h / 2).astype(int),
        "w": int(w),
        "h": int(h),
        "colour": tuple(float(c) for c in rng.uniform(0, 255, 3)),
        "striped": bool(rng.random() < 0.5),
    }


def occluder_rects(tracks: list[dict], t: int) -> list[tuple[int, int, int, int]]:
    """Inclusive pixel rectangles (x0, y0, x1, y1) of the occluders at frame t."""
    return [
        (
            int(o["x0"][t]),
            int(o["y0"][t]),
            int(o["x0"][t]) + o["w"] - 1,
            int(o["y0"][t]) + o["h"] - 1,
        )
        for o in tracks
    ]


def draw_rectangle(
    image: np.ndarray,
    rect: tuple[int, int, int, int],
    colour: Sequence[float],
    striped: bool,
    style: OccluderStyle,
) -> None:
    """An occluder in place: a filled inclusive rectangle, with darker vertical stripes if `striped`."""
    x0, y0, x1, y1 = rect
    cv2.rectangle(image, (x0, y0), (x1, y1), colour, -1)
    if striped:
        for x in range(x0 + 2, x1, style.stripe_period):
            cv2.line(image, (x, y0), (x, y1), shade(colour, 0.7), style.stripe_width)


def covered_by(points: np.ndarray, rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    """[K] bool: the pixel holding each point [K, 2] lies in one of the inclusive rectangles."""
    px = pixel_of(points)
    hit = np.zeros(len(points), dtype=bool)
    for x0, y0, x1, y1 in rects:
        hit |= (px[:, 0] >= x0) & (px[:, 0] <= x1) & (px[:, 1] >= y0) & (px[:, 1] <= y1)
    return hit


# ---------------------------------------------------------------- label noise
@dataclass(frozen=True)
class NoiseParams:
    """Label noise on the training labels (`keypoints`); `keypoints_clean` always keeps the truth.

    The fields of `data.capture.hands` and `data.capture.bodies` in params.yaml: label_noise_px (jitter
    sigma, px), label_noise (gaussian | laplace), outlier_rate (share of keypoints moved far),
    outlier_box_fraction (outlier displacement sigma / box side), swap_rate (share of labels with
    left/right swapped; bodies only, 0 for hands).
    """

    label_noise_px: float = 0.0
    label_noise: Literal["gaussian", "laplace"] = "gaussian"
    outlier_rate: float = 0.0
    outlier_box_fraction: float = 0.3
    swap_rate: float = 0.0

    @classmethod
    def of(cls, part: Any) -> NoiseParams:
        """The noise fields of a capture part's parameters (HandCaptureParams, BodyCaptureParams)."""
        return cls(
            part.label_noise_px,
            part.label_noise,
            part.outlier_rate,
            part.outlier_box_fraction,
            getattr(part, "swap_rate", 0.0),
        )


def add_label_noise(
    rng: np.random.Generator,
    uv: np.ndarray,
    box_side: float,
    noise: NoiseParams,
    flip_permutation: Sequence[int] | None = None,
) -> np.ndarray:
    """Training labels [K, 2] = clean uv + jitter (Gaussian or Laplace with std label_noise_px) +
    outliers (a share of the keypoints moved by N(0, (outlier_box_fraction x box side)^2)), then
    left/right swapped (`flip_permutation`) at `swap_rate`. No noise configured: uv itself, no draw."""
    out = uv
    if noise.label_noise_px > 0 or noise.outlier_rate > 0:
        sigma = noise.label_noise_px
        if noise.label_noise == "laplace":
            jitter = rng.laplace(0, sigma / math.sqrt(2), uv.shape)
        else:
            jitter = rng.normal(0, sigma, uv.shape)
        jumps = rng.random(len(uv)) < noise.outlier_rate
        jitter[jumps] += rng.normal(0, noise.outlier_box_fraction * box_side, (int(jumps.sum()), 2))
        out = uv + jitter
    if noise.swap_rate > 0 and rng.random() < noise.swap_rate:
        if flip_permutation is None:
            raise ValueError("swap_rate > 0 needs the keypoints' flip permutation")
        out = out[list(flip_permutation)]
    return out


# ---------------------------------------------------------------- rounding
def rounded(values: Any, digits: int) -> list:
    """Values as nested lists of floats rounded to `digits` decimals (what the label files hold)."""
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def keypoint_rows(uv: np.ndarray, vis: np.ndarray, digits: int) -> list[list[float]]:
    """[K, 3] (x, y, v) rows with x = y = 0 where v = 0 (COCO), coordinates rounded to `digits`."""
    rows = np.concatenate(
        [
            np.round(np.asarray(uv, dtype=np.float64), digits),
            np.asarray(vis, dtype=np.float64)[:, None],
        ],
        axis=1,
    )
    rows[np.asarray(vis) == 0, :2] = 0.0
    return rows.tolist()


# ---------------------------------------------------------------- video writing and reading
@dataclass(frozen=True)
class VideoFormat:
    suffix: str  # ".avi"
    fourcc: str  # OpenCV FourCC, e.g. "FFV1"
    codec: str  # what the manifest says


@contextmanager
def video_writer(
    path: Path, fmt: VideoFormat, fps: float, width: int, height: int
) -> Iterator[cv2.VideoWriter]:
    """An OpenCV writer into a hidden temporary beside `path`, moved onto `path` once the block ends
    without error (a reader never sees a half-written video). DataError when OpenCV cannot open it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fmt.fourcc), fps, (width, height))
    if not writer.isOpened():
        raise DataError(f"{path}: OpenCV cannot open a {fmt.fourcc} video writer")
    try:
        yield writer
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    writer.release()
    tmp.replace(path)


def read_frames(video_path: str | Path) -> Iterator[np.ndarray]:
    """Decoded frames (BGR [H, W, 3] uint8) of a video (a capture's, an ingested clip, a trial to assess),
    in order: the one place poseops reads videos.

    Raises DataError naming the file if it is missing, unreadable or holds no frame.
    """
    path = Path(video_path)
    if not path.is_file():
        raise DataError(f"{path}: no such video")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DataError(f"{path}: OpenCV cannot open this video (corrupt or unknown format)")
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield frame
        if count == 0:
            raise DataError(f"{path}: the video holds no decodable frame (corrupt?)")
    finally:
        capture.release()


def read_video(video_path: str | Path) -> list[np.ndarray]:
    """All frames of a capture video (see `read_frames`)."""
    return list(read_frames(video_path))


def read_frame(video_path: str | Path, index: int) -> np.ndarray:
    """Frame `index` (BGR [H, W, 3] uint8) of a capture video; DataError naming file and index if absent."""
    for i, frame in enumerate(read_frames(video_path)):
        if i == index:
            return frame
    raise DataError(f"{video_path}: capture video has no frame {index}")
