"""Body visibility labels against an independent occlusion check, on 100 rendered views.

The generator labels a joint from the scene's combined owner mask (`body_render.visibility`). Here each
frame is checked without that mask or that function:
  - each person's footprint is drawn ALONE on a blank canvas from its own parts (the union of its
    primitives, so the order the scene draws them in plays no part);
  - occluders are the per-view rectangle tracks, tested as inclusive pixel boxes in numpy (not drawn);
  - "nearer" is recomputed from the camera depths of the projected 3D joints (median over the joints,
    the depth order the module documents).
Expected COCO visibility of person p's joint k, at pixel round(uv) (pixel centres on integers):
  0  outside the image (or behind the camera),
  1  that pixel lies in the footprint of a person nearer than p, or inside an occluder rectangle,
  2  otherwise (uncovered: p's own body, even its own limb in front, or background).
Tolerance: a joint whose 3 x 3 pixel neighbourhood straddles the border of what covers it may
disagree (rounding at a limb border); at most 0.5 % of the in-image joints may, and no other.
"""

from __future__ import annotations

import numpy as np

from poseops.capture import bodies as B
from poseops.capture.body_render import Canvas, draw_part
from poseops.capture.synthetic_bodies import (
    plan_sequence,
    prepare_views,
    render_frame,
    sequence_kinds,
)
from poseops.config import BodyCaptureParams

BODIES = BodyCaptureParams(
    sequences=5, frames_per_sequence=10, views=3, image_size=128, people=(2, 3), occluders=(1, 2)
)
SEQUENCES, VIEWS_USED = 5, 2  # 5 sequences x 2 views x 10 frames = 100 rendered views
BORDER_TOLERANCE = 0.005


def _renders():
    """(view, plan, t, labels, people) for 100 rendered views of freshly planned sequences."""
    rng = np.random.default_rng(2024)
    subjects = [B.make_subject(rng, f"person_{i:03d}") for i in range(4)]
    kinds = sequence_kinds(BODIES)
    for s in range(SEQUENCES):
        plan = plan_sequence(rng, f"seq_{s:05d}", kinds[(3 * s + 1) % len(kinds)], BODIES, subjects)
        views = prepare_views(rng, plan, BODIES)
        for view in views[:VIEWS_USED]:
            for t in range(plan.frames):
                _, labels, (_, people, _) = render_frame(view, plan, t)
                yield view, plan, t, labels, people


def _footprint(person, height: int, width: int) -> np.ndarray:
    """[H, W] bool: the pixels one person's drawn parts cover, drawn alone."""
    canvas = Canvas(np.zeros((height, width, 3), np.uint8))
    for _, kind, args in person.parts:
        draw_part(canvas, kind, args, owner=1)
    return canvas.mask > 0


def _occluder_boxes(view, t: int, height: int, width: int) -> np.ndarray:
    """[H, W] bool: pixels inside the view's occluder rectangles at frame t (inclusive corners)."""
    yy, xx = np.mgrid[0:height, 0:width]
    covered = np.zeros((height, width), bool)
    for o in view.occluders:
        x0, y0 = int(o["x0"][t]), int(o["y0"][t])
        covered |= (xx >= x0) & (xx <= x0 + o["w"] - 1) & (yy >= y0) & (yy <= y0 + o["h"] - 1)
    return covered


def expected_visibility(view, t: int, people) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per person: expected visibility [22] and the cover mask [H, W] its joints were tested against."""
    height, width = int(view.camera.height), int(view.camera.width)
    depth = view.depth[:, t]  # [P, 22] mm
    drawn = [bool(np.all(d > 1.0)) for d in depth]
    order_depth = np.median(depth, axis=1)
    footprints = [
        _footprint(pv, height, width) if drawn[p] else np.zeros((height, width), bool)
        for p, pv in enumerate(people)
    ]
    occluded = _occluder_boxes(view, t, height, width)
    expected, covers = [], []
    for p in range(len(people)):
        cover = occluded.copy()
        for q in range(len(people)):
            if q != p and drawn[q] and order_depth[q] < order_depth[p]:
                cover |= footprints[q]
        px = np.floor(view.uv[p, t] + 0.5).astype(int)
        inside = (
            (px[:, 0] >= 0)
            & (px[:, 0] < width)
            & (px[:, 1] >= 0)
            & (px[:, 1] < height)
            & (depth[p] > 1.0)
        )
        vis = np.zeros(len(px), int)
        vis[inside] = np.where(cover[px[inside, 1], px[inside, 0]], 1, 2)
        expected.append(vis)
        covers.append(cover)
    return expected, covers


def _on_border(cover: np.ndarray, x: int, y: int) -> bool:
    patch = cover[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
    return bool(patch.any() and not patch.all())


def test_visibility_is_one_exactly_where_the_joint_is_covered():
    renders = in_image = mismatched = 0
    by_kind = {"person": 0, "occluder": 0, "visible": 0, "outside": 0}
    bad = []
    for view, plan, t, labels, people in _renders():
        renders += 1
        assert np.allclose(
            np.stack([lab["uv"] for lab in labels]), view.uv[:, t]
        )  # labels are the projections
        expected, covers = expected_visibility(view, t, people)
        occluded = _occluder_boxes(view, t, int(view.camera.height), int(view.camera.width))
        for p, (lab, want, cover) in enumerate(zip(labels, expected, covers)):
            got = np.asarray(lab["vis"])
            px = np.floor(view.uv[p, t] + 0.5).astype(int)
            in_image = in_image + int((want > 0).sum())
            by_kind["outside"] += int((want == 0).sum())
            by_kind["visible"] += int((want == 2).sum())
            for k in np.flatnonzero(want == 1):
                by_kind["occluder" if occluded[px[k, 1], px[k, 0]] else "person"] += 1
            for k in np.flatnonzero(got != want):
                if want[k] == 0 or got[k] == 0 or not _on_border(cover, *px[k]):
                    bad.append(
                        (plan.id, view.name, t, p, B.BODY_JOINTS[k], int(got[k]), int(want[k]))
                    )
                mismatched += 1
    assert renders == 100
    assert not bad, f"visibility disagrees away from any border: {bad[:5]}"
    assert mismatched <= BORDER_TOLERANCE * in_image, (
        f"{mismatched} of {in_image} joints on a border disagree"
    )
    # the check is not vacuous: people cover people, occluders cover people, most joints are seen
    assert by_kind["person"] >= 20 and by_kind["occluder"] >= 20, by_kind
    assert by_kind["visible"] > by_kind["person"] + by_kind["occluder"], by_kind
