"""A user's annotation source as a DVC-tracked raw input: `data/raw/<name>/` holding the labels (a file or
a folder) and, when given, `images/`; `dvc add` makes it an input DVC hashes, and the `annotate` stage,
which depends on `data/raw`, re-runs when it changes (`poseops data add`).

The source is read and checked first (as `poseops data validate --format` does), so a file that an
import would refuse is never copied in. Object-store URLs are brought in with `dvc import-url`, which
records where they came from, so `dvc update` fetches a newer version.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from poseops.annotations.internal import preview_import
from poseops.errors import ConfigError, DataError

RAW_DIR = Path("data") / "raw"
RESERVED = ("synthetic",)  # the capture stage's outputs live in data/raw/synthetic
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _is_url(location: str | Path) -> bool:
    return "://" in str(location)


def run_dvc(root: Path, *args: str) -> None:
    """`dvc <args>` in `root`, with this interpreter's dvc; DataError carrying dvc's own message on failure."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        },
    )
    if done.returncode != 0:
        raise DataError(
            f"dvc {' '.join(args)} (in {root}) failed: {(done.stderr or done.stdout).strip()[-600:]}"
        )


def add_source(
    name: str,
    fmt: str,
    labels: str | Path,
    images: str | Path | None,
    root: str | Path,
    use_dvc: bool = True,
    strict: bool = False,
    keypoint_map: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Bring `labels` (and `images`) into `<root>/data/raw/<name>/` and `dvc add` it (or `dvc import-url`
    each part of an object-store source). Returns the `data.annotations` entry for params.yaml, with
    paths relative to `root`. Nothing is copied when the source would not import."""
    root = Path(root).resolve()
    if not _NAME.match(name) or name in RESERVED:
        raise ConfigError(
            f"source name {name!r}: lower-case letters, digits, '-' and '_' only, not {', '.join(RESERVED)}"
        )
    folder = root / RAW_DIR / name
    if folder.exists() or folder.with_suffix(".dvc").exists():
        raise ConfigError(f"{folder}: a source named {name!r} exists already")
    if use_dvc and not (root / ".dvc").is_dir():
        raise ConfigError(
            f"{root}: not a DVC repository (no .dvc/): run `dvc init`, or add the source without DVC"
        )
    remote = _is_url(labels)
    if not remote:
        preview_import(
            fmt,
            Path(labels),
            Path(images) if images else None,
            strict=strict,
            keypoint_map=keypoint_map,
        )
    target_labels = folder / Path(str(labels).rstrip("/")).name
    target_images = folder / "images" if images else None
    folder.mkdir(parents=True)
    try:
        if remote:
            if not use_dvc:
                raise ConfigError(
                    f"{labels}: an object-store source is brought in with dvc import-url (needs DVC)"
                )
            run_dvc(root, "import-url", str(labels), str(target_labels.relative_to(root)))
            if images:
                run_dvc(root, "import-url", str(images), str(target_images.relative_to(root)))
            preview_import(
                fmt, target_labels, target_images, strict=strict, keypoint_map=keypoint_map
            )
        else:
            copy = shutil.copytree if Path(labels).is_dir() else shutil.copy2
            copy(labels, target_labels)
            if images:
                shutil.copytree(images, target_images)
            if use_dvc:
                run_dvc(root, "add", str(folder.relative_to(root)))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # nothing half-added
        for leftover in (
            folder.with_suffix(".dvc"),
            target_labels.with_name(target_labels.name + ".dvc"),
        ):
            leftover.unlink(missing_ok=True)
        raise
    entry: dict[str, Any] = {
        "format": fmt,
        "file": str(target_labels.relative_to(root)),
        "name": name,
    }
    if target_images is not None:
        entry["images"] = str(target_images.relative_to(root))
    if keypoint_map:
        entry["keypoint_map"] = dict(keypoint_map)
    if strict:
        entry["strict"] = True
    return entry


def untracked_sources(files: list[str], root: str | Path) -> list[str]:
    """The source files not under `<root>/data/raw/` (DVC does not see them change)."""
    raw = (Path(root) / RAW_DIR).resolve()
    return [f for f in files if not _is_url(f) and raw not in (Path(root) / f).resolve().parents]
