"""What counts as bad input for `data import` and `data validate`, and what is mended instead."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from poseops.annotations.checks import check
from poseops.annotations.internal import validate
from poseops.cli.main import app
from poseops.errors import DataError

runner = CliRunner()
WIDE = {"COLUMNS": "4000"}
NAMES = ["a", "b", "c"]


def small_coco(folder: Path) -> dict:
    """Two 100x80 images, three people with 3 keypoints each, written under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("one.png", "two.png"):
        cv2.imwrite(str(folder / name), np.full((80, 100, 3), 90, np.uint8))
    return {
        "images": [
            {"id": 1, "file_name": "one.png", "width": 100, "height": 80},
            {"id": 2, "file_name": "two.png", "width": 100, "height": 80},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "keypoints": [10, 10, 2, 20, 20, 2, 30, 30, 1],
                "num_keypoints": 3,
                "bbox": [5, 5, 30, 30],
                "area": 900,
                "iscrowd": 0,
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 1,
                "keypoints": [50, 50, 2, 0, 0, 0, 60, 60, 2],
                "num_keypoints": 2,
                "bbox": [45, 45, 20, 20],
                "area": 400,
                "iscrowd": 0,
            },
            {
                "id": 12,
                "image_id": 2,
                "category_id": 1,
                "keypoints": [10, 10, 2, 20, 20, 2, 30, 30, 2],
                "num_keypoints": 3,
                "bbox": [5, 5, 30, 30],
                "area": 900,
                "iscrowd": 0,
            },
        ],
        "categories": [
            {"id": 1, "name": "thing", "keypoints": NAMES, "skeleton": [[1, 2], [2, 3]]}
        ],
    }


def spoil(data: dict, folder: Path, case: str) -> tuple[dict | None, str]:
    """The bad variant of `data` (None: write a truncated file) and the record the message must name."""
    bad = copy.deepcopy(data)
    anns = bad["annotations"]
    if case == "truncated_json":
        return None, "line"
    if case == "wrong_keypoint_length":
        anns[1]["keypoints"] = anns[1]["keypoints"][:-3]
        return bad, "annotation id 11"
    if case == "nan":
        anns[2]["keypoints"][3] = math.nan
        return bad, "annotation id 12"
    if case == "box_without_overlap":
        anns[0]["bbox"] = [150, 10, 20, 20]
        return bad, "annotation id 10"
    if case == "missing_image":
        (folder / "two.png").unlink()
        return bad, "image id 2"
    if case == "zero_byte_image":
        (folder / "two.png").write_bytes(b"")
        return bad, "image id 2"
    if case == "duplicate_ids":
        anns[2]["id"] = 11
        return bad, "annotation id 11"
    if case == "unknown_category":
        anns[0]["category_id"] = 7
        return bad, "annotation id 10"
    if case == "negative_area":
        anns[1]["area"] = -5.0
        return bad, "annotation id 11"
    raise AssertionError(case)


CASES = [
    "truncated_json",
    "wrong_keypoint_length",
    "nan",
    "box_without_overlap",
    "missing_image",
    "zero_byte_image",
    "duplicate_ids",
    "unknown_category",
    "negative_area",
]


def write(file: Path, data: dict | None, good: dict) -> None:
    if data is None:
        text = json.dumps(good)
        file.write_text(text[: len(text) // 2])
    else:
        file.write_text(json.dumps(data))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_to_import(case, tmp_path):
    images = tmp_path / "images"
    good = small_coco(images)
    bad, record = spoil(good, images, case)
    file = tmp_path / "labels.json"
    write(file, bad, good)
    out = tmp_path / "out"
    done = runner.invoke(
        app,
        ["data", "import", "coco", str(file), "--images", str(images), "--out", str(out)],
        env=WIDE,
    )
    assert done.exit_code != 0
    assert "labels.json" in done.output and record in done.output, done.output
    assert "Traceback" not in done.output
    assert not out.exists()  # nothing left behind


@pytest.mark.parametrize("case", CASES)
def test_bad_input_to_validate(case, tmp_path):
    images = tmp_path / "images"
    good = small_coco(images)
    published = tmp_path / "published"
    done = runner.invoke(
        app,
        [
            "data",
            "import",
            "coco",
            str(tmp_path / "src.json"),
            "--images",
            str(images),
            "--out",
            str(published),
        ],
    )
    assert done.exit_code == 1  # no such file yet
    (tmp_path / "src.json").write_text(json.dumps(good))
    done = runner.invoke(
        app,
        [
            "data",
            "import",
            "coco",
            str(tmp_path / "src.json"),
            "--images",
            str(images),
            "--out",
            str(published),
        ],
    )
    assert done.exit_code == 0, done.output
    internal = json.loads((published / "annotations.json").read_text())
    assert runner.invoke(app, ["data", "validate", str(published)]).exit_code == 0
    bad, record = spoil(internal, images, case)
    file = published / "annotations.json"
    write(file, bad, internal)
    before = sorted(p.name for p in published.iterdir())
    done = runner.invoke(app, ["data", "validate", str(published)], env=WIDE)
    assert done.exit_code != 0
    assert "annotations.json" in done.output and record in done.output, done.output
    assert sorted(p.name for p in published.iterdir()) == before  # validate writes nothing


def test_every_bad_record_is_named_at_once(tmp_path):
    good = small_coco(tmp_path)
    good["annotations"][0]["keypoints"] = [1, 2, 3]
    good["annotations"][2]["area"] = -1
    with pytest.raises(DataError) as err:
        validate(good, "x.json", base=tmp_path)
    assert (
        "2 problems" in str(err.value)
        and "annotation id 10" in str(err.value)
        and "annotation id 12" in str(err.value)
    )


def test_partly_outside_box_is_clipped_and_kept_raw(tmp_path):
    data = small_coco(tmp_path)
    data["annotations"][0]["bbox"] = [-10, 60, 40, 40]  # sticks out left and below
    del data["annotations"][0]["area"]
    data["annotations"][1]["keypoints"][0:2] = [-4.0, 95.0]  # a labelled point outside the frame
    mended = validate(data, "x.json", base=tmp_path)
    first, second = mended["annotations"][0], mended["annotations"][1]
    assert first["bbox"] == [0.0, 60.0, 30.0, 20.0] and first["bbox_raw"] == [-10, 60, 40, 40]
    assert first["area"] == 600.0 and first["area_flagged"] is True
    assert second["keypoints"][0:3] == [-4.0, 95.0, 2] and "bbox_raw" not in second
    assert "bbox_raw" not in data["annotations"][0]  # the input is not modified
    assert validate(mended, "x.json") == mended  # mending is idempotent


def test_a_subject_or_sequence_in_two_splits_is_named(tmp_path):
    data = small_coco(tmp_path)
    for image, split in zip(data["images"], ("train", "val")):
        image.update(subject="S9", sequence=f"seq{image['id']}", split=split, source="h36m")
    _, problems = check(data, "x.json")
    assert len(problems) == 1 and "subject 'S9'" in problems[0] and "two splits" in problems[0]
    data["images"][1].update(subject="S11", sequence="seq1")
    _, problems = check(data, "x.json")
    assert len(problems) == 1 and "sequence 'seq1'" in problems[0]
    data["images"][1]["sequence"] = "seq2"
    assert check(data, "x.json")[1] == []


def test_validate_cli_on_a_plain_internal_file_and_a_split_conflict(tmp_path):
    data = small_coco(tmp_path)
    for image, split in zip(data["images"], ("train", "val")):
        image.update(
            frame_index=None, sequence="clip_7", subject=None, source="ingest", split=split
        )
    file = tmp_path / "labels.json"
    file.write_text(json.dumps(data))
    done = runner.invoke(app, ["data", "validate", str(file)], env=WIDE)
    assert (
        done.exit_code == 1 and "sequence 'clip_7'" in done.output and "labels.json" in done.output
    )


def test_a_bad_params_source_is_named_by_its_own_file_and_ids(tmp_path):
    from poseops.annotations.internal import build_annotations
    from poseops.config import AnnotationSource

    data = small_coco(tmp_path / "images")
    data["annotations"][1]["keypoints"][4] = math.inf
    (tmp_path / "user.json").write_text(json.dumps(data))
    source = AnnotationSource(
        format="coco", file=str(tmp_path / "user.json"), images=str(tmp_path / "images")
    )
    out = tmp_path / "labels" / "labels.json"
    with pytest.raises(DataError, match=r"user\.json: annotation id 11 "):
        build_annotations(None, [source, source], out)
    assert not out.exists()
