"""`poseops data export coco`: what pycocotools loads (and scores) from the internal form."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from poseops.annotations.internal import build_annotations, load_annotations
from poseops.capture.synthetic_hands import write_hand_captures
from poseops.cli.main import app
from poseops.config import AnnotationSource, CaptureParams, HandCaptureParams

runner = CliRunner()


def quiet_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_exported_coco_loads_and_scores_itself_perfectly(real_fixtures, tmp_path):
    source = real_fixtures / "coco" / "test_coco.json"
    assert (
        runner.invoke(
            app, ["data", "import", "coco", str(source), "--out", str(tmp_path / "imp")]
        ).exit_code
        == 0
    )
    out = tmp_path / "export" / "coco.json"
    done = runner.invoke(app, ["data", "export", "coco", str(tmp_path / "imp"), str(out)])
    assert done.exit_code == 0, done.output
    coco = quiet_coco(out)
    raw = json.loads(source.read_text())
    assert sorted(coco.getImgIds()) == sorted(i["id"] for i in raw["images"])
    assert (
        len(coco.getAnnIds()) == 14
        and coco.loadCats(1)[0]["keypoints"] == raw["categories"][0]["keypoints"]
    )
    for ann in raw["annotations"]:
        (mine,) = coco.loadAnns([ann["id"]])
        assert mine["keypoints"] == ann["keypoints"] and mine["area"] == ann["area"]
    for image in coco.loadImgs(coco.getImgIds()):
        assert (out.parent / image["file_name"]).resolve().is_file()
    detections = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in raw["annotations"]
        if a["num_keypoints"] > 0
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        result = coco.loadRes(detections)
        evaluator = COCOeval(coco, result, "keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] > 0.99  # AP of the labels against themselves


def test_export_of_merged_sources_keeps_ids_unique_and_cameras(real_fixtures, tmp_path):
    raw_dir = tmp_path / "raw"
    write_hand_captures(
        raw_dir,
        CaptureParams(
            seed=2, hands=HandCaptureParams(sequences=2, frames_per_sequence=2, image_size=64)
        ),
    )
    labels = tmp_path / "labels" / "labels.json"
    build_annotations(
        raw_dir,
        [
            AnnotationSource(
                format="h36m", file=str(real_fixtures / "h36m" / "test_h36m_body3d.npz")
            ),
            AnnotationSource(format="coco", file=str(real_fixtures / "coco" / "test_coco.json")),
        ],
        labels,
    )
    out = tmp_path / "coco.json"
    assert runner.invoke(app, ["data", "export", "coco", str(labels), str(out)]).exit_code == 0
    coco = quiet_coco(out)
    internal = load_annotations(labels)
    assert len(coco.getImgIds()) == len(internal["images"]) == 4 + 4 + 4
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {
        "hand",
        "person_h36m17",
        "person",
    }
    exported = json.loads(out.read_text())
    assert len(exported["cameras"]) == 44
    h36m = [a for a in exported["annotations"] if len(a["keypoints"]) == 51 and "keypoints_3d" in a]
    assert len(h36m) == 4 and all(
        np.isfinite([v for v in a["keypoints_3d"] if v is not None]).all() for a in h36m
    )
    videos = [i for i in coco.loadImgs(coco.getImgIds()) if i["frame_index"] is not None]
    assert len(videos) == 4 and all(
        (out.parent / i["file_name"]).resolve().is_file() for i in videos
    )


def test_export_of_something_that_is_not_annotations_fails_cleanly(tmp_path):
    (tmp_path / "folder").mkdir()
    done = runner.invoke(
        app, ["data", "export", "coco", str(tmp_path / "folder"), str(tmp_path / "x.json")]
    )
    assert (
        done.exit_code == 1
        and "manifest.json" in done.output
        and not (tmp_path / "x.json").exists()
    )


def test_import_validate_export_through_an_object_store_url(real_fixtures, tmp_path):
    """memory:// stands for s3://: file names become absolute, the manifest still comes last."""
    from fsspec import filesystem

    from poseops.annotations.export import export_coco
    from poseops.annotations.internal import check_annotations_url, import_annotations

    url = "memory://poseops-test-export/coco"
    import_annotations("coco", real_fixtures / "coco" / "test_coco.json", None, url)
    try:
        assert check_annotations_url(url)[0]["annotations"] == 14
        export_coco(url, tmp_path / "coco.json")
        coco = quiet_coco(tmp_path / "coco.json")
        assert all(
            Path(i["file_name"]).resolve().is_file() for i in coco.loadImgs(coco.getImgIds())
        )
    finally:
        filesystem("memory").rm("/poseops-test-export", recursive=True)
