"""Tiny untrained checkpoints and a tiny derived hand dataset with a test split: what the tests that score,
select or export a checkpoint feed it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from poseops import checkpoints
from poseops.capture.synthetic_hands import write_hand_captures
from poseops.config import CaptureParams, HandCaptureParams, SplitParams
from poseops.families import families
from poseops.models import create_model


def save_tiny(
    folder: Path, family_name: str, seed: int = 0, extra: dict[str, Any] | None = None, **overrides
) -> nn.Module:
    """A family's `tiny` preset (with `overrides`), initialised from torch seed `seed`, published as a
    checkpoint at `folder` (`extra` into its manifest); returns the model."""
    family = families()[family_name]
    torch.manual_seed(seed)
    model = create_model(family.model, "tiny", **overrides)
    checkpoints.save_checkpoint(
        folder, family_name, family.model, model.state_dict(), model.config, extra=extra
    )
    return model


def derived_hand_sequences(root: Path) -> Path:
    """root/derived: a topdown_crop dataset of 3 synthetic hand sequences (3 frames of 64 px each), one
    sequence per split (train, val, test); raw captures and labels beside it under root."""
    from poseops.annotations.internal import build_annotations
    from poseops.datasets.shards import derive_dataset
    from poseops.tasks.topdown_crop import TopdownCrop, TopdownCropData

    raw, labels = root / "raw", root / "labels" / "annotations.json"
    write_hand_captures(
        raw,
        CaptureParams(
            seed=3, hands=HandCaptureParams(sequences=3, frames_per_sequence=3, image_size=64)
        ),
    )
    build_annotations(raw, [], labels)
    derive_dataset(
        TopdownCrop.rows,
        labels,
        str(root / "derived"),
        TopdownCropData(),
        SplitParams(by="sequence", test_fraction=0.34, val_fraction=0.34, seed=0),
    )
    return root / "derived"
