"""`poseops data ingest | import | export | validate`: users' captures and real annotation formats."""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from poseops.cli.common import console, friendly

EXIT_PARTIAL = 3  # ingest: some inputs quarantined, the others written


class ExportFormat(str, Enum):
    coco = "coco"


@friendly
def data_ingest(
    path: Annotated[
        Path, typer.Argument(help="a video file, an image folder, or a folder holding them")
    ],
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


def parse_keypoint_map(text: str | None) -> dict[str, str] | None:
    """`--keypoint-map`: 'theirs=ours,...' pairs, or a JSON file holding {theirs: ours}."""
    import json

    from poseops.errors import ConfigError

    if text is None:
        return None
    if Path(text).is_file():
        mapping = json.loads(Path(text).read_text())
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ConfigError(
                f"{text}: --keypoint-map file must hold a JSON object of name -> name"
            )
        return mapping
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if not pairs or any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise ConfigError(
            f"--keypoint-map {text!r}: expected theirs=ours pairs separated by commas, or a JSON file"
        )
    return {a.strip(): b.strip() for a, b in pairs}


def reader_options(fmt: str, views: str | None, cameras: Path | None) -> dict:
    from poseops.errors import ConfigError

    options: dict = {}
    if views is not None:
        if fmt != "panoptic":
            raise ConfigError("--views is for panoptic imports only")
        options["views"] = tuple(v.strip() for v in views.split(",") if v.strip())
    if cameras is not None:
        if fmt not in ("h36m", "interhand"):
            raise ConfigError("--cameras is for h36m and interhand imports only")
        options["cameras_file"] = cameras
    return options


def print_repairs(summary: str, warnings: list[str]) -> None:
    if summary:
        console.print(f"[yellow]repaired:[/] {summary}", highlight=False)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


FORMAT_HELP = "source format: one of the FORMATs listed above"
STRICT_HELP = "refuse the file instead of repairing it (every repair and warning becomes an error)"
KEYPOINT_MAP_HELP = "the file's keypoint names -> a known set's: 'theirs=ours,...' or a JSON file"


@friendly
def data_import(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help=FORMAT_HELP)],
    file: Annotated[
        Path,
        typer.Argument(
            help="labels file (or folder, for panoptic / posetrack / freihand / interhand)"
        ),
    ],
    out: Annotated[
        str, typer.Option(help="folder or fsspec URL to publish the internal annotations at")
    ],
    images: Annotated[
        Path | None, typer.Option(help="folder the labels' image names start from")
    ] = None,
    views: Annotated[
        str | None, typer.Option(help="panoptic: HD views to use, e.g. 00_03,00_06")
    ] = None,
    cameras: Annotated[
        Path | None,
        typer.Option(help="h36m: cameras.pkl; interhand: its camera JSON (default: beside FILE)"),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help=STRICT_HELP)] = False,
    keypoint_map: Annotated[str | None, typer.Option(help=KEYPOINT_MAP_HELP)] = None,
) -> None:
    """Import labels in a real dataset format into the internal form (annotations.json + manifest.json).

    Harmless flaws are repaired and listed (in the manifest, and printed); wrong data is refused, naming
    the file and record, and nothing is written.
    """
    from poseops.annotations.internal import import_annotations

    manifest = import_annotations(
        fmt,
        file,
        images,
        out,
        strict=strict,
        keypoint_map=parse_keypoint_map(keypoint_map),
        **reader_options(fmt, views, cameras),
    )
    console.print(f"imported {manifest['counts']} from {file} -> {out}")
    for mapping in manifest["keypoint_mappings"]:
        console.print(
            f"category {mapping['category']!r}: keypoints mapped onto {mapping['keypoint_set']} "
            f"({mapping['renamed']} renamed{', reordered' if mapping['reordered'] else ''})",
            highlight=False,
        )
    print_repairs(manifest["repair_summary"], manifest["warnings"])


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
def data_validate(
    url: Annotated[
        str,
        typer.Argument(
            help="internal annotations file or import folder; with --format, a source file"
        ),
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="read URL as this source format: print the repairs "
            "an import would make, write nothing",
        ),
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="with --format: folder the labels' image names start from")
    ] = None,
    views: Annotated[str | None, typer.Option(help="with --format panoptic: HD views")] = None,
    cameras: Annotated[
        Path | None, typer.Option(help="with --format h36m / interhand: camera file")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help=STRICT_HELP)] = False,
    keypoint_map: Annotated[str | None, typer.Option(help=KEYPOINT_MAP_HELP)] = None,
) -> None:
    """Check annotations (and their image files); non-zero exit naming every bad record, and the repairs listed."""
    from poseops.annotations.internal import check_annotations_url, preview_import

    if fmt is None:
        counts, repairs = check_annotations_url(url, strict=strict)
    else:
        data, repairs = preview_import(
            fmt,
            Path(url),
            images,
            strict=strict,
            keypoint_map=parse_keypoint_map(keypoint_map),
            **reader_options(fmt, views, cameras),
        )
        counts = {
            "images": len(data["images"]),
            "annotations": len(data["annotations"]),
            "categories": len(data["categories"]),
            "cameras": len(data.get("cameras") or []),
        }
    console.print(f"{url}: valid {counts}" + (" (nothing written)" if fmt else ""))
    print_repairs(repairs.summary(), repairs.warnings)


@friendly
def data_add(
    name: Annotated[str, typer.Argument(help="source name: its folder is data/raw/<name>/")],
    fmt: Annotated[
        str, typer.Argument(metavar="FORMAT", help="source format (as for data import)")
    ],
    labels: Annotated[
        str, typer.Argument(help="labels file or folder, local or an object-store URL")
    ],
    images: Annotated[
        str | None,
        typer.Option(help="images folder (local or URL), copied to data/raw/<name>/images"),
    ] = None,
    params: Annotated[
        Path, typer.Option(help="params file whose data.annotations gets the source")
    ] = Path("params.yaml"),
    dvc: Annotated[
        bool,
        typer.Option(
            "--dvc/--no-dvc", help="track data/raw/<name> with DVC (dvc add / import-url)"
        ),
    ] = True,
    strict: Annotated[bool, typer.Option("--strict", help=STRICT_HELP)] = False,
    keypoint_map: Annotated[str | None, typer.Option(help=KEYPOINT_MAP_HELP)] = None,
) -> None:
    """Add a real annotation source to the pipeline (data/raw/<name>/, tracked by DVC, in params.yaml).

    The source is checked first (nothing is copied when an import would refuse it), copied under
    data/raw/<name>/ (or brought in with dvc import-url from object storage), tracked by DVC and listed
    in params.yaml's data.annotations, so `dvc repro` re-runs annotate when it changes.
    """
    from poseops.annotations.sources import add_source
    from poseops.config import read_yaml
    from poseops.families import validate_params

    raw = read_yaml(params)
    entry = add_source(
        name,
        fmt,
        labels,
        images,
        params.resolve().parent,
        use_dvc=dvc,
        strict=strict,
        keypoint_map=parse_keypoint_map(keypoint_map),
    )
    raw.setdefault("data", {}).setdefault("annotations", [])
    raw["data"]["annotations"] = list(raw["data"]["annotations"] or []) + [entry]
    validate_params(raw, source=str(params))
    write_params(params, raw)
    console.print(
        f"added {fmt} source {name!r}: {entry['file']}"
        + (" (tracked by DVC)" if dvc else "")
        + f"; {params}: data.annotations[{len(raw['data']['annotations']) - 1}]"
    )


def write_params(path: Path, raw: dict) -> None:
    """`raw` written back to `path` (atomically) under the file's leading comment lines."""
    import itertools

    import yaml

    lines = path.read_text().splitlines() if path.exists() else []
    header = "".join(
        f"{line}\n" for line in itertools.takewhile(lambda line: line.startswith("#"), lines)
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + yaml.safe_dump(raw, sort_keys=False))
    tmp.replace(path)


def register(data_app: typer.Typer) -> None:
    """Add this module's commands to the `data` group (called once by poseops.cli.data)."""
    data_app.command("ingest")(data_ingest)
    from poseops.annotations.internal import import_formats

    formats = ", ".join(
        import_formats()
    )  # built-in formats, then installed plug-ins (entry points)
    data_app.command(
        "import", help=inspect.cleandoc(data_import.__doc__ or "") + f"\n\nFORMAT: {formats}."
    )(data_import)
    data_app.command("export")(data_export)
    data_app.command("validate")(data_validate)
    data_app.command("add")(data_add)
