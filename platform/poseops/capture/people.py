"""Still images of several people with exact COCO-17 labels, in memory (for bottom-up training and tests).

Each image: a textured background, two or three 3D bodies (`poseops.capture.bodies`) in random
poses, places and headings, seen by a pinhole camera, drawn as shaded limb volumes far to near
(`poseops.capture.body_render`), sometimes an occluder or two, and a lighting gradient. Left limbs
are warm-coloured and right limbs cool-coloured. Visibility comes from the drawn masks: 1 where the
joint's pixel shows another person or an occluder, 2 where it shows the person itself, 0 outside
the image (coordinates are still the true projection there).

Deterministic: image i depends only on (seed, i), so a longer list starts with the shorter one.
"""

from __future__ import annotations

import math

import numpy as np

from poseops.capture.bodies import body_joints, make_subject, random_pose, to_coco17
from poseops.capture.body_render import (
    OCCLUDER_ID,
    apply_lighting,
    draw_scene,
    person_box,
    person_view,
    visibility,
)
from poseops.capture.common import textured_background
from poseops.geometry import Camera, project_world, world_to_camera

_STREAM = 0x9E0E  # seed-stream tag of still images


def look_camera(
    position: np.ndarray,
    pitch_down_deg: float,
    yaw_deg: float,
    focal: float,
    width: int,
    height: int,
) -> Camera:
    """A pinhole camera at `position` [3] (mm, world z up) looking along +y turned by `yaw_deg` about z
    and tilted `pitch_down_deg` downwards; principal point at the image centre."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_down_deg)
    forward = np.array(
        [math.sin(-yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), -math.sin(pitch)]
    )
    right = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])  # rows: camera x, y, z in world coordinates
    t = -rot @ position
    return Camera(
        fx=focal,
        fy=focal,
        cx=(width - 1) / 2.0,
        cy=(height - 1) / 2.0,
        R=tuple(map(tuple, rot)),
        t=tuple(t),
        width=width,
        height=height,
    )


def random_occluders(
    rng: np.random.Generator, size: int, anchors: np.ndarray
) -> list[tuple[str, tuple]]:
    """0-2 occluders (rectangles or ellipses) placed near random anchor points [N, 2] px."""
    out = []
    for _ in range(int(rng.choice([0, 0, 1, 1, 2]))):
        centre = anchors[rng.integers(len(anchors))] + rng.normal(0, 0.05 * size, 2)
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        w, h = (rng.uniform(0.08, 0.3, 2) * size).astype(int) + 2
        if rng.random() < 0.5:
            x0, y0 = int(centre[0] - w / 2), int(centre[1] - h / 2)
            out.append(
                ("rectangle", (x0, y0, x0 + w - 1, y0 + h - 1, colour, bool(rng.random() < 0.5)))
            )
        else:
            out.append(
                (
                    "ellipse",
                    (
                        (int(centre[0]), int(centre[1])),
                        (int(w // 2), int(h // 2)),
                        float(rng.uniform(0, 180)),
                        colour,
                    ),
                )
            )
    return out


def spread_positions(
    rng: np.random.Generator,
    count: int,
    low: float = 0.12,
    high: float = 0.88,
    min_gap: float = 0.2,
) -> np.ndarray:
    """`count` horizontal positions (fractions of the width) at least `min_gap` apart, in random order.

    People may overlap (limbs, occlusion), but their centres stay apart, as in the seed's scenes
    where each worker stands at a station; a bottom-up model can then count them from centres.
    """
    slack = (high - low) - min_gap * (count - 1)
    if slack < 0:
        raise ValueError(
            f"{count} people do not fit between {low} and {high} at least {min_gap} apart"
        )
    offsets = np.sort(rng.uniform(0.0, slack, count))  # spread the slack, then add the fixed gaps
    positions = low + offsets + min_gap * np.arange(count)
    return rng.permutation(positions)


def render_people_image(rng: np.random.Generator, size: int, num_people: int):
    """One scene: (image BGR [size, size, 3] uint8, people labels, views, occluders, background, camera)."""
    background = textured_background(rng, size)
    focal = size * rng.uniform(1.5, 2.3)
    cam_height = rng.uniform(1000.0, 1600.0)
    camera = look_camera(
        np.array([0.0, 0.0, cam_height]), rng.uniform(0.0, 12.0), 0.0, focal, size, size
    )
    views, joints_world = [], []
    for u_fraction in spread_positions(rng, num_people):
        subject = make_subject(rng, "still")
        depth = rng.uniform(3500.0, 7000.0)
        u = u_fraction * size
        x = (u - camera.cx) * depth / focal
        joints = body_joints(
            subject, random_pose(rng), np.array([x, depth]), rng.uniform(0.0, 360.0)
        )
        uv = np.asarray(project_world(joints, camera))
        z = np.asarray(world_to_camera(joints, camera))[:, 2]
        views.append(person_view(uv, z, subject, focal))
        joints_world.append(joints)
    anchors = np.concatenate([v.uv for v in views])
    occluders = random_occluders(rng, size, anchors)
    canvas = draw_scene(background, views, occluders)
    image = apply_lighting(canvas.image, rng)
    people = []
    for p, view in enumerate(views):
        vis = visibility(view.uv, view.depth, canvas.mask, owner=p + 1)
        bbox, _ = person_box(view, size, size)
        people.append(
            {
                "keypoints": to_coco17(view.uv).astype(np.float32),
                "visibility": to_coco17(vis[:, None])[:, 0].astype(np.int64),
                "bbox": bbox,
            }
        )
    return image, people, views, occluders, background, canvas


def people_images(
    seed: int, count: int, size: int = 256, people_per_image: tuple[int, int] = (2, 3)
) -> list[tuple[np.ndarray, list[dict]]]:
    """`count` images of several people with COCO-17 labels.

    Returns [(image_bgr uint8 [size, size, 3], people)], people[i] = {"keypoints": float32 [17, 2]
    image px, "visibility": int [17] COCO 0/1/2 (1 = covered by another person or an occluder,
    from the drawn masks), "bbox": [x, y, w, h] clipped to the image}. Deterministic for `seed`.
    """
    lo, hi = people_per_image
    if not 1 <= lo <= hi:
        raise ValueError(
            f"people_per_image must be (low, high) with 1 <= low <= high, got {people_per_image}"
        )
    out = []
    for i in range(count):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM, i]))
        image, people, *_ = render_people_image(rng, size, int(rng.integers(lo, hi + 1)))
        out.append((image, people))
    return out


__all__ = ["people_images", "render_people_image", "look_camera", "OCCLUDER_ID"]
