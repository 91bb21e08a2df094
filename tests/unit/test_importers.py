"""Importers of real annotation formats: values read back against the raw files, not only exit 0."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from tests.helpers_annotations import write_freihand_native
from typer.testing import CliRunner

from poseops.annotations.internal import (
    import_annotations,
    load_annotations,
    merge,
    resolve_image_path,
    validate,
)
from poseops.cli.main import app
from poseops.errors import DataError
from poseops.geometry import Camera, project_world
from poseops.skeletons import H36M17, HAND21, PANOPTIC19

runner = CliRunner()
WIDE = {"COLUMNS": "4000"}  # rich wraps long lines; keep messages on one line for the asserts


def camera_of(record: dict) -> Camera:
    return Camera(**{k: v for k, v in record.items() if k in Camera.model_fields})


def imported(out: Path) -> dict:
    assert (
        json.loads((out / "manifest.json").read_text())["annotations"]["file"] == "annotations.json"
    )
    return load_annotations(out)


# ---------------------------------------------------------------------------- COCO
def test_coco_fixture_through_the_cli(real_fixtures, tmp_path):
    source = real_fixtures / "coco" / "test_coco.json"
    out = tmp_path / "coco"
    done = runner.invoke(app, ["data", "import", "coco", str(source), "--out", str(out)], env=WIDE)
    assert done.exit_code == 0, done.output
    form = imported(out)
    raw = json.loads(source.read_text())
    assert len(form["annotations"]) == len(raw["annotations"]) == 14
    unlabelled = [a for a in form["annotations"] if not any(v > 0 for v in a["keypoints"][2::3])]
    assert len(unlabelled) == 2 and all(a["num_keypoints"] == 0 for a in unlabelled)
    by_id = {a["id"]: a for a in form["annotations"]}
    for ann in raw["annotations"]:
        mine = by_id[ann["id"]]
        assert mine["keypoints"] == ann["keypoints"] and mine["image_id"] == ann["image_id"]
        assert mine["area"] == ann["area"] and "area_flagged" not in mine
        assert mine["bbox"] == pytest.approx(ann["bbox"])
    sizes = {(i["width"], i["height"]) for i in form["images"]}
    assert len(sizes) > 1  # images of different sizes
    assert all(resolve_image_path(out / "annotations.json", i).is_file() for i in form["images"])
    (cat,) = form["categories"]
    assert (
        cat["keypoints"] == raw["categories"][0]["keypoints"]
        and cat["skeleton"] == raw["categories"][0]["skeleton"]
    )


def test_coco_crowd_region_becomes_ignore_information(real_fixtures, tmp_path):
    raw = json.loads((real_fixtures / "coco" / "test_coco.json").read_text())
    raw["annotations"][3]["iscrowd"] = 1
    crowd_box, image_id = raw["annotations"][3]["bbox"], raw["annotations"][3]["image_id"]
    file = tmp_path / "crowd.json"
    file.write_text(json.dumps(raw))
    import_annotations("coco", file, real_fixtures / "coco", tmp_path / "out")
    form = imported(tmp_path / "out")
    image = next(i for i in form["images"] if i["id"] == image_id)
    assert image["ignore_regions"] == [crowd_box]
    assert (
        next(a for a in form["annotations"] if a["id"] == raw["annotations"][3]["id"])["iscrowd"]
        == 1
    )


# ---------------------------------------------------------------------------- Human3.6M
def test_h36m_metres_to_mm_and_cameras_by_subject_and_camera(real_fixtures, tmp_path):
    folder = real_fixtures / "h36m"
    done = runner.invoke(
        app,
        [
            "data",
            "import",
            "h36m",
            str(folder / "test_h36m_body3d.npz"),
            "--out",
            str(tmp_path / "h"),
        ],
        env=WIDE,
    )
    assert done.exit_code == 0, done.output
    form = imported(tmp_path / "h")
    raw = np.load(folder / "test_h36m_body3d.npz")
    cams = {c["id"]: c for c in form["cameras"]}
    assert {(c["subject"], c["name"]) for c in cams.values()} >= {
        ("S1", "54138969"),
        ("S8", "55011271"),
    }
    assert len(cams) == 44 and all(c["model"] == "h36m" for c in cams.values())
    (cat,) = form["categories"]
    assert cat["name"] == "person_h36m17" and cat["keypoints"] == list(H36M17.keypoints)
    images = {i["id"]: i for i in form["images"]}
    for i, ann in enumerate(form["annotations"]):
        image = images[ann["image_id"]]
        assert image["file_name"].endswith(str(raw["imgname"][i]).split("/")[-1])
        camera = cams[image["camera_id"]]
        assert (camera["subject"], camera["name"]) == (image["subject"], image["view"])
        cam = camera_of(camera)
        world = np.asarray(ann["keypoints_3d"], dtype=float).reshape(17, 3)
        in_camera = world @ cam.rotation.T + cam.translation  # back to the camera frame, mm
        np.testing.assert_allclose(in_camera, raw["S"][i, :, :3] * 1000.0, atol=1e-6)
        # the world 3D projects onto the 2D labels through the h36m distortion model
        kp = np.asarray(ann["keypoints"]).reshape(17, 3)
        np.testing.assert_allclose(kp[:, :2], raw["part"][i, :, :2], atol=1e-9)
        assert np.abs(project_world(world, cam) - raw["part"][i, :, :2]).max() < 0.01
    groups = {i["group"] for i in form["images"]}
    assert "S1_Directions_1:1" in groups and {i["subject"] for i in form["images"]} == {
        "S1",
        "S5",
        "S7",
        "S8",
    }


class _Smuggler:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_h36m_pickle_carrying_another_object_is_refused(real_fixtures, tmp_path):
    folder = tmp_path / "h36m"
    folder.mkdir()
    (folder / "test.npz").write_bytes(
        (real_fixtures / "h36m" / "test_h36m_body3d.npz").read_bytes()
    )
    marker = tmp_path / "ran"
    with open(folder / "cameras.pkl", "wb") as f:
        pickle.dump({("S1", "54138969"): {"R": _Smuggler(str(marker))}}, f)
    done = runner.invoke(
        app,
        ["data", "import", "h36m", str(folder / "test.npz"), "--out", str(tmp_path / "o")],
        env=WIDE,
    )
    assert done.exit_code == 1
    assert "refusing to load" in done.output and "cameras.pkl" in done.output
    assert not marker.exists() and not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- FreiHAND
def test_freihand_native_layout_projects_uv_to_a_micro_pixel(tmp_path):
    K, xyz = write_freihand_native(tmp_path / "FreiHAND", poses=3, renderings=2)
    import_annotations("freihand", tmp_path / "FreiHAND", None, tmp_path / "out")
    form = imported(tmp_path / "out")
    assert len(form["images"]) == 6 and form["categories"][0]["keypoints"] == list(HAND21.keypoints)
    images = {i["id"]: i for i in form["images"]}
    for ann in form["annotations"]:
        image = images[ann["image_id"]]
        number = int(Path(image["file_name"]).stem)
        pose = number % 3
        kp = np.asarray(ann["keypoints"]).reshape(21, 3)
        for j in range(21):
            x, y, z = xyz[pose, j]
            u = (K[pose, 0, 0] * x + K[pose, 0, 1] * y + K[pose, 0, 2] * z) / z
            v = (K[pose, 1, 0] * x + K[pose, 1, 1] * y + K[pose, 1, 2] * z) / z
            assert abs(kp[j, 0] - u) < 1e-6 and abs(kp[j, 1] - v) < 1e-6
        np.testing.assert_allclose(
            np.asarray(ann["keypoints_3d"]).reshape(21, 3), xyz[pose] * 1000.0, atol=1e-9
        )
        cam = camera_of(next(c for c in form["cameras"] if c["id"] == image["camera_id"]))
        np.testing.assert_allclose(project_world(xyz[pose] * 1000.0, cam), kp[:, :2], atol=1e-6)
        assert image["sequence"] == f"freihand_{pose:08d}"  # renderings of one pose stay together
    assert len({i["sequence"] for i in form["images"]}) == 3


def test_freihand_coco_style_fixture(real_fixtures, tmp_path):
    source = real_fixtures / "freihand" / "test_freihand.json"
    import_annotations("freihand", source, None, tmp_path / "out")
    form = imported(tmp_path / "out")
    raw = json.loads(source.read_text())
    assert form["categories"][0]["name"] == "hand" and form["categories"][0]["keypoints"] == list(
        HAND21.keypoints
    )
    by_id = {a["id"]: a for a in form["annotations"]}
    for ann in raw["annotations"]:
        assert by_id[ann["id"]]["keypoints"] == ann["keypoints"]
    sequences = {i["id"]: i["sequence"] for i in form["images"]}
    # 00017620 and 00050180 are two renderings of one FreiHAND pose (32560 apart)
    assert sequences[17620] == sequences[50180] != sequences[355]


# ---------------------------------------------------------------------------- CMU Panoptic
VIEWS = ("00_03", "00_06")


def test_panoptic_cameras_bodies_and_groups(real_fixtures, tmp_path):
    from poseops.annotations.panoptic import read_panoptic

    source = real_fixtures / "panoptic_body3d"
    images_root = tmp_path / "frames"
    for body_file in source.glob(
        "*/hdPose3d_stage1_coco19/body3DScene_*.json"
    ):  # the fixture has no frames
        frame, scene = int(body_file.stem.split("_")[-1]), body_file.parents[1].name
        for view in VIEWS:
            path = images_root / scene / "hdImgs" / view / f"{view}_{frame:08d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.zeros((1080, 1920, 3), np.uint8))
    part = read_panoptic(source, images_root, tmp_path, views=VIEWS)
    form = validate(merge([part]), "panoptic", base=tmp_path)  # every image found, no error
    for scene in ("160906_band1", "160906_band2"):
        calibration = json.loads((source / scene / f"calibration_{scene}.json").read_text())[
            "cameras"
        ]
        mine = [c for c in form["cameras"] if c["sequence"] == scene]
        assert len(mine) == len(calibration) == 520 and all(c["model"] == "opencv" for c in mine)
        hd = next(c for c in calibration if c["name"] == "00_03")
        cam = next(c for c in mine if c["name"] == "00_03")
        assert cam["t"] == pytest.approx([10.0 * v[0] for v in hd["t"]])
        assert [*cam["k"], *cam["p"]] == pytest.approx([hd["distCoef"][i] for i in (0, 1, 4, 2, 3)])
    cameras = {c["id"]: c for c in form["cameras"]}
    images = {i["id"]: i for i in form["images"]}
    assert form["categories"][0]["keypoints"] == list(PANOPTIC19.keypoints)
    checked = 0
    for body_file in sorted(source.glob("*/hdPose3d_stage1_coco19/body3DScene_*.json")):
        frame, scene = int(body_file.stem.split("_")[-1]), body_file.parents[1].name
        group = f"{scene}:{frame}"
        members = [i for i in form["images"] if i["group"] == group]
        assert sorted(i["view"] for i in members) == sorted(VIEWS)
        for body in json.loads(body_file.read_text())["bodies"]:
            joints = np.asarray(body["joints19"]).reshape(19, 4)
            anns = [
                a for a in form["annotations"] if a["person_id"] == f"{scene}:{frame}:{body['id']}"
            ]
            assert anns and {images[a["image_id"]]["group"] for a in anns} == {group}
            for ann in anns:
                world = np.asarray(
                    [np.nan if v is None else v for v in ann["keypoints_3d"]]
                ).reshape(19, 3)
                confident = joints[:, 3] > 0.1
                np.testing.assert_allclose(
                    world[confident], joints[confident, :3] * 10.0, atol=1e-9
                )
                cam = camera_of(cameras[images[ann["image_id"]]["camera_id"]])
                kp = np.asarray(ann["keypoints"]).reshape(19, 3)
                seen = kp[:, 2] > 0
                np.testing.assert_allclose(
                    kp[seen, :2], project_world(joints[seen, :3] * 10.0, cam), atol=1e-6
                )
                checked += 1
    assert checked >= 4
    # through the CLI: the default views include 00_12, whose frames are not here; --views picks
    args = [
        "data",
        "import",
        "panoptic",
        str(source / "160906_band1"),
        "--images",
        str(images_root),
    ]
    done = runner.invoke(app, [*args, "--out", str(tmp_path / "p")], env=WIDE)
    assert done.exit_code == 1 and "00_12" in done.output and not (tmp_path / "p").exists()
    done = runner.invoke(
        app, [*args, "--views", ",".join(VIEWS), "--out", str(tmp_path / "p")], env=WIDE
    )
    assert done.exit_code == 0, done.output
    one_scene = imported(tmp_path / "p")
    assert len(one_scene["cameras"]) == 520 and len(one_scene["images"]) == 2 * len(VIEWS)


# ---------------------------------------------------------------------------- PoseTrack18
def test_posetrack_fixture_imports_with_zero_errors(real_fixtures, tmp_path):
    source = real_fixtures / "posetrack18" / "annotations" / "test_posetrack18_val.json"
    done = runner.invoke(
        app, ["data", "import", "posetrack", str(source), "--out", str(tmp_path / "pt")], env=WIDE
    )
    assert done.exit_code == 0, done.output
    form = imported(tmp_path / "pt")
    raw = json.loads(source.read_text())
    assert len(form["annotations"]) == len(raw["annotations"])
    raw_ann = {a["id"]: a for a in raw["annotations"]}
    raw_img = {i["id"]: i for i in raw["images"]}
    for ann in form["annotations"]:
        src = raw_ann[ann["id"]]
        assert ann["track_id"] == src["track_id"] and ann["keypoints"] == src["keypoints"]
        assert ann["area_flagged"] and ann["area"] == pytest.approx(ann["bbox"][2] * ann["bbox"][3])
    above = next(a for a in form["annotations"] if "bbox_raw" in a and a["bbox_raw"][1] < 0)
    assert above["bbox"][1] == 0 and above["bbox"][3] == pytest.approx(sum(above["bbox_raw"][1::2]))
    kp = np.asarray(above["keypoints"]).reshape(-1, 3)
    assert ((kp[:, 1] < 0) & (kp[:, 2] > 0)).any()  # a labelled keypoint above the frame is kept
    for image in form["images"]:
        src = raw_img[image["id"]]
        assert image["sequence"] == src["vid_id"] and image["split"] == "val"
        assert len(image["ignore_regions"]) == len(src["ignore_regions_x"])
        x, y, w, h = image["ignore_regions"][0]
        assert (x, y) == (min(src["ignore_regions_x"][0]), min(src["ignore_regions_y"][0]))
        assert x + w == max(src["ignore_regions_x"][0]) and y + h == max(src["ignore_regions_y"][0])
        assert resolve_image_path(tmp_path / "pt" / "annotations.json", image).is_file()


def test_posetrack_folder_of_videos(real_fixtures, tmp_path):
    import_annotations(
        "posetrack", real_fixtures / "posetrack18" / "annotations" / "val", None, tmp_path / "o"
    )
    form = imported(tmp_path / "o")
    assert {i["sequence"] for i in form["images"]} == {"003418", "009473", "012834"}


def test_unknown_format_is_refused_by_the_cli(tmp_path):
    done = runner.invoke(
        app, ["data", "import", "mpii", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert done.exit_code != 0 and not (tmp_path / "o").exists()


def test_merge_renumbers_cameras(real_fixtures, tmp_path):
    from poseops.annotations.h36m import read_h36m

    part = read_h36m(real_fixtures / "h36m" / "test_h36m_body3d.npz", None, tmp_path)
    merged = merge([part, part])
    assert len(merged["cameras"]) == 88 and len({c["id"] for c in merged["cameras"]}) == 88
    first, second = merged["images"][0], merged["images"][len(part["images"])]
    one = next(c for c in merged["cameras"] if c["id"] == first["camera_id"])
    two = next(c for c in merged["cameras"] if c["id"] == second["camera_id"])
    assert first["camera_id"] != second["camera_id"] and {**one, "id": 0} == {**two, "id": 0}
    with pytest.raises(DataError, match="duplicate image id"):
        validate({**part, "images": part["images"] + part["images"][:1]}, "x.json")


def test_params_source_passes_views_to_the_panoptic_importer(real_fixtures, tmp_path):
    """`data.annotations: [{format: panoptic, file, images, views}]` reaches the importer's `views`."""
    from poseops.annotations.internal import build_annotations
    from poseops.config import AnnotationSource

    source = real_fixtures / "panoptic_body3d" / "160906_band1"
    images_root = tmp_path / "frames"
    for body_file in source.glob("hdPose3d_stage1_coco19/body3DScene_*.json"):
        frame = int(body_file.stem.split("_")[-1])
        path = images_root / source.name / "hdImgs" / "00_12" / f"00_12_{frame:08d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.zeros((1080, 1920, 3), np.uint8))
    out = tmp_path / "labels.json"
    entry = AnnotationSource(
        format="panoptic", file=str(source), images=str(images_root), views=["00_12"]
    )
    build_annotations(None, [entry], out)
    form = json.loads(out.read_text())
    assert form["images"] and {img["view"] for img in form["images"]} == {"00_12"}
