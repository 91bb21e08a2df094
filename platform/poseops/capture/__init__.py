"""Captures: synthetic generators and ingest of videos/folders into per-sequence files + a manifest.

A capture root (the pipeline's data/raw/synthetic, or `poseops data synth --out`) holds one published
capture folder per part: `hands/` (synthetic_hands) and `bodies/` (synthetic_bodies), which the annotate
stage merges into the internal annotations, and `sequences/` (synthetic_sequences: long labels-only
motions for lifting), which it converts on its own (`poseops.annotations.sequences`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from poseops.config import CaptureParams

CAPTURE_PARTS = (
    "hands",
    "bodies",
)  # sub-folders of a capture root, in the order they are written and merged
LABEL_PARTS = ("sequences",)  # labels-only parts: written after CAPTURE_PARTS, never merged


def write_captures(
    root: str | Path, params: CaptureParams, on_part=None, keep_empty: bool = False
) -> dict[str, dict[str, Any]]:
    """Render every part `params` configures into `root/<part>`; a part set to null is removed, or with
    `keep_empty` left as an empty folder (the pipeline's capture stage: each part is its own DVC output,
    which must exist; readers skip empty part folders). Returns part -> manifest. `on_part(part)` is
    called before each part renders (progress)."""
    from poseops.capture.synthetic_bodies import write_body_captures
    from poseops.capture.synthetic_hands import write_hand_captures
    from poseops.capture.synthetic_sequences import write_sequence_captures

    writers = {
        "hands": write_hand_captures,
        "bodies": write_body_captures,
        "sequences": write_sequence_captures,
    }
    manifests = {}
    for part in CAPTURE_PARTS + LABEL_PARTS:
        folder = Path(root) / part
        if getattr(params, part) is None:
            shutil.rmtree(folder, ignore_errors=True)
            if keep_empty:
                folder.mkdir(parents=True)
            continue
        if on_part is not None:
            on_part(part)
        manifests[part] = writers[part](folder, params)
    return manifests


def read_label_records(folder: str | Path) -> Iterator[dict[str, Any]]:
    """The per-sequence label records of a published capture folder (its manifest's `labels.file`, JSON
    lines), one at a time, in file order (the manifest's). DataError, naming the file and line, when the
    folder is unpublished, the labels file is missing, or a line is not a record with `id` and `frames`."""
    from poseops.errors import DataError
    from poseops.storage import filesystem, join, require_published

    manifest = require_published(folder, "manifest.json")
    url = join(folder, manifest["labels"]["file"])
    fs, path = filesystem(url)
    if not fs.exists(path):
        raise DataError(f"{url}: labels listed in {join(folder, 'manifest.json')} are missing")
    with fs.open(path, "r") as fh:
        for line_no, line in enumerate(fh, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{url}: line {line_no}: not valid JSON ({e})") from None
            if not isinstance(record, dict) or not {"id", "frames"} <= record.keys():
                raise DataError(
                    f"{url}: line {line_no}: not a sequence record (needs 'id' and 'frames')"
                )
            yield record
