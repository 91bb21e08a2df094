"""Captures: synthetic generators and ingest of videos/folders into per-sequence files + a manifest.

A capture root (the pipeline's data/raw/synthetic, or `poseops data synth --out`) holds one published
capture folder per part: `hands/` (synthetic_hands) and `bodies/` (synthetic_bodies).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from poseops.config import CaptureParams

CAPTURE_PARTS = ("hands", "bodies")  # sub-folders of a capture root, in the order they are written and merged


def write_captures(root: str | Path, params: CaptureParams, on_part=None) -> dict[str, dict[str, Any]]:
    """Render every part `params` configures into `root/<part>`; a part set to null is removed.
    Returns part -> manifest. `on_part(part)` is called before each part renders (progress)."""
    from poseops.capture.synthetic_bodies import write_body_captures
    from poseops.capture.synthetic_hands import write_hand_captures

    writers = {"hands": write_hand_captures, "bodies": write_body_captures}
    manifests = {}
    for part in CAPTURE_PARTS:
        folder = Path(root) / part
        if getattr(params, part) is None:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        if on_part is not None:
            on_part(part)
        manifests[part] = writers[part](folder, params)
    return manifests
