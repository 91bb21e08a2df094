"""Cameras, projection with lens distortion, triangulation and Procrustes alignment.

Conventions: a `Camera` maps world points (mm) to its own frame by X_cam = R · X_world + t
(x right, y down, z forward), then to normalised image coordinates x = X/Z, y = Y/Z, through its
distortion model, then to pixels by u = fx·x_d + cx, v = fy·y_d + cy.

Distortion models (coefficients k = (k1, k2, k3) radial, p = (p1, p2) tangential in both):
- `opencv`: OpenCV's 5-coefficient model (cv2 distCoeffs = (k1, k2, p1, p2, k3)).
- `h36m`: Human3.6M's own form (its ProjectPointRadial.m):
  x_d = x·(radial + p1·y + p2·x) + p2·r², y_d = y·(radial + p1·y + p2·x) + p1·r².

Every array function accepts numpy arrays or torch tensors and returns the same kind
(float64 recommended); leading dimensions `...` broadcast as batch dimensions.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from poseops.errors import DataError

DistortionModel = Literal["opencv", "h36m"]
Vec3 = tuple[float, float, float]


class Camera(BaseModel):
    """A calibrated camera: intrinsics, world->camera extrinsics (mm) and a named distortion model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fx: float
    fy: float
    cx: float
    cy: float
    R: tuple[Vec3, Vec3, Vec3] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    t: Vec3 = (0.0, 0.0, 0.0)
    model: DistortionModel = "opencv"
    k: Vec3 = (0.0, 0.0, 0.0)
    p: tuple[float, float] = (0.0, 0.0)
    width: int | None = None
    height: int | None = None
    name: str = ""

    @field_validator("R")
    @classmethod
    def _is_rotation(cls, r):
        r_ = np.asarray(r, dtype=np.float64)
        if np.abs(r_ @ r_.T - np.eye(3)).max() > 1e-6 or np.linalg.det(r_) < 0:
            raise ValueError("R must be a proper rotation matrix (orthonormal, det +1)")
        return r

    @property
    def K(self) -> np.ndarray:
        """Intrinsic matrix [3, 3]."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def rotation(self) -> np.ndarray:
        """World->camera rotation [3, 3]."""
        return np.array(self.R, dtype=np.float64)

    @property
    def translation(self) -> np.ndarray:
        """World->camera translation [3] (mm)."""
        return np.array(self.t, dtype=np.float64)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates [3] (mm): −Rᵀt."""
        return -self.rotation.T @ self.translation

    @property
    def opencv_dist_coeffs(self) -> np.ndarray:
        """(k1, k2, p1, p2, k3) as OpenCV orders them [5]; only meaningful for model 'opencv'."""
        return np.array([self.k[0], self.k[1], self.p[0], self.p[1], self.k[2]])


# ---------------------------------------------------------------------------- numpy / torch


def _xp(x: Any):
    """The array module of x: torch for tensors, else numpy."""
    if type(x).__module__.startswith("torch"):
        import torch

        return torch
    return np


def _as(value: Any, like: Any):
    """`value` as an array of the same kind, dtype and device as `like`."""
    if _xp(like) is np:
        return np.asarray(value, dtype=np.result_type(like, np.float64))
    import torch

    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def _input(x: Any):
    """numpy inputs (lists, ints) become float64 arrays; tensors pass through."""
    return x if _xp(x) is not np else np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------------------- frames


def rotation_x(angle_rad: float) -> np.ndarray:
    """3x3 rotation about x by `angle_rad` (right-handed)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(angle_rad: float) -> np.ndarray:
    """3x3 rotation about y by `angle_rad` (right-handed)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_z(angle_rad: float) -> np.ndarray:
    """3x3 rotation about z by `angle_rad` (right-handed)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def world_to_camera(points_world, camera: Camera):
    """[..., 3] world (mm) -> [..., 3] camera frame (mm): R·X + t."""
    x = _input(points_world)
    return x @ _as(camera.rotation, x).mT + _as(camera.translation, x)


def camera_to_world(points_cam, camera: Camera):
    """[..., 3] camera frame (mm) -> [..., 3] world (mm): Rᵀ·(X − t)."""
    x = _input(points_cam)
    return (x - _as(camera.translation, x)) @ _as(camera.rotation, x)


# ---------------------------------------------------------------------------- distortion


def distort(xy, camera: Camera):
    """Ideal normalised coordinates [..., 2] -> distorted normalised coordinates [..., 2]."""
    xy = _input(xy)
    xp = _xp(xy)
    (k1, k2, k3), (p1, p2) = camera.k, camera.p
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    if camera.model == "opencv":
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    elif camera.model == "h36m":
        scale = radial + p1 * y + p2 * x
        xd = x * scale + p2 * r2
        yd = y * scale + p1 * r2
    else:  # pragma: no cover - Camera validates the model
        raise ValueError(f"unknown distortion model {camera.model!r}")
    return xp.stack([xd, yd], axis=-1)


def undistort(xy_distorted, camera: Camera, iterations: int = 12):
    """Distorted normalised coordinates [..., 2] -> ideal normalised coordinates [..., 2].

    Inverts `distort` by Newton's method (Jacobian by central differences), starting at the
    distorted point; converges to machine precision for lenses that are invertible over the image
    (Newton needs only an approximate Jacobian: the residual it drives to zero is exact).
    """
    target = _input(xy_distorted)
    xp = _xp(target)
    if camera.k == (0.0, 0.0, 0.0) and camera.p == (0.0, 0.0):
        return target
    h = float(_xp(target).finfo(target.dtype).eps) ** (1 / 3)  # central-difference step
    ex, ey = _as([h, 0.0], target), _as([0.0, h], target)
    xy = target
    for _ in range(iterations):
        residual = distort(xy, camera) - target
        jx = (distort(xy + ex, camera) - distort(xy - ex, camera)) / (2 * h)  # d f / d x  [..., 2]
        jy = (distort(xy + ey, camera) - distort(xy - ey, camera)) / (2 * h)  # d f / d y  [..., 2]
        det = jx[..., 0] * jy[..., 1] - jy[..., 0] * jx[..., 1]
        dx = (jy[..., 1] * residual[..., 0] - jy[..., 0] * residual[..., 1]) / det
        dy = (jx[..., 0] * residual[..., 1] - jx[..., 1] * residual[..., 0]) / det
        xy = xy - xp.stack([dx, dy], axis=-1)
    return xy


# ---------------------------------------------------------------------------- pixels


def normalized_to_pixels(xy, camera: Camera):
    """Normalised coordinates [..., 2] -> pixels [..., 2] (applies fx, fy, cx, cy only)."""
    xy = _input(xy)
    return xy * _as([camera.fx, camera.fy], xy) + _as([camera.cx, camera.cy], xy)


def pixels_to_normalized(uv, camera: Camera):
    """Pixels [..., 2] -> normalised coordinates [..., 2] (removes fx, fy, cx, cy only)."""
    uv = _input(uv)
    return (uv - _as([camera.cx, camera.cy], uv)) / _as([camera.fx, camera.fy], uv)


def project(points_cam, camera: Camera):
    """Camera-frame points [..., 3] (any unit, Z > 0) -> distorted pixels [..., 2]."""
    x = _input(points_cam)
    return normalized_to_pixels(distort(x[..., :2] / x[..., 2:3], camera), camera)


def project_world(points_world, camera: Camera):
    """World points [..., 3] (mm) -> distorted pixels [..., 2]."""
    return project(world_to_camera(points_world, camera), camera)


def undistort_pixels(uv, camera: Camera):
    """Distorted pixels [..., 2] -> the pixels an ideal pinhole camera with the same K would see."""
    return normalized_to_pixels(undistort(pixels_to_normalized(uv, camera), camera), camera)


def distort_pixels(uv_ideal, camera: Camera):
    """Ideal pinhole pixels [..., 2] -> distorted pixels [..., 2] (inverse of `undistort_pixels`)."""
    return normalized_to_pixels(distort(pixels_to_normalized(uv_ideal, camera), camera), camera)


# ---------------------------------------------------------------------------- triangulation


def triangulate(uv, cameras: Sequence[Camera], weights=None):
    """DLT triangulation of distorted pixels seen by V cameras into world points.

    uv [V, ..., 2] pixels (view v seen by cameras[v]); weights [V, ...] optional confidences
    (a view with weight 0 is ignored). Returns world points [..., 3] (mm); NaN where fewer than
    two views have a positive weight. Each view adds the rows w·(x·P3 − P1), w·(y·P3 − P2) in
    undistorted normalised coordinates (P = [R | t]); the solution is the right singular vector
    of the smallest singular value.
    """
    uv = _input(uv)
    xp = _xp(uv)
    if uv.shape[0] != len(cameras):
        raise ValueError(f"uv has {uv.shape[0]} views but {len(cameras)} cameras were given")
    rows = []
    for v, cam in enumerate(cameras):
        xy = undistort(pixels_to_normalized(uv[v], cam), cam)  # [..., 2]
        P = _as(np.concatenate([cam.rotation, cam.translation[:, None]], axis=1), uv)  # [3, 4]
        w = 1.0 if weights is None else _as(weights, uv)[v][..., None]
        rows.append(w * (xy[..., 0:1] * P[2] - P[0]))  # [..., 4]
        rows.append(w * (xy[..., 1:2] * P[2] - P[1]))
    A = xp.stack(rows, axis=-2)  # [..., 2V, 4]
    # Solve for (X/s, Y/s, Z/s, 1) with s the cameras' distance scale, so the four columns of A
    # are of similar size (mm vs 1): this keeps the solution exact to ~1e-9 relative.
    s = float(max(1.0, max(np.linalg.norm(c.translation) for c in cameras)))
    A = A * _as([s, s, s, 1.0], uv)
    _, _, vh = xp.linalg.svd(A, full_matrices=False)
    h = vh[..., -1, :]  # [..., 4]
    points = s * h[..., :3] / h[..., 3:4]
    if weights is not None:
        n_views = (_as(weights, uv) > 0).sum(axis=0)
        points = xp.where((n_views >= 2)[..., None], points, _as(np.nan, uv))
    return points


# ---------------------------------------------------------------------------- Procrustes


def procrustes_transform(source, target, weights=None):
    """Similarity (scale, rotation, translation) that best maps source onto target, no reflection.

    source, target [..., K, 3]; weights [..., K] optional (≥ 0). Returns scale [...],
    rotation [..., 3, 3] (det +1) and translation [..., 3] minimising
    Σ_k w_k ‖s·R·source_k + t − target_k‖² (Umeyama 1991).
    """
    src, dst = _input(source), _input(target)
    xp = _xp(src)
    w = (
        xp.ones_like(src[..., 0])
        if weights is None
        else _as(weights, src) * xp.ones_like(src[..., 0])
    )
    w = w / w.sum(axis=-1, keepdims=True)  # [..., K]
    mu_src = (w[..., None] * src).sum(axis=-2)  # [..., 3]
    mu_dst = (w[..., None] * dst).sum(axis=-2)
    a, b = src - mu_src[..., None, :], dst - mu_dst[..., None, :]
    cov = (w[..., None] * b).mT @ a  # [..., 3, 3] = Σ w b aᵀ
    u, s, vh = xp.linalg.svd(cov)
    one = xp.ones_like(s[..., 0])
    d = xp.where(xp.linalg.det(u @ vh) < 0, -one, one)  # −1 where the best orthogonal map reflects
    signs = xp.stack([one, one, d], axis=-1)  # [..., 3]
    rotation = (u * signs[..., None, :]) @ vh
    var_src = (w * (a * a).sum(axis=-1)).sum(axis=-1)
    scale = (s * signs).sum(axis=-1) / var_src
    translation = mu_dst - scale[..., None] * (rotation @ mu_src[..., None])[..., 0]
    return scale, rotation, translation


def procrustes_align(source, target, weights=None):
    """source [..., K, 3] aligned onto target [..., K, 3] by the best similarity (see above)."""
    scale, rotation, translation = procrustes_transform(source, target, weights)
    src = _input(source)
    return scale[..., None, None] * (src @ rotation.mT) + translation[..., None, :]


# ---------------------------------------------------------------------------- Human3.6M cameras

_H36M_IMAGE = re.compile(r"(S\d+)_[^/]*?\.(\d{8})_\d+\.\w+$")


def h36m_camera_key(imgname: str) -> tuple[str, str]:
    """(subject, camera id) of a Human3.6M frame name, e.g. 'S1_Directions_1.54138969_000001.jpg'."""
    m = _H36M_IMAGE.search(imgname)
    if m is None:
        raise DataError(f"cannot read subject and camera id from Human3.6M image name {imgname!r}")
    return m.group(1), m.group(2)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits only numpy array reconstruction (and builtin containers/scalars, which need no class)."""

    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a camera file")


def load_h36m_cameras(path: str | Path) -> dict[tuple[str, str], Camera]:
    """Read a Human3.6M `cameras.pkl` (mmpose's form) into Cameras keyed by (subject, camera id).

    The file holds, per key, `R` [3, 3] and `T` [3, 1] (metres) with X_world = R·X_cam + T (R is
    camera-to-world, as mmpose reads it), `f`, `c` [2, 1], `k` [3, 1], `p` [2, 1], `w`, `h`, `name`.
    The Cameras are world->camera in mm: rotation Rᵀ, t = −Rᵀ·T·1000. Raises DataError naming the
    file and key when the file holds anything but arrays and plain values, or a field is malformed.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = _ArraysOnlyUnpickler(fh).load()
    except (OSError, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"{path}: cannot read Human3.6M cameras: {e}") from e
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a dict keyed by (subject, camera id)")
    cameras = {}
    for key, c in raw.items():
        try:
            R = np.asarray(c["R"], dtype=np.float64).reshape(3, 3).T  # world -> camera
            T = np.asarray(c["T"], dtype=np.float64).reshape(3)  # camera centre, metres
            f, cc = (
                np.asarray(c["f"], dtype=np.float64).ravel(),
                np.asarray(c["c"], dtype=np.float64).ravel(),
            )
            k, p = (
                np.asarray(c["k"], dtype=np.float64).ravel(),
                np.asarray(c["p"], dtype=np.float64).ravel(),
            )
            cameras[tuple(key)] = Camera(
                fx=f[0],
                fy=f[1],
                cx=cc[0],
                cy=cc[1],
                R=tuple(map(tuple, R)),
                t=tuple(-R @ T * 1000.0),
                model="h36m",
                k=tuple(k[:3]),
                p=tuple(p[:2]),
                width=int(c["w"]),
                height=int(c["h"]),
                name=str(c.get("name", "")),
            )
        except (KeyError, ValueError, IndexError, TypeError) as e:
            raise DataError(f"{path}: camera {key!r}: missing or malformed field ({e})") from e
    return cameras
