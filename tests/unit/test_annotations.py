"""Internal annotation form: build from synthetic captures, merge COCO, validation errors."""

from __future__ import annotations

import json
import shutil

import pytest

from poseops.annotations.internal import build_annotations, load_annotations, resolve_image_path
from poseops.capture.synthetic_hands import read_hand_sequences, write_hand_captures
from poseops.config import AnnotationSource, CaptureParams, HandCaptureParams
from poseops.errors import ConfigError, DataError
from poseops.paths import fixtures_dir
from poseops.skeletons import HAND21

PARAMS = CaptureParams(
    seed=1, hands=HandCaptureParams(sequences=2, frames_per_sequence=3, image_size=64)
)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    write_hand_captures(out, PARAMS)
    return out


def test_build_from_synthetic(raw, tmp_path):
    out = tmp_path / "labels" / "annotations.json"
    summary = build_annotations(raw, [], out)
    form = load_annotations(out)
    assert summary["images"] == len(form["images"]) == 6
    assert summary["annotations"] == len(form["annotations"]) == 6
    (cat,) = form["categories"]
    assert cat["keypoints"] == list(HAND21.keypoints)
    assert cat["skeleton"] == [[a + 1, b + 1] for a, b in HAND21.edges]
    for image in form["images"]:
        assert resolve_image_path(out, image).is_file()
        assert image["frame_index"] in (0, 1, 2) and image["sequence"].startswith("seq_")
        assert image["subject"] and image["source"] == "synthetic"
    labels = {r["id"]: r for r in read_hand_sequences(raw)}
    first = labels["seq_0000"]["frames"][0]
    ann = form["annotations"][0]
    assert ann["keypoints"] == [float(v) for p in first["keypoints"] for v in p]
    assert len(ann["keypoints_clean"]) == 2 * HAND21.num_keypoints
    assert ann["num_keypoints"] == sum(1 for p in first["keypoints"] if p[2] > 0)
    assert ann["area"] == pytest.approx(ann["bbox"][2] * ann["bbox"][3])


def test_missing_manifest_names_the_folder(raw, tmp_path):
    copy = tmp_path / "unpublished"
    shutil.copytree(raw, copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(DataError, match="unpublished"):
        build_annotations(copy, [], tmp_path / "a.json")
    assert not (tmp_path / "a.json").exists()


def test_missing_source_file_is_a_config_error_naming_it(raw, tmp_path):
    with pytest.raises(ConfigError, match="h36m source 'x.npz' not found"):
        build_annotations(raw, [AnnotationSource(format="h36m", file="x.npz")], tmp_path / "a.json")
    assert not (tmp_path / "a.json").exists()


@pytest.mark.skipif(
    fixtures_dir() is None or not (fixtures_dir() / "coco" / "test_coco.json").is_file(),
    reason="no COCO fixture",
)
def test_merge_coco_source(raw, tmp_path):
    coco = fixtures_dir() / "coco" / "test_coco.json"
    out = tmp_path / "annotations.json"
    summary = build_annotations(raw, [AnnotationSource(format="coco", file=str(coco))], out)
    form = load_annotations(out)
    source = json.loads(coco.read_text())
    assert summary["images"] == 6 + len(source["images"])
    assert len({i["id"] for i in form["images"]}) == len(form["images"])
    assert len({a["id"] for a in form["annotations"]}) == len(form["annotations"])
    assert {c["name"] for c in form["categories"]} == {"hand", "person"}
    person = next(c for c in form["categories"] if c["name"] == "person")
    still = [i for i in form["images"] if i["frame_index"] is None]
    assert len(still) == len(source["images"])
    assert all(resolve_image_path(out, i).is_file() for i in still)
    assert all(
        len(a["keypoints"]) == 51 for a in form["annotations"] if a["category_id"] == person["id"]
    )


def test_validation_names_file_and_record(raw, tmp_path):
    out = tmp_path / "annotations.json"
    build_annotations(raw, [], out)
    form = json.loads(out.read_text())
    form["annotations"][2]["keypoints"] = form["annotations"][2]["keypoints"][:-3]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(form))
    with pytest.raises(DataError, match=r"bad\.json.*annotation id 3"):
        load_annotations(bad)
    form = json.loads(out.read_text())
    form["annotations"][0]["image_id"] = 999
    bad.write_text(json.dumps(form))
    with pytest.raises(DataError, match=r"bad\.json.*999"):
        load_annotations(bad)
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json"):
        load_annotations(bad)
