"""Predicted 2D tracks of the long sequences: what `predict@<family>` writes and a lifter reads.

Folder (a DVC output, e.g. data/predicted/hrnet_am/):
    tracks.parquet   one row per (sequence, view, frame): keypoints [K*2] image px (the family's skeleton),
                     scores [K] (heatmap peaks in [0, 1]), box [x, y, w, h] the crop was cut around
    manifest.json    written last (a folder without it is not a result): family, skeleton, keypoint
                     names, protocol (how boxes and crops were made), the checkpoint's weights sha256,
                     the tracks file's sha256, counts, and the (sequence, view) pairs it holds
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from poseops.errors import DataError
from poseops.storage import require_published, sha256_file, write_json_atomic

TRACKS_FILE = "tracks.parquet"
MANIFEST = "manifest.json"
TRACKS_SCHEMA = pa.schema(
    [
        ("sequence", pa.string()),
        ("view", pa.string()),
        ("frame", pa.int32()),
        ("keypoints", pa.list_(pa.float32())),
        ("scores", pa.list_(pa.float32())),
        ("box", pa.list_(pa.float32())),
    ]
)


def write_tracks(folder: str | Path, tables: Iterable[pa.Table], manifest: dict) -> dict:
    """Write the rows (TRACKS_SCHEMA tables, in order) and then the manifest; any earlier manifest is
    removed first, so a failure leaves no readable result. Returns the manifest as written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    tmp = folder / f".{TRACKS_FILE}.tmp"
    rows, pairs = 0, []
    with pq.ParquetWriter(tmp, TRACKS_SCHEMA) as writer:
        for table in tables:
            writer.write_table(table.cast(TRACKS_SCHEMA))
            rows += table.num_rows
            if table.num_rows:
                pairs.append([table["sequence"][0].as_py(), table["view"][0].as_py()])
    tmp.replace(folder / TRACKS_FILE)
    manifest = {
        **manifest,
        "tracks": {"file": TRACKS_FILE, "sha256": sha256_file(folder / TRACKS_FILE)},
        "counts": {"rows": rows, "tracks": len(pairs)},
        "pairs": pairs,
    }
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def track_table(
    sequence: str, view: str, frames: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, boxes
) -> pa.Table:
    """One (sequence, view)'s rows: frames [N], keypoints [N,K,2] px, scores [N,K], boxes [N,4]."""
    n = len(frames)
    return pa.table(
        {
            "sequence": [sequence] * n,
            "view": [view] * n,
            "frame": np.asarray(frames, np.int32),
            "keypoints": list(np.asarray(keypoints, np.float32).reshape(n, -1)),
            "scores": list(np.asarray(scores, np.float32).reshape(n, -1)),
            "box": list(np.asarray(boxes, np.float32).reshape(n, 4)),
        },
        schema=TRACKS_SCHEMA,
    )


class PredictedTracks:
    """A published tracks folder: `get(sequence, view)` -> (frames [N], keypoints [N,K,2], scores [N,K])."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / MANIFEST).exists():
            raise DataError(
                f"{self.folder / MANIFEST}: no predicted tracks here (run the predict stage of the "
                "2D family, e.g. `dvc repro predict@hrnet_am`)"
            )
        self.manifest = require_published(self.folder, MANIFEST)
        self.num_keypoints = len(self.manifest["keypoints"])
        table = pq.read_table(self.folder / self.manifest["tracks"]["file"])
        self._frames = table["frame"].to_numpy()
        k = self.num_keypoints
        self._keypoints = np.asarray(
            table["keypoints"].combine_chunks().flatten(), np.float32
        ).reshape(-1, k, 2)
        self._scores = np.asarray(table["scores"].combine_chunks().flatten(), np.float32).reshape(
            -1, k
        )
        rows: dict[tuple[str, str], list[int]] = {}
        pairs = zip(table["sequence"].to_pylist(), table["view"].to_pylist())
        for i, pair in enumerate(pairs):
            rows.setdefault(pair, []).append(i)
        self._rows = {pair: np.asarray(r) for pair, r in rows.items()}

    @property
    def file(self) -> Path:
        return self.folder / self.manifest["tracks"]["file"]

    @property
    def skeleton(self) -> str:
        return self.manifest["skeleton"]

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._rows

    def get(self, sequence: str, view: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self._rows.get((sequence, view))
        if rows is None:
            raise DataError(
                f"{self.file}: no predicted track for sequence {sequence!r} view {view!r} (it holds "
                f"{len(self._rows)} tracks; the predict stage's `sequences`/`views` leave it out?)"
            )
        order = rows[np.argsort(self._frames[rows], kind="stable")]
        return self._frames[order], self._keypoints[order], self._scores[order]

    def at(self, sequence: str, view: str, frames: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints [len(frames),K,2], scores [len(frames),K]) at these frame indices; a frame the
        track lacks is a DataError naming the file."""
        have, keypoints, scores = self.get(sequence, view)
        wanted = np.asarray(list(frames), np.int64)
        pos = np.searchsorted(have, wanted)
        ok = (pos < len(have)) & (have[np.minimum(pos, len(have) - 1)] == wanted)
        if not ok.all():
            raise DataError(
                f"{self.file}: sequence {sequence!r} view {view!r} has no prediction for frame "
                f"{int(wanted[~ok][0])}"
            )
        return keypoints[pos], scores[pos]
