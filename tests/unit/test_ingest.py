"""`poseops data ingest`: videos and image folders -> raw captures + manifest; bad inputs quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from poseops.capture.common import read_video
from poseops.cli.main import app
from poseops.storage import sha256_file

runner = CliRunner()
WIDE = {"COLUMNS": "4000"}


def frame(i: int) -> np.ndarray:
    """A 48x64 frame whose content tells its index."""
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :, 0] = 10 * i
    cv2.putText(img, str(i), (5, 35), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return img


def write_video(path: Path, frames: int, fourcc: str = "FFV1") -> list[np.ndarray]:
    images = [frame(i) for i in range(frames)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (64, 48))
    assert writer.isOpened()
    for img in images:
        writer.write(img)
    writer.release()
    return images


def user_captures(root: Path) -> dict:
    """A good video, a truncated MP4, and a folder with 3 good images, a corrupt one and an empty one."""
    (root / "clips").mkdir(parents=True)
    good = write_video(root / "clips" / "walk.avi", 10)
    write_video(root / "clips" / "broken.mp4", 12, "mp4v")
    data = (root / "clips" / "broken.mp4").read_bytes()
    (root / "clips" / "broken.mp4").write_bytes(data[: len(data) * 2 // 3])
    (root / "stills").mkdir()
    for i in range(3):
        cv2.imwrite(str(root / "stills" / f"img_{i}.png"), frame(i))
    (root / "stills" / "img_3.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    (root / "stills" / "img_4.png").write_bytes(b"")
    return {"good": good}


def test_partial_ingest_exits_3_and_quarantines_with_reasons(tmp_path):
    made = user_captures(tmp_path / "in")
    out = tmp_path / "raw"
    done = runner.invoke(
        app, ["data", "ingest", str(tmp_path / "in"), "--out", str(out), "--every", "3"], env=WIDE
    )
    assert done.exit_code == 3, done.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "ingest" and manifest["counts"]["sequences"] == 2
    reasons = {Path(q["source"]).name: q["reason"] for q in manifest["quarantined"]}
    assert set(reasons) == {"broken.mp4", "img_3.jpg", "img_4.png"}
    assert "truncated" in reasons["broken.mp4"] and "zero bytes" in reasons["img_4.png"]
    assert "broken.mp4" in done.output
    video = next(s for s in manifest["sequences"] if s["kind"] == "video")
    assert video["frame_indices"] == [0, 3, 6, 9] and video["source"]["frames"] == 10
    assert video["source"]["path"] == str((tmp_path / "in" / "clips" / "walk.avi").resolve())
    assert video["sha256"] == sha256_file(out / video["file"])
    assert video["source"]["sha256"] == sha256_file(tmp_path / "in" / "clips" / "walk.avi")
    decoded = read_video(out / video["file"])
    assert len(decoded) == 4
    for kept, index in zip(decoded, video["frame_indices"]):
        np.testing.assert_array_equal(kept, made["good"][index])  # FFV1 both ways: lossless
    stills = next(s for s in manifest["sequences"] if s["kind"] == "images")
    assert stills["frame_indices"] == [0, 1, 2] and stills["frames"] == 3
    for image in stills["images"]:
        copy = out / image["file"]
        assert copy.read_bytes() == Path(image["source"]).read_bytes()
        assert image["sha256"] == sha256_file(copy) and (image["width"], image["height"]) == (
            64,
            48,
        )
    assert not list(out.glob(".*tmp*"))


def test_clean_ingest_exits_0_and_nothing_readable_exits_1(tmp_path):
    (tmp_path / "ok").mkdir()
    write_video(tmp_path / "ok" / "a.avi", 4)
    done = runner.invoke(
        app, ["data", "ingest", str(tmp_path / "ok" / "a.avi"), "--out", str(tmp_path / "o1")]
    )
    assert done.exit_code == 0, done.output
    manifest = json.loads((tmp_path / "o1" / "manifest.json").read_text())
    assert manifest["quarantined"] == [] and manifest["sequences"][0]["frame_indices"] == [
        0,
        1,
        2,
        3,
    ]

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    (tmp_path / "bad" / "y.png").write_bytes(b"garbage")
    done = runner.invoke(
        app, ["data", "ingest", str(tmp_path / "bad"), "--out", str(tmp_path / "o2")], env=WIDE
    )
    assert done.exit_code == 1 and "x.mp4" in done.output and "y.png" in done.output
    assert not (tmp_path / "o2").exists()


def test_real_mp4_every_second_frame_and_its_truncated_copy(real_fixtures, tmp_path):
    clip = (
        real_fixtures / "posetrack18" / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test.mp4"
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "clip.mp4").write_bytes(clip.read_bytes())
    data = clip.read_bytes()
    (tmp_path / "in" / "cut.mp4").write_bytes(data[: len(data) // 2])
    done = runner.invoke(
        app,
        ["data", "ingest", str(tmp_path / "in"), "--out", str(tmp_path / "raw"), "--every", "2"],
    )
    assert done.exit_code == 3, done.output
    manifest = json.loads((tmp_path / "raw" / "manifest.json").read_text())
    (entry,) = manifest["sequences"]
    source_frames = read_video(clip)
    assert entry["frame_indices"] == list(range(0, len(source_frames), 2))
    kept = read_video(tmp_path / "raw" / entry["file"])
    assert (entry["width"], entry["height"]) == (
        source_frames[0].shape[1],
        source_frames[0].shape[0],
    )
    for a, index in zip(kept, entry["frame_indices"]):
        np.testing.assert_array_equal(a, source_frames[index])
    assert [Path(q["source"]).name for q in manifest["quarantined"]] == ["cut.mp4"]
