"""Annotation files as users have them: repairs vs refusals, more layouts in their real shape (each
hand-written here, imported, exported to COCO and imported back), users' keypoint sets and namings."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from tests.helpers_annotations import (
    flawed_crowdpose,
    hand_sources_labels,
    image,
    onehand10k_file,
    round_trip,
    write,
)
from typer.testing import CliRunner

from poseops.annotations.internal import (
    build_annotations,
    import_annotations,
    load_annotations,
    preview_import,
)
from poseops.cli.main import app
from poseops.config import AnnotationSource, SplitParams
from poseops.errors import DataError
from poseops.metrics import mpii_pckh
from poseops.skeletons import COCO17, HAND21, MPII16, skeleton_from_coco_category
from poseops.tasks import get_task

runner = CliRunner()
WIDE = {"COLUMNS": "4000"}


# ---------------------------------------------------------------------------- repairs and refusals
def test_flawed_real_file_imports_with_its_repairs_listed(tmp_path):
    file = write(tmp_path / "crowd.json", flawed_crowdpose(tmp_path))
    out = tmp_path / "out"
    done = runner.invoke(app, ["data", "import", "coco", str(file), "--out", str(out)], env=WIDE)
    assert done.exit_code == 0, done.output
    assert (
        "2 annotations: area from bbox; 1 category: 3 skeleton edges out of range dropped"
        in done.output
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["repair_summary"]
        == "2 annotations: area from bbox; 1 category: 3 skeleton edges out of range dropped"
    )
    assert manifest["area_sources"] == {"bbox": 2, "keypoints": 0}
    assert {(r["scope"], r["repair"], r["records"], r["items"]) for r in manifest["repairs"]} == {
        ("annotation", "area from bbox", 2, 2),
        ("category", "skeleton edges out of range dropped", 1, 3),
    }
    form = load_annotations(out)
    (cat,) = form["categories"]
    assert len(cat["skeleton"]) == 16 and all(max(e) <= 14 for e in cat["skeleton"])
    assert [a["area"] for a in form["annotations"]] == [2400.0, 2400.0]
    assert all(a["area_source"] == "bbox" for a in form["annotations"])


def test_strict_refuses_every_repair_naming_file_and_records(tmp_path):
    file = write(tmp_path / "crowd.json", flawed_crowdpose(tmp_path))
    out = tmp_path / "out"
    done = runner.invoke(
        app, ["data", "import", "coco", str(file), "--out", str(out), "--strict"], env=WIDE
    )
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert "crowd.json" in done.output and "7, 8" in done.output and "area from bbox" in done.output
    assert "skeleton edges out of range dropped" in done.output
    assert not out.exists()


REPAIRS = {
    # case: (how the file is spoiled, the repair expected, what the repaired record holds)
    "visibility": (
        lambda a: a["keypoints"].__setitem__(2, 5),
        "visibilities outside {0, 1, 2} clipped",
        lambda a: a["keypoints"][2] == 2,
    ),
    "num_keypoints": (
        lambda a: a.__setitem__("num_keypoints", 3),
        "num_keypoints recounted",
        lambda a: a["num_keypoints"] == 14,
    ),
    "area_from_keypoints": (
        lambda a: (a.pop("bbox"), a.pop("area")),
        "area from keypoint extent",
        lambda a: (
            a["area_source"] == "keypoints"
            and a["bbox"] == [20.0, 5.0, 9.0, 52.0]
            and a["area"] == 9.0 * 52.0
        ),
    ),
    "box_clipped": (
        lambda a: a.__setitem__("bbox", [-10, 2, 40, 60]),
        "bbox clipped to the image",
        lambda a: a["bbox"] == [0.0, 2.0, 30.0, 60.0] and a["bbox_raw"] == [-10, 2, 40, 60],
    ),
}


@pytest.mark.parametrize("case", sorted(REPAIRS))
def test_each_repair_class_and_its_strict_refusal(case, tmp_path):
    spoil, repair, holds = REPAIRS[case]
    data = flawed_crowdpose(tmp_path)
    data["categories"][0]["skeleton"] = [[1, 2]]
    for ann in data["annotations"]:
        ann["area"] = 100.0
    spoil(data["annotations"][0])
    file = write(tmp_path / "x.json", data)
    manifest = import_annotations("coco", file, None, tmp_path / "out")
    entries = {e["repair"]: e for e in manifest["repairs"]}
    assert entries[repair]["ids"] == [7] and entries[repair]["scope"] == "annotation"
    assert holds(load_annotations(tmp_path / "out")["annotations"][0])
    with pytest.raises(DataError, match=r"x\.json: annotation id\(s\) 7: would need a repair"):
        import_annotations("coco", file, None, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists()


@pytest.mark.parametrize(
    "case,spoil,message",
    [
        (
            "wrong_count",
            lambda d: d["annotations"][1]["keypoints"].pop(),
            "annotation id 8 (image 1): keypoints has 41",
        ),
        (
            "non_finite",
            lambda d: d["annotations"][1]["keypoints"].__setitem__(0, float("inf")),
            "annotation id 8",
        ),
        (
            "unresolved_image",
            lambda d: d["annotations"][1].__setitem__("image_id", 99),
            "image_id 99 is not in images",
        ),
        (
            "no_box_no_points",
            lambda d: (
                d["annotations"][1].pop("bbox"),
                d["annotations"][1].__setitem__("keypoints", [0] * 42),
            ),
            "no bbox",
        ),
    ],
)
def test_errors_refuse_the_file_and_write_nothing(case, spoil, message, tmp_path):
    data = flawed_crowdpose(tmp_path)
    spoil(data)
    file = tmp_path / "x.json"
    file.write_text(json.dumps(data, allow_nan=True))
    with pytest.raises(DataError, match="x.json") as err:
        import_annotations("coco", file, None, tmp_path / "out")
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_validate_with_format_prints_the_repairs_and_writes_nothing(tmp_path):
    file = write(tmp_path / "crowd.json", flawed_crowdpose(tmp_path))
    before = sorted(p.name for p in tmp_path.iterdir())
    done = runner.invoke(app, ["data", "validate", str(file), "--format", "coco"], env=WIDE)
    assert done.exit_code == 0, done.output
    assert "nothing written" in done.output
    assert (
        "2 annotations: area from bbox; 1 category: 3 skeleton edges out of range dropped"
        in done.output
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    refused = runner.invoke(
        app, ["data", "validate", str(file), "--format", "coco", "--strict"], env=WIDE
    )
    assert refused.exit_code == 1 and "refused under --strict" in refused.output


# ---------------------------------------------------------------------------- MPII
def test_mpii_json_boxes_from_center_scale_and_head_boxes(tmp_path):
    image(tmp_path / "images", "015601864.jpg", 1280, 720)
    image(tmp_path / "images", "015599452.jpg", 1280, 720)
    joints = [[620.0 + 3 * j, 394.0 - 10 * j] for j in range(16)]
    vis = [1] * 16
    vis[9] = 0
    records = [  # HRNet's mpii/annot/valid.json shape: one record per person, 1-based pixels
        {
            "joints_vis": vis,
            "joints": [p if v else [-1.0, -1.0] for p, v in zip(joints, vis)],
            "image": "015601864.jpg",
            "scale": 3.021046,
            "center": [594.0, 257.0],
        },
        {
            "joints_vis": [1] * 16,
            "joints": [[900.0 + j, 300.0 + 5 * j] for j in range(16)],
            "image": "015601864.jpg",
            "scale": 1.5,
            "center": [910.0, 340.0],
        },
        {
            "joints_vis": [1] * 16,
            "joints": [[200.0 + j, 100.0 + 5 * j] for j in range(16)],
            "image": "015599452.jpg",
            "scale": 1.0,
            "center": [210.0, 140.0],
        },
    ]
    file = write(tmp_path / "valid.json", records)
    heads = np.zeros((2, 2, 3))
    heads[:, :, 0] = [[600, 100], [650, 160]]
    heads[:, :, 1] = [[890, 280], [930, 320]]
    heads[:, :, 2] = [[190, 80], [220, 110]]
    np.save(tmp_path / "mpii_headboxes.npy", heads)
    done = runner.invoke(
        app, ["data", "import", "mpii", str(file), "--out", str(tmp_path / "out")], env=WIDE
    )
    assert done.exit_code == 0, done.output
    form = load_annotations(tmp_path / "out")
    assert len(form["images"]) == 2 and {a["image_id"] for a in form["annotations"][:2]} == {1}
    (cat,) = form["categories"]
    assert cat["keypoints"] == list(MPII16.keypoints) and cat["name"] == "person_mpii16"
    first = form["annotations"][0]
    kp = np.asarray(first["keypoints"]).reshape(16, 3)
    assert (
        kp[0].tolist() == [619.0, 393.0, 2]
        and kp[9].tolist() == [0.0, 0.0, 0]
        and first["num_keypoints"] == 15
    )
    side = 200 * 3.021046  # scale is the person's height in units of 200 px
    assert first["bbox_raw"] == pytest.approx([593 - side / 2, 256 - side / 2, side, side])
    assert first["bbox"] == pytest.approx(
        [593 - side / 2, 0.0, side, 256 + side / 2]
    )  # clipped to the image
    assert first["bbox_head"] == [599.0, 99.0, 50.0, 60.0]
    assert form["annotations"][2]["bbox_head"] == [189.0, 79.0, 30.0, 30.0]
    # the imported head boxes are PCKh's normaliser: person 1's radius at 0.5 is 0.3 * hypot(50, 60) = 23.4 px
    gt = np.asarray([a["keypoints"] for a in form["annotations"]]).reshape(3, 16, 3)
    heads = [a["bbox_head"] for a in form["annotations"]]
    for shift, hits in ((23.0, 13), (24.0, 0)):  # 13 scored: no pelvis, thorax, unlabelled head top
        pred = gt[:1, :, :2] + [shift, 0.0]
        result = mpii_pckh(pred, gt[:1, :, :2], gt[:1, :, 2], heads[:1])
        assert result.value * result.protocol["num_keypoints_scored"] == pytest.approx(hits)
    round_trip(tmp_path / "out", tmp_path)


def test_mpii_record_with_wrong_joint_count_is_refused(tmp_path):
    file = write(
        tmp_path / "train.json",
        [
            {
                "joints_vis": [1] * 15,
                "joints": [[1.0, 2.0]] * 15,
                "image": "x.jpg",
                "scale": 1.0,
                "center": [5.0, 5.0],
            }
        ],
    )
    with pytest.raises(DataError, match=r"train\.json: record 0 \(x\.jpg\): joints must be 16"):
        import_annotations("mpii", file, None, tmp_path / "out")


# ---------------------------------------------------------------------------- video keypoint sets
def test_video_keypoint_file_keeps_sequences_tracks_and_frames(tmp_path):
    root = tmp_path / "posetrack"
    images, annotations = [], []
    names = ["nose", "head_bottom", "head_top"] + list(COCO17.keypoints[3:])
    for video, vid in (("000342_mpii_test", 10342), ("000522_mpii_test", 10522)):
        for frame in range(3):
            name = f"images/val/{video}/{frame:06d}.jpg"
            image(root, name)
            image_id = int(f"{vid}{frame:04d}")
            images.append(
                {
                    "id": image_id,
                    "file_name": name,
                    "vid_id": vid,
                    "frame_id": image_id,
                    "nframes": 3,
                    "is_labeled": frame != 1,
                    "has_no_densepose": True,
                    "ignore_regions_x": [],
                    "ignore_regions_y": [],
                }
            )
            if frame == 1:
                continue
            for track in (0, 1):
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": 1,
                        "track_id": track,
                        "bbox": [10 + 60 * track, 10, 40, 80],
                        "bbox_head": [12 + 60 * track, 10, 10, 10],
                        "keypoints": [
                            v for j in range(17) for v in (15 + 60 * track + j, 12 + 4 * j, 1)
                        ],
                    }
                )
    file = write(
        root / "annotations" / "val" / "000342_mpii_test.json",
        {
            "images": images,
            "annotations": annotations,
            "categories": [
                {
                    "id": 1,
                    "name": "person",
                    "supercategory": "person",
                    "keypoints": names,
                    "skeleton": [[16, 14], [14, 12], [17, 15], [15, 13]],
                }
            ],
        },
    )
    out = tmp_path / "out"
    done = runner.invoke(
        app, ["data", "import", "posetrack", str(file), "--out", str(out)], env=WIDE
    )
    assert done.exit_code == 0, done.output
    assert (
        "8 annotations: area from bbox" in done.output and "num_keypoints recounted" in done.output
    )
    form = load_annotations(out)
    assert len(form["images"]) == 4  # unlabelled frames are no images
    assert {i["sequence"] for i in form["images"]} == {"10342", "10522"}
    assert sorted(i["frame_number"] for i in form["images"] if i["sequence"] == "10342") == [0, 2]
    assert all(i["split"] == "val" for i in form["images"])
    by_track = {}
    for ann in form["annotations"]:
        by_track.setdefault(ann["track_id"], []).append(ann)
    assert sorted(by_track) == [0, 1] and all(len(v) == 4 for v in by_track.values())
    assert {a["bbox_head"][0] for a in by_track[1]} == {72}
    first, again = round_trip(out, tmp_path)
    assert [a["track_id"] for a in again["annotations"]] == [
        a["track_id"] for a in first["annotations"]
    ]


# ---------------------------------------------------------------------------- InterHand2.6M
INTERHAND_NAMES = [
    f"{s}_{f}{j}"
    for s in ("r", "l")
    for f in ("thumb", "index", "middle", "ring", "pinky")
    for j in (4, 3, 2, 1)
]


def interhand_files(folder: Path, with_2d: bool, shift_2d: float = 0.0) -> tuple[Path, dict]:
    """mmpose's tests/data/interhand2.6m shape: data.json + camera.json + joint_3d.json, two cameras."""
    rng = np.random.default_rng(3)
    world = {}
    for frame in ("69148", "2017"):
        right = np.array([0.0, -60.0, 1000.0]) + rng.normal(0, 25, (21, 3))
        left = np.array([-90.0, -40.0, 1020.0]) + rng.normal(0, 25, (21, 3))
        world[frame] = np.concatenate([right, left])
    theta = 0.3
    rot = np.array(
        [[np.cos(theta), 0, np.sin(theta)], [0, 1, 0], [-np.sin(theta), 0, np.cos(theta)]]
    )
    cameras = {
        "400026": (np.eye(3), np.array([0.0, 0.0, -200.0]), (1200.0, 1210.0), (160.0, 250.0)),
        "410028": (rot, np.array([300.0, 0.0, -100.0]), (1100.0, 1100.0), (256.0, 167.0)),
    }
    calib = {
        "3": {
            key: {
                cam: (v.tolist() if isinstance(v, np.ndarray) else list(v))
                for cam, v in values.items()
            }
            for key, values in (
                ("camrot", {c: p[0] for c, p in cameras.items()}),
                ("campos", {c: p[1] for c, p in cameras.items()}),
                ("focal", {c: p[2] for c, p in cameras.items()}),
                ("princpt", {c: p[3] for c, p in cameras.items()}),
            )
        }
    }
    valid = [[1]] * 42
    images = [
        {
            "id": 326750,
            "file_name": "Capture3/0390_dh_touchROM/cam400026/image69148.jpg",
            "width": 334,
            "height": 512,
            "capture": 3,
            "subject": 3,
            "seq_name": "0390_dh_touchROM",
            "camera": "400026",
            "frame_idx": 69148,
        },
        {
            "id": 471953,
            "file_name": "Capture3/0007_thumbup_normal/cam410028/image2017.jpg",
            "width": 512,
            "height": 334,
            "capture": 3,
            "subject": 3,
            "seq_name": "0007_thumbup_normal",
            "camera": "410028",
            "frame_idx": 2017,
        },
    ]
    for img in images:
        image(folder, img["file_name"], img["width"], img["height"])
    annotations = [
        {
            "id": 326750,
            "image_id": 326750,
            "bbox": [33.5, 164.9, 185.0, 142.7],
            "joint_valid": valid,
            "hand_type": "interacting",
            "hand_type_valid": 1,
        },
        {
            "id": 471953,
            "image_id": 471953,
            "bbox": [154.4, 27.9, 90.6, 184.5],
            "joint_valid": [[1]] * 21 + [[0]] * 21,
            "hand_type": "right",
            "hand_type_valid": 1,
        },
    ]
    expected = {}
    for ann, img in zip(annotations, images):
        R, campos, (fx, fy), (cx, cy) = cameras[img["camera"]]
        cam = (world[str(img["frame_idx"])] - campos) @ R.T  # InterHand's world2cam: R·(X − campos)
        uv = np.stack([cam[:, 0] / cam[:, 2] * fx + cx, cam[:, 1] / cam[:, 2] * fy + cy], axis=1)
        expected[ann["id"]] = uv
        if with_2d:
            ann["joint_img"] = (uv + shift_2d).tolist()
    joint_3d = {
        "3": {
            f: {
                "world_coord": w.tolist(),
                "joint_valid": [[True]] * 42,
                "hand_type": "interacting",
                "hand_type_valid": True,
            }
            for f, w in world.items()
        }
    }
    data_file = write(
        folder / "test_interhand2.6m_data.json", {"images": images, "annotations": annotations}
    )
    write(folder / "test_interhand2.6m_camera.json", calib)
    write(folder / "test_interhand2.6m_joint_3d.json", joint_3d)
    return data_file, {"uv": expected, "world": world}


def test_interhand_reprojects_world_joints_into_each_image(tmp_path):
    file, truth = interhand_files(
        tmp_path, with_2d=True, shift_2d=0.4
    )  # the file's 2D, 0.57 px off: accepted
    out = tmp_path / "out"
    done = runner.invoke(
        app, ["data", "import", "interhand", str(file), "--out", str(out)], env=WIDE
    )
    assert done.exit_code == 0, done.output
    form = load_annotations(out)
    assert len(form["cameras"]) == 2 and len(form["annotations"]) == 3  # interacting: two hands
    assert [a["side"] for a in form["annotations"]] == ["right", "left", "right"]
    (cat,) = form["categories"]
    assert cat["keypoints"] == list(HAND21.keypoints)
    order = [20] + [
        4 * f + 3 - j for f in range(5) for j in range(4)
    ]  # hand21 from InterHand's tip-first order
    for ann, (source_id, offset) in zip(
        form["annotations"], [(326750, 0), (326750, 21), (471953, 0)]
    ):
        uv = np.asarray(ann["keypoints"]).reshape(21, 3)
        assert np.abs(uv[:, :2] - truth["uv"][source_id][[offset + i for i in order]]).max() < 1e-6
        assert ann["source_annotation_id"] == source_id
    frame = "69148"
    left_world = np.asarray(form["annotations"][1]["keypoints_3d"]).reshape(21, 3)
    assert np.abs(left_world - truth["world"][frame][[21 + i for i in order]]).max() < 1e-9
    assert form["annotations"][2]["bbox"] == [154.4, 27.9, 90.6, 184.5]
    images = {i["id"]: i for i in form["images"]}
    assert images[326750]["group"] == "capture3:69148" and images[326750]["view"] == "400026"
    round_trip(out, tmp_path)


def test_interhand_folder_and_a_camera_file_elsewhere(tmp_path):
    file, _ = interhand_files(tmp_path / "annotations", with_2d=False)
    cameras = tmp_path / "calibration.json"
    (file.parent / "test_interhand2.6m_camera.json").rename(cameras)
    with pytest.raises(DataError, match="camera file .* not found"):
        import_annotations("interhand", file.parent, None, tmp_path / "out")
    manifest = import_annotations(
        "interhand", file.parent, None, tmp_path / "out", cameras_file=cameras
    )
    assert manifest["counts"]["annotations"] == 3 and manifest["counts"]["cameras"] == 2


def test_interhand_2d_that_disagrees_with_the_cameras_is_refused(tmp_path):
    file, _ = interhand_files(tmp_path, with_2d=True, shift_2d=1.5)
    with pytest.raises(DataError, match=r"annotation id 326750 .*reprojects 2\.12 px"):
        import_annotations("interhand", file, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- users' keypoint sets and namings
def test_own_keypoint_set_gets_skeleton_flip_pairs_and_default_sigmas(tmp_path):
    image(tmp_path, "a.png")
    names = ["head", "LShoulder", "RShoulder", "LElbow", "RElbow", "tail"]
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 160, "height": 120}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 3,
                "bbox": [10, 10, 50, 50],
                "area": 2500,
                "num_keypoints": 6,
                "keypoints": [v for j in range(6) for v in (12 + 5 * j, 20 + j, 2)],
            }
        ],
        "categories": [{"id": 3, "name": "robot_arm", "keypoints": names}],
    }
    file = write(tmp_path / "own.json", data)
    done = runner.invoke(
        app, ["data", "import", "coco", str(file), "--out", str(tmp_path / "out")], env=WIDE
    )
    assert done.exit_code == 0, done.output
    assert "no OKS sigmas given" in done.output and "robot_arm" in done.output
    (cat,) = load_annotations(tmp_path / "out")["categories"]
    skeleton = skeleton_from_coco_category(cat)
    assert skeleton.flip_pairs == ((1, 2), (3, 4))
    assert set(skeleton.edges) == {
        (1, 2),
        (1, 3),
        (2, 4),
    }  # COCO-17's shoulder and arm edges, by name
    assert skeleton.sigmas is not None and len(set(skeleton.sigmas)) == 1
    data["categories"][0]["sigmas"] = [0.1] * 6
    manifest = import_annotations(
        "coco", write(tmp_path / "own2.json", data), None, tmp_path / "out2"
    )
    assert manifest["warnings"] == []
    data["categories"][0]["sigmas"] = [0.1] * 5
    with pytest.raises(DataError, match="'sigmas' must hold 6 positive numbers"):
        import_annotations("coco", write(tmp_path / "own3.json", data), None, tmp_path / "out3")


def test_hand_file_in_another_naming_is_mapped_onto_hand21(tmp_path):
    file, truth = onehand10k_file(tmp_path, count=2)
    done = runner.invoke(
        app, ["data", "import", "coco", str(file), "--out", str(tmp_path / "out")], env=WIDE
    )
    assert done.exit_code == 0, done.output
    assert "keypoints mapped onto hand21 (20 renamed, reordered)" in done.output
    form = load_annotations(tmp_path / "out")
    (cat,) = form["categories"]
    assert (
        cat["keypoints"] == list(HAND21.keypoints) and cat["keypoints_source"][1] == "pinky_finger1"
    )
    for ann, points in zip(form["annotations"], truth):
        assert np.asarray(ann["keypoints"]).reshape(21, 3).tolist() == points.tolist()


def test_a_mapped_category_keeps_its_own_sigmas_in_the_sets_order_else_takes_the_sets(tmp_path):
    file, _ = onehand10k_file(tmp_path, count=1)
    data = json.loads(file.read_text())
    own = data["categories"][0]["keypoints"]
    data["categories"][0]["sigmas"] = [0.01 * (i + 1) for i in range(21)]
    form, _ = preview_import("coco", write(tmp_path / "with.json", data), None)
    (cat,) = form["categories"]
    assert cat["sigmas"][0] == 0.01 and cat["sigmas"][1] == pytest.approx(  # wrist; thumb1
        0.01 * (own.index("thumb1") + 1)
    )
    file, _ = onehand10k_file(tmp_path / "plain", count=1)
    assert preview_import("coco", file, None)[0]["categories"][0]["sigmas"] == list(HAND21.sigmas)


def test_keypoint_map_names_joints_no_alias_knows(tmp_path):
    file, truth = onehand10k_file(tmp_path, count=1)
    data = json.loads(file.read_text())
    data["categories"][0]["keypoints"][0] = "carpus"
    write(file, data)
    assert (
        preview_import("coco", file, None)[0]["categories"][0]["keypoints"][0] == "carpus"
    )  # not mapped
    form, _ = preview_import("coco", file, None, keypoint_map={"carpus": "wrist"})
    assert form["categories"][0]["keypoints"] == list(HAND21.keypoints)
    done = runner.invoke(
        app,
        ["data", "validate", str(file), "--format", "coco", "--keypoint-map", "carpus=wrist"],
        env=WIDE,
    )
    assert done.exit_code == 0 and "warning" not in done.output, done.output
    source = AnnotationSource(
        format="coco", file=str(file), keypoint_map={"carpus": "wrist"}, strict=True
    )
    summary = build_annotations(
        None, [source], tmp_path / "labels.json", families={"handmle": "hand21"}
    )
    assert "1 instances; handmle 1" in summary["coverage"][0]


def test_a_hand_file_in_another_naming_joins_the_hand_derivation(tmp_path):
    from poseops.datasets.derive import derive_dataset

    file, _ = onehand10k_file(tmp_path / "src", count=6)
    labels = tmp_path / "labels.json"
    source = AnnotationSource(format="coco", file=str(file))
    summary = build_annotations(
        None, [source], labels, families={"handmle": "hand21", "vmhpe": "coco17"}
    )
    line = next(line for line in summary["coverage"] if "/ hand:" in line)
    assert "6 instances; handmle 6; vmhpe 0 (skipped 6 keypoints are not coco17)" in line
    assert summary["warnings"] == []
    card = derive_dataset(
        get_task("topdown_crop").rows,
        labels,
        str(tmp_path / "ds"),
        get_task("topdown_crop").Options(),
        SplitParams(val_fraction=0.34),
        skeleton="hand21",
        executor="local",
    )
    assert sum(card["counts"].values()) == 6


def test_a_category_no_family_takes_is_a_warning_or_under_strict_an_error(tmp_path):
    data = flawed_crowdpose(tmp_path)
    data["categories"][0].update(skeleton=[[1, 3]], sigmas=[0.05] * 14)
    for ann in data["annotations"]:
        ann["area"] = 2400.0
    file = write(tmp_path / "crowd.json", data)
    labels = tmp_path / "labels.json"
    summary = build_annotations(
        None,
        [AnnotationSource(format="coco", file=str(file))],
        labels,
        families={"handmle": "hand21"},
    )
    (warning,) = [w for w in summary["warnings"] if "taken by no family" in w]
    assert "'person'" in warning and "closest keypoint set: mpii16, 14 joints in common" in warning
    labels.unlink()
    flawed = write(tmp_path / "flawed.json", flawed_crowdpose(tmp_path))
    with pytest.raises(
        DataError, match="would need a repair"
    ):  # a strict source refuses repairs too
        build_annotations(
            None, [AnnotationSource(format="coco", file=str(flawed), strict=True)], labels
        )
    with pytest.raises(DataError, match="taken by no family"):
        build_annotations(
            None,
            [AnnotationSource(format="coco", file=str(file), strict=True)],
            labels,
            families={"handmle": "hand21"},
        )
    assert not labels.exists()


def test_show_draws_an_imported_set(tmp_path):
    file, _ = interhand_files(tmp_path / "src", with_2d=False)
    import_annotations("interhand", file, None, tmp_path / "out")
    png = tmp_path / "grid.png"
    done = runner.invoke(
        app, ["data", "show", str(tmp_path / "out"), "--out", str(png), "--count", "2"], env=WIDE
    )
    assert done.exit_code == 0, done.output
    grid = cv2.imread(str(png))
    assert grid.shape[1] == 2 * 192  # two cells, one per image
    frame = grid[:192]
    drawn = np.any(np.abs(frame.astype(int) - 80) > 40, axis=-1) & np.any(frame > 0, axis=-1)
    assert drawn.sum() > 200  # keypoints and edges over the plain grey frames
    same = runner.invoke(
        app, ["data", "show", str(tmp_path / "out" / "annotations.json"), "--out", str(png)]
    )
    assert same.exit_code == 0, same.output


def test_real_wholebody_file_gives_its_hands_to_the_hand_family(real_fixtures, tmp_path):
    source = AnnotationSource(
        format="coco", file=str(real_fixtures / "coco" / "test_coco_wholebody.json")
    )
    summary = build_annotations(
        None, [source], tmp_path / "labels.json", families={"handmle": "hand21", "vmhpe": "coco17"}
    )
    lines = {line.split(":", 2)[1].strip().split(" / ")[1]: line for line in summary["coverage"]}
    assert (
        "14 instances; handmle 0 (skipped 14 keypoints are not hand21); vmhpe 12 (skipped 2 no labelled keypoint)"
        in lines["person"]
    )
    assert (
        "10 instances; handmle 10; vmhpe 0" in lines["hand"]
    )  # 10 hands labelled, of 28 people's hands
    # machine-labelled hands carry a confidence as visibility: labelled (v > 0) stays labelled
    assert (
        "2 annotations: 42 visibilities outside {0, 1, 2} clipped"
        in summary["repairs"][source.file]
    )
    hands = [
        a for a in json.loads((tmp_path / "labels.json").read_text())["annotations"] if "side" in a
    ]
    assert all(a["num_keypoints"] == 21 for a in hands)
    # the 4 labelled faces (of 14 people) become face68 annotations that no family here takes: said
    assert "4 instances; handmle 0 (skipped 4 keypoints are not hand21)" in lines["face"]
    faces = json.loads((tmp_path / "labels.json").read_text())["annotations"]
    assert sum(1 for a in faces if len(a["keypoints"]) == 68 * 3) == 4
    foot, untaken = summary["warnings"]
    assert "COCO-WholeBody foot keypoints are not imported" in foot
    assert "category 'face' is taken by no family (closest keypoint set: face68" in untaken


def test_real_posetrack_file_has_coco_sigmas_and_no_warning(real_fixtures, tmp_path):
    manifest = import_annotations(
        "posetrack", real_fixtures / "posetrack18" / "annotations" / "val", None, tmp_path / "out"
    )
    assert manifest["warnings"] == []
    (cat,) = load_annotations(tmp_path / "out")["categories"]
    assert cat["sigmas"] == list(COCO17.sigmas)


def test_source_weights_choose_the_training_mix_and_the_card_counts_it(tmp_path):
    from poseops.datasets.derive import derive_dataset
    from poseops.errors import ConfigError

    labels = hand_sources_labels(tmp_path, {"lab": 8, "web": 8})
    family, split = get_task("topdown_crop").Options(), SplitParams(val_fraction=0.25, seed=1)
    whole = derive_dataset(
        get_task("topdown_crop").rows,
        labels,
        str(tmp_path / "all"),
        family,
        split,
        executor="local",
    )
    mixed = derive_dataset(
        get_task("topdown_crop").rows,
        labels,
        str(tmp_path / "mix"),
        family,
        split,
        executor="local",
        source_weights={"web": 0.5, "lab": 0.0},
    )
    assert whole["source"]["kind"] == "real"
    full_train = whole["source"]["mix"]["train"]
    assert sum(full_train.values()) == whole["counts"]["train"] and set(full_train) == {
        "lab",
        "web",
    }
    assert mixed["source"]["mix"]["train"] == {"web": round(0.5 * full_train["web"])}
    assert (
        mixed["source"]["mix"]["val"] == whole["source"]["mix"]["val"]
    )  # validation keeps every source
    with pytest.raises(ConfigError, match="names source\\(s\\) synthetic .*its sources: lab, web"):
        derive_dataset(
            get_task("topdown_crop").rows,
            labels,
            str(tmp_path / "bad"),
            family,
            split,
            executor="local",
            source_weights={"synthetic": 1.0},
        )
