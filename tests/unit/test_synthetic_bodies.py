"""Synthetic body captures, read back from disk: determinism, and the stored 2D labels agree with
the stored 3D joints and cameras (triangulation within 1 mm, reprojection within 0.05 px)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from poseops.capture.bodies import H36M17_FROM_BODY
from poseops.capture.synthetic_bodies import read_sequences, write_body_captures
from poseops.config import BodyCaptureParams, CaptureParams
from poseops.geometry import Camera, project_world, triangulate

# 20 sequences (triangulation and reprojection are checked over 20), 2 kept frames each, 3 views.
PARAMS = CaptureParams(
    seed=3, bodies=BodyCaptureParams(sequences=20, frames_per_sequence=2, image_size=128, views=3)
)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    out = tmp_path_factory.mktemp("bodies") / "raw"
    return out, write_body_captures(out, PARAMS)


def test_same_seed_same_bytes_and_manifest_last(capture, tmp_path):
    out, manifest = capture
    again = write_body_captures(tmp_path / "raw", PARAMS)
    assert json.dumps(again, sort_keys=True) == json.dumps(manifest, sort_keys=True)
    for name in ("labels.jsonl", "cameras.json"):
        assert (tmp_path / "raw" / name).read_bytes() == (out / name).read_bytes()
    assert manifest["counts"]["sequences"] == 20 and all(
        len(s["views"]) == 3 for s in manifest["sequences"]
    )


def test_labels_triangulate_and_reproject(capture):
    out, _ = capture
    cameras = json.loads((out / "cameras.json").read_text())
    worst_mm, worst_px = 0.0, 0.0
    for sequence in read_sequences(out):
        rig = {
            name: Camera(**{k: v for k, v in record.items() if k in Camera.model_fields})
            for name, record in cameras[sequence["id"]].items()
        }
        for frame in sequence["frames"]:
            for person in frame["people"]:
                index = int(person["person_id"].split(":")[-1])
                truth = np.asarray(person["keypoints_3d"], float)[
                    H36M17_FROM_BODY
                ]  # [17, 3] world mm
                uv, cams = [], []
                for view, labels in frame["views"].items():
                    mine = next(p for p in labels["people"] if p["person_id"] == index)
                    clean = np.asarray(mine["keypoints_h36m_clean"], float)
                    worst_px = max(
                        worst_px,
                        float(np.abs(np.asarray(project_world(truth, rig[view])) - clean).max()),
                    )
                    uv.append(clean)
                    cams.append(rig[view])
                if len(cams) >= 2:
                    estimate = np.asarray(triangulate(np.stack(uv), cams))  # uv [views, 17, 2]
                    worst_mm = max(worst_mm, float(np.linalg.norm(estimate - truth, axis=-1).max()))
    assert worst_px <= 0.05, worst_px
    assert 0.0 < worst_mm <= 1.0, worst_mm


def test_zoom_narrows_every_view_and_labels_follow(tmp_path):
    """zoom 2: every stored camera's focal lengths double, and so does the spread of the performer's exact
    labels about the principal point (the labels are projected through the zoomed cameras)."""
    base = BodyCaptureParams(
        sequences=2, frames_per_sequence=2, image_size=128, views=3, people=(1, 1)
    )
    plain = write_body_captures(tmp_path / "z1", CaptureParams(seed=5, bodies=base))
    zoomed = write_body_captures(
        tmp_path / "z2", CaptureParams(seed=5, bodies=base.model_copy(update={"zoom": 2.0}))
    )
    assert plain["counts"]["images"] == zoomed["counts"]["images"]
    cams = [json.loads((tmp_path / z / "cameras.json").read_text()) for z in ("z1", "z2")]
    for seq, views in cams[0].items():
        for view, cam in views.items():
            assert cams[1][seq][view]["fx"] == pytest.approx(2 * cam["fx"])
            assert cams[1][seq][view]["cx"] == pytest.approx(cam["cx"])
    for one, two in zip(read_sequences(tmp_path / "z1"), read_sequences(tmp_path / "z2")):
        view = one["views"][1]  # a Human3.6M view (h36m distortion model)
        cam = cams[0][one["id"]][view]
        centre = np.array([cam["cx"], cam["cy"]])
        a = np.asarray(one["frames"][0]["views"][view]["people"][0]["keypoints_clean"]) - centre
        b = np.asarray(two["frames"][0]["views"][view]["people"][0]["keypoints_clean"]) - centre
        ratio = (
            np.linalg.norm(b - b.mean(0), axis=1).sum()
            / np.linalg.norm(a - a.mean(0), axis=1).sum()
        )
        assert 1.8 < ratio < 2.2, ratio  # ~2 (radial distortion bends it a little)


def test_each_skeleton_derives_its_own_form_of_each_person(capture, tmp_path):
    """The body annotations hold two 17-joint forms of every person (COCO-17 `person`, H36M-17
    `person_h36m17`); a coco17 dataset must take the first only (one row person per person)."""
    from collections import Counter

    import pyarrow.parquet as pq

    from poseops.annotations.internal import build_annotations, load_annotations
    from poseops.config import SplitParams
    from poseops.datasets.derive import derive_dataset
    from poseops.tasks import get_task

    out, _ = capture
    build_annotations(out, [], tmp_path / "labels.json")
    labels = load_annotations(tmp_path / "labels.json")
    coco = next(c["id"] for c in labels["categories"] if c["name"] == "person")
    people = Counter(a["image_id"] for a in labels["annotations"] if a["category_id"] == coco)
    assert len(labels["annotations"]) == 2 * sum(people.values())  # both forms are there
    url = tmp_path / "bu"
    derive_dataset(
        get_task("bottomup_image").rows,
        tmp_path / "labels.json",
        str(url),
        get_task("bottomup_image").Options(),
        SplitParams(val_fraction=0.25, seed=0),
        skeleton="coco17",
        executor="local",
    )
    by_id = {a["id"]: a for a in labels["annotations"]}
    rows = [
        row for path in sorted(url.rglob("*.parquet")) for row in pq.read_table(path).to_pylist()
    ]
    assert len(rows) == len(people)
    for row in rows:
        assert row["num_people"] == people[row["image_id"]]
        for n, ann_id in enumerate(row["annotation_ids"]):
            assert by_id[ann_id]["category_id"] == coco
            xy = np.asarray(by_id[ann_id]["keypoints"], float).reshape(17, 3)[:, :2]
            np.testing.assert_allclose(
                np.asarray(row["keypoints"]).reshape(-1, 17, 2)[n], xy, atol=1e-3
            )
