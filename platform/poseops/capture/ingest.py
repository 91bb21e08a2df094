"""Ingest of users' captures: video files and image folders -> raw captures per sequence + manifest.

Inputs (PATH): a video file, an image folder, or a folder holding any of them (searched
recursively). Each video and each folder of images is one sequence, named after its path under PATH.

Output folder (like the synthetic captures: per-sequence media, manifest.json written last):
    <out>/<sequence>.avi           a video's every Nth frame (decoded with OpenCV), lossless FFV1
    <out>/<sequence>/<i:06d>.<ext> an image folder's images, byte-for-byte copies (i = position in the
                                   sorted listing, so a quarantined image leaves a gap)
    <out>/manifest.json            kind "ingest"; per sequence: its files with sha256, the source path
                                   and sha256, source frame indices, size; `quarantined`: [{source,
                                   sequence, reason}] for a video that cannot be decoded to its end
                                   (truncated MP4, ...) or an image that cannot be decoded

A sequence is written only when it has frames; nothing at all is written when no input can be read.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from poseops.errors import DataError
from poseops.storage import filesystem, join, sha256_file, write_bytes_atomic, write_json_atomic

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")
OUTPUT_VIDEO = {"suffix": ".avi", "fourcc": "FFV1", "codec": "ffv1 (lossless)"}
MANIFEST = "manifest.json"


def find_inputs(path: Path) -> list[tuple[str, Path]]:
    """[("video", file) | ("images", folder)] under `path`, in a stable order."""
    if path.is_file():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return [("video", path)]
        raise DataError(f"{path}: not a video ({', '.join(VIDEO_SUFFIXES)}) nor a folder")
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    found = []
    for folder in sorted([path, *(p for p in path.rglob("*") if p.is_dir())]):
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in files):
            found.append(("images", folder))
        found += [("video", p) for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    return found


def sequence_name(item: Path, root: Path, taken: set[str]) -> str:
    """A file-system-safe, unique name from the item's path under the ingested root."""
    rel = item.relative_to(root) if item != root else Path(root.name)
    stem = rel.with_suffix("") if item.is_file() else rel
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", "__".join(stem.parts)) or "sequence"
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}-{n}", n + 1
    taken.add(unique)
    return unique


def ingest_video(
    source: Path, out: Path, name: str, every: int
) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest entry, None) or (None, reason). Keeps frames 0, N, 2N, ...; the whole video is
    quarantined when it cannot be opened or stops decoding before its declared frame count."""
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        return (
            None,
            "cannot open the video (truncated, e.g. an MP4 without its index, or not a video)",
        )
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    target = out / f"{name}{OUTPUT_VIDEO['suffix']}"
    tmp = out / f".{name}.tmp{OUTPUT_VIDEO['suffix']}"
    writer, kept, decoded, size = None, [], 0, None
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if decoded % every == 0:
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    writer = cv2.VideoWriter(
                        str(tmp),
                        cv2.VideoWriter_fourcc(*OUTPUT_VIDEO["fourcc"]),
                        max(fps / every, 1.0),
                        size,
                    )
                    if not writer.isOpened():
                        raise DataError(
                            f"{tmp}: OpenCV cannot open an {OUTPUT_VIDEO['fourcc']} writer"
                        )
                writer.write(frame)
                kept.append(decoded)
            decoded += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    reason = None
    if decoded == 0:
        reason = "no frame could be decoded (corrupt or truncated video)"
    elif declared > 0 and decoded < declared - 1:
        reason = f"truncated or corrupt: decoded {decoded} of the {declared} frames it declares"
    if reason:
        tmp.unlink(missing_ok=True)
        return None, reason
    tmp.replace(target)
    entry = {
        "id": name,
        "kind": "video",
        "file": target.name,
        "sha256": sha256_file(target),
        "frames": len(kept),
        "frame_indices": kept,
        "every": every,
        "fps": fps / every if fps else None,
        "width": size[0],
        "height": size[1],
        "codec": OUTPUT_VIDEO["codec"],
        "subject": None,
        "source": {
            "path": str(source.resolve()),
            "sha256": sha256_file(source),
            "frames": decoded,
            "fps": fps,
        },
    }
    return entry, None


def ingest_images(
    folder: Path, out: Path, name: str
) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """(manifest entry or None when no image is readable, quarantined [{source, sequence, reason}])."""
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    frames, quarantined = [], []
    for index, path in enumerate(files):
        data = path.read_bytes()
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if pixels is None:
            reason = (
                "empty file (zero bytes)"
                if not data
                else "cannot be decoded as an image (corrupt or truncated)"
            )
            quarantined.append({"source": str(path.resolve()), "sequence": name, "reason": reason})
            continue
        target = out / name / f"{index:06d}{path.suffix.lower()}"
        write_bytes_atomic(target, data)
        frames.append(
            {
                "file": f"{name}/{target.name}",
                "frame_index": index,
                "sha256": sha256_file(target),
                "width": int(pixels.shape[1]),
                "height": int(pixels.shape[0]),
                "source": str(path.resolve()),
            }
        )
    if not frames:
        return None, quarantined
    entry = {
        "id": name,
        "kind": "images",
        "folder": name,
        "frames": len(frames),
        "images": frames,
        "frame_indices": [f["frame_index"] for f in frames],
        "subject": None,
        "source": {"path": str(folder.resolve()), "files": len(files)},
    }
    return entry, quarantined


def ingest(path: str | Path, out: str | Path, every: int = 1) -> dict[str, Any]:
    """Ingest `path` into the capture folder `out` (a local path or fsspec URL); returns the manifest.

    Raises DataError naming each input when nothing could be ingested (and writes nothing then).
    """
    if every < 1:
        raise DataError(f"--every must be >= 1 (got {every})")
    root = Path(path)
    inputs = find_inputs(root)
    if not inputs:
        raise DataError(f"{root}: no video ({', '.join(VIDEO_SUFFIXES)}) or image file found")
    fs, out_path = filesystem(out)
    from fsspec.implementations.local import LocalFileSystem

    local = isinstance(fs, LocalFileSystem)
    stage = Path(out_path) if local else Path(tempfile.mkdtemp(prefix="poseops-ingest-"))
    if local and fs.exists(join(out_path, MANIFEST)):
        fs.rm(join(out_path, MANIFEST))  # unpublish before touching anything
    created = not stage.exists()
    stage.mkdir(parents=True, exist_ok=True)
    sequences, quarantined, taken = [], [], set()
    try:
        for kind, item in inputs:
            name = sequence_name(item, root, taken)
            if kind == "video":
                entry, reason = ingest_video(item, stage, name, every)
                if reason:
                    quarantined.append(
                        {"source": str(item.resolve()), "sequence": name, "reason": reason}
                    )
            else:
                entry, bad = ingest_images(item, stage, name)
                quarantined += bad
            if entry is not None:
                sequences.append(entry)
        if not sequences:
            if created:
                shutil.rmtree(stage, ignore_errors=True)
            reasons = "\n  ".join(f"{q['source']}: {q['reason']}" for q in quarantined)
            raise DataError(f"{root}: nothing could be ingested:\n  {reasons}")
        manifest = {
            "kind": "ingest",
            "source": str(root.resolve()),
            "every": every,
            "sequences": sequences,
            "quarantined": quarantined,
            "counts": {
                "sequences": len(sequences),
                "frames": sum(s["frames"] for s in sequences),
                "quarantined": len(quarantined),
            },
        }
        if not local:
            for file in sorted(p for p in stage.rglob("*") if p.is_file()):
                fs.put_file(str(file), join(out_path, str(file.relative_to(stage))))
        write_json_atomic(join(out, MANIFEST), manifest)
        return manifest
    finally:
        if not local:
            shutil.rmtree(stage, ignore_errors=True)
