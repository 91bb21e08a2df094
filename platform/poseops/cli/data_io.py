"""`poseops data ingest | import | export | validate`: users' captures and real annotation formats."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from poseops.cli.common import console, friendly

EXIT_PARTIAL = 3  # ingest: some inputs quarantined, the others written


class ImportFormat(str, Enum):
    coco = "coco"
    h36m = "h36m"
    freihand = "freihand"
    panoptic = "panoptic"
    posetrack = "posetrack"


class ExportFormat(str, Enum):
    coco = "coco"


@friendly
def data_ingest(
    path: Annotated[Path, typer.Argument(help="a video file, an image folder, or a folder holding them")],
    out: Annotated[str, typer.Option(help="capture folder or fsspec URL to write")],
    every: Annotated[int, typer.Option(help="keep every Nth video frame")] = 1,
) -> None:
    """Ingest videos and image folders as raw captures (manifest.json last).

    Exit status: 0 all ingested, 3 partial (some inputs quarantined, listed in the manifest), 1 nothing written.
    """
    from poseops.capture.ingest import ingest

    manifest = ingest(path, out, every=every)
    counts = manifest["counts"]
    console.print(f"ingested {counts['sequences']} sequences ({counts['frames']} frames) -> {out}")
    for q in manifest["quarantined"]:
        console.print(f"[yellow]quarantined:[/] {q['source']}: {q['reason']}", highlight=False)
    if manifest["quarantined"]:
        raise typer.Exit(EXIT_PARTIAL)


@friendly
def data_import(
    fmt: Annotated[ImportFormat, typer.Argument(metavar="FORMAT", help="source format")],
    file: Annotated[Path, typer.Argument(help="labels file (or folder, for panoptic / posetrack / freihand)")],
    out: Annotated[str, typer.Option(help="folder or fsspec URL to publish the internal annotations at")],
    images: Annotated[Optional[Path], typer.Option(help="folder the labels' image names start from")] = None,
    views: Annotated[Optional[str], typer.Option(help="panoptic: HD views to use, e.g. 00_03,00_06")] = None,
    cameras: Annotated[Optional[Path], typer.Option(help="h36m: cameras.pkl (default: next to FILE)")] = None,
) -> None:
    """Import labels in a real dataset format into the internal form (annotations.json + manifest.json)."""
    from poseops.annotations.internal import import_annotations
    from poseops.errors import ConfigError

    options: dict = {}
    if views is not None:
        if fmt != ImportFormat.panoptic:
            raise ConfigError("--views is for panoptic imports only")
        options["views"] = tuple(v.strip() for v in views.split(",") if v.strip())
    if cameras is not None:
        if fmt != ImportFormat.h36m:
            raise ConfigError("--cameras is for h36m imports only")
        options["cameras_file"] = cameras
    manifest = import_annotations(fmt.value, file, images, out, **options)
    console.print(f"imported {manifest['counts']} from {file} -> {out}")


@friendly
def data_export(
    fmt: Annotated[ExportFormat, typer.Argument(metavar="FORMAT", help="target format")],
    url: Annotated[str, typer.Argument(help="internal annotations file or import folder")],
    file: Annotated[str, typer.Argument(help="JSON file to write")],
) -> None:
    """Export internal annotations to COCO keypoints JSON."""
    from poseops.annotations.export import export_coco

    counts = export_coco(url, file)
    console.print(f"exported {counts} -> {file}")


@friendly
def data_validate(url: Annotated[str, typer.Argument(help="internal annotations file or import folder")]) -> None:
    """Check annotations (and their image files); non-zero exit naming every bad record."""
    from poseops.annotations.internal import check_annotations_url

    counts = check_annotations_url(url)
    console.print(f"{url}: valid {counts}")


def register(data_app: typer.Typer) -> None:
    """Add this module's commands to the `data` group (called once by poseops.cli.data)."""
    data_app.command("ingest")(data_ingest)
    data_app.command("import")(data_import)
    data_app.command("export")(data_export)
    data_app.command("validate")(data_validate)
