"""Drawing bodies with OpenCV: shaded limb volumes, depth order, occluders, and visibility from masks.

A scene is drawn by the painter's algorithm: people far to near, each person's parts far to near,
then occluders on top. Every primitive is drawn twice with the same geometry: in colour into the
image and as an owner id into a mask (0 background, p + 1 person p, `OCCLUDER_ID` occluders). No
anti-aliasing, so the mask is exactly the footprint seen in the image. A joint's visibility is then:
0 outside the frame or behind the camera, 1 when the pixel holding it belongs to another person or
an occluder (covered), 2 otherwise (its own body, even its own limb in front, counts as visible).

Pixel convention: the centre of pixel (col i, row j) is at (x, y) = (i, j), as in OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from poseops.capture.bodies import J, Subject
from poseops.capture.common import (
    ONE,
    SUBPIXEL_BITS,
    OccluderStyle,
    draw_rectangle,
    fixed,
    pixel_of,
    shade,
)

OCCLUDER_ID = 255
OCCLUDERS = OccluderStyle(
    extent=(0.1, 0.3), pad=2, offset=("normal", 0.12), drift=0.15, stripe_period=6, stripe_width=2
)

# Drawn parts: (name, joint a, joint b, width mm, colour key). Colour keys pick a Subject colour.
LIMBS: tuple[tuple[str, str, str, float, str], ...] = (
    ("left_thigh", "left_hip", "left_knee", 150.0, "left"),
    ("left_shank", "left_knee", "left_ankle", 110.0, "left"),
    ("right_thigh", "right_hip", "right_knee", 150.0, "right"),
    ("right_shank", "right_knee", "right_ankle", 110.0, "right"),
    ("left_upper_arm", "left_shoulder", "left_elbow", 100.0, "left"),
    ("left_forearm", "left_elbow", "left_wrist", 80.0, "left"),
    ("right_upper_arm", "right_shoulder", "right_elbow", 100.0, "right"),
    ("right_forearm", "right_elbow", "right_wrist", 80.0, "right"),
    ("neck", "thorax", "neck", 90.0, "skin"),
)
TORSO_DEPTH_MM = 230.0  # thickness of the torso capsule (seen from the side)
HEAD_RADIUS_MM = 100.0
HAND_RADIUS_MM = 55.0
FOOT_RADIUS_MM = 60.0


@dataclass
class Canvas:
    """A colour image [H, W, 3] uint8 and its owner mask [H, W] uint8, drawn together."""

    image: np.ndarray
    mask: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.mask is None:
            self.mask = np.zeros(self.image.shape[:2], np.uint8)

    def capsule(
        self, a: np.ndarray, b: np.ndarray, width: float, colour: tuple, owner: int
    ) -> None:
        """A limb from a to b (px), `width` px thick, shaded as a cylinder (dark rim, light core)."""
        w = max(2, int(round(width)))
        pa, pb = fixed(a), fixed(b)
        cv2.line(self.mask, pa, pb, owner, w, cv2.LINE_8, SUBPIXEL_BITS)
        cv2.line(self.image, pa, pb, shade(colour, 0.55), w, cv2.LINE_8, SUBPIXEL_BITS)
        cv2.line(self.image, pa, pb, colour, max(1, int(round(w * 0.7))), cv2.LINE_8, SUBPIXEL_BITS)
        cv2.line(
            self.image,
            pa,
            pb,
            shade(colour, 1.3),
            max(1, int(round(w * 0.25))),
            cv2.LINE_8,
            SUBPIXEL_BITS,
        )

    def disc(self, centre: np.ndarray, radius: float, colour: tuple, owner: int) -> None:
        """A shaded ball of `radius` px."""
        r = max(1, int(round(radius * ONE)))
        c = fixed(centre)
        cv2.circle(self.mask, c, r, owner, -1, cv2.LINE_8, SUBPIXEL_BITS)
        cv2.circle(self.image, c, r, shade(colour, 0.6), -1, cv2.LINE_8, SUBPIXEL_BITS)
        cv2.circle(self.image, c, max(1, int(r * 0.8)), colour, -1, cv2.LINE_8, SUBPIXEL_BITS)
        off = (c[0] - int(r * 0.25), c[1] - int(r * 0.25))
        cv2.circle(
            self.image,
            off,
            max(1, int(r * 0.35)),
            shade(colour, 1.25),
            -1,
            cv2.LINE_8,
            SUBPIXEL_BITS,
        )

    def polygon(self, points: np.ndarray, colour: tuple, owner: int) -> None:
        """A filled convex polygon through points [N, 2] px with a darker outline."""
        pts = np.array([fixed(p) for p in points], np.int32)
        hull = cv2.convexHull(pts)
        cv2.fillConvexPoly(self.mask, hull, owner, cv2.LINE_8, SUBPIXEL_BITS)
        cv2.fillConvexPoly(self.image, hull, colour, cv2.LINE_8, SUBPIXEL_BITS)

    def rectangle(
        self, x0: int, y0: int, x1: int, y1: int, colour: tuple, striped: bool, owner: int
    ) -> None:
        """An occluder: an inclusive pixel rectangle."""
        cv2.rectangle(self.mask, (x0, y0), (x1, y1), owner, -1)
        draw_rectangle(self.image, (x0, y0, x1, y1), colour, striped, OCCLUDERS)

    def ellipse(
        self,
        centre: tuple[int, int],
        axes: tuple[int, int],
        angle: float,
        colour: tuple,
        owner: int,
    ) -> None:
        """An occluder: a filled ellipse (integer pixel geometry)."""
        cv2.ellipse(self.mask, centre, axes, angle, 0, 360, owner, -1)
        cv2.ellipse(self.image, centre, axes, angle, 0, 360, colour, -1)
        cv2.ellipse(
            self.image,
            centre,
            (max(1, axes[0] // 2), max(1, axes[1] // 2)),
            angle,
            0,
            360,
            shade(colour, 1.2),
            -1,
        )


def _px_per_mm(focal: float, depth: float) -> float:
    return focal / max(depth, 1.0)


def body_parts(
    uv: np.ndarray, depth: np.ndarray, subject: Subject, focal: float
) -> list[tuple[float, str, tuple]]:
    """Drawing primitives of one person, each (depth mm, kind, args), from its joints' pixels uv [22, 2]
    and camera depths [22] (mm). `focal` (px) turns widths in mm into px at each part's depth."""
    colours = {"left": subject.left, "right": subject.right, "skin": subject.skin}
    wf = subject.width
    parts: list[tuple[float, str, tuple]] = []
    # torso: a quad through shoulders and hips, plus a capsule pelvis->thorax for its depth
    quad_idx = [J["left_shoulder"], J["right_shoulder"], J["right_hip"], J["left_hip"]]
    z_torso = float(depth[quad_idx].mean())
    parts.append((z_torso, "polygon", (uv[quad_idx], subject.shirt)))
    s = _px_per_mm(focal, z_torso)
    parts.append(
        (
            z_torso - 1.0,
            "capsule",
            (uv[J["pelvis"]], uv[J["thorax"]], TORSO_DEPTH_MM * wf * s, subject.shirt),
        )
    )
    for name, ja, jb, width, key in LIMBS:
        a, b = J[ja], J[jb]
        z = float(depth[a] + depth[b]) / 2.0
        colour = colours[key]
        if name.endswith(("thigh", "shank")):
            colour = tuple(0.5 * c + 0.5 * t for c, t in zip(colour, subject.trousers))
        parts.append((z, "capsule", (uv[a], uv[b], width * wf * _px_per_mm(focal, z), colour)))
    for side in ("left", "right"):
        w, an = J[f"{side}_wrist"], J[f"{side}_ankle"]
        parts.append(
            (
                float(depth[w]) - 1.0,
                "disc",
                (uv[w], HAND_RADIUS_MM * _px_per_mm(focal, depth[w]), subject.skin),
            )
        )
        parts.append(
            (
                float(depth[an]) - 1.0,
                "disc",
                (
                    uv[an],
                    FOOT_RADIUS_MM * wf * _px_per_mm(focal, depth[an]),
                    shade(subject.trousers, 0.6),
                ),
            )
        )
    # head: a ball centred between the neck joint and the head top, pushed forward towards the nose
    centre_idx = [J["neck"], J["head"], J["nose"]]
    zc = float(depth[centre_idx].mean())
    parts.append(
        (zc, "disc", (uv[centre_idx].mean(0), HEAD_RADIUS_MM * _px_per_mm(focal, zc), subject.skin))
    )
    return parts


def part_extent(kind: str, args: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Pixel box (low [2], high [2]) a primitive covers."""
    if kind == "capsule":
        a, b, width, _ = args
        r = max(2, int(round(width))) / 2.0
        return np.minimum(a, b) - r, np.maximum(a, b) + r
    if kind == "disc":
        c, radius, _ = args
        return c - radius, c + radius
    pts = args[0]
    return pts.min(0), pts.max(0)


def draw_part(canvas: Canvas, kind: str, args: tuple, owner: int) -> None:
    getattr(canvas, kind)(*args, owner=owner)


@dataclass
class PersonView:
    """One person seen by one camera: joints' pixels uv [22, 2], camera depths [22] (mm), parts."""

    uv: np.ndarray
    depth: np.ndarray
    parts: list[tuple[float, str, tuple]]

    @property
    def order_depth(self) -> float:
        return float(np.median(self.depth))


def person_view(uv: np.ndarray, depth: np.ndarray, subject: Subject, focal: float) -> PersonView:
    return PersonView(uv=uv, depth=depth, parts=body_parts(uv, depth, subject, focal))


def draw_scene(
    background: np.ndarray,
    people: list[PersonView],
    occluders: list[tuple[str, tuple]] = (),
    only: int | None = None,
) -> Canvas:
    """Draw people (far to near) and then occluders over a copy of `background`.

    occluders: ("rectangle", (x0, y0, x1, y1, colour, striped)) or ("ellipse", (centre, axes, angle, colour)).
    `only` draws just that person (no occluders): the reference a covered joint is tested against.
    """
    canvas = Canvas(background.copy())
    order = sorted(range(len(people)), key=lambda p: -people[p].order_depth)
    for p in order:
        if only is not None and p != only:
            continue
        if np.any(people[p].depth <= 1.0):
            continue  # behind the camera: not drawn
        for _, kind, args in sorted(people[p].parts, key=lambda part: -part[0]):
            draw_part(canvas, kind, args, owner=p + 1)
    if only is None:
        for kind, args in occluders:
            getattr(canvas, kind)(*args, owner=OCCLUDER_ID)
    return canvas


def visibility(uv: np.ndarray, depth: np.ndarray, mask: np.ndarray, owner: int) -> np.ndarray:
    """COCO visibility [K] of points uv [K, 2] (camera depth [K]) of person `owner` (= index + 1) given the
    scene's owner mask: 0 outside the frame or behind the camera, 1 covered by another owner, else 2."""
    h, w = mask.shape
    px = pixel_of(uv)
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h) & (depth > 1.0)
    vis = np.zeros(len(uv), np.int64)
    for k in np.flatnonzero(inside):
        found = int(mask[px[k, 1], px[k, 0]])
        vis[k] = 1 if found not in (0, owner) else 2
    return vis


def person_box(view: PersonView, width: int, height: int) -> tuple[list[float], list[float]]:
    """(bbox clipped to the image, bbox unclipped), each [x, y, w, h] px, around every drawn part."""
    lows, highs = zip(*(part_extent(kind, args) for _, kind, args in view.parts))
    lo, hi = np.min(lows, axis=0), np.max(highs, axis=0)
    raw = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
    clo = np.clip(lo, -0.5, [width - 0.5, height - 0.5])
    chi = np.clip(hi, -0.5, [width - 0.5, height - 0.5])
    return [float(clo[0]), float(clo[1]), float(chi[0] - clo[0]), float(chi[1] - clo[1])], raw


def apply_lighting(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A global gain/offset and a soft linear light gradient across the frame (deterministic from rng)."""
    gain, offset = lighting_field(rng, *image.shape[:2])
    return apply_gain(image, gain, offset)


def lighting_field(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, float]:
    """(per-pixel gain [H, W, 1] float32, offset): `apply_gain` applies it (fixed per sequence)."""
    gain = rng.uniform(0.75, 1.2)
    offset = float(rng.uniform(-20, 20))
    angle = rng.uniform(0, 2 * math.pi)
    strength = rng.uniform(0.0, 0.35)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (
        (xx / max(width - 1, 1) - 0.5) * math.cos(angle)
        + (yy / max(height - 1, 1) - 0.5) * math.sin(angle)
    ) * strength
    return (gain * (1.0 + ramp))[..., None].astype(np.float32), offset


def apply_gain(image: np.ndarray, gain: np.ndarray, offset: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
