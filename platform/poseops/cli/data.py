"""`poseops data ...`: synthetic captures, label grids, derived datasets (and, from `data_io`, ingest,
importers, export and validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from poseops.cli import data_io
from poseops.cli.common import console, friendly

data_app = typer.Typer(help="Captures, annotations and derived datasets.", no_args_is_help=True)


@data_app.command("synth")
@friendly
def data_synth(
    out: Annotated[
        str, typer.Option(help="capture root to write: <out>/hands and/or <out>/bodies")
    ],
    seed: Annotated[int, typer.Option(help="generator seed")] = 0,
    hands: Annotated[int, typer.Option(help="hand sequences (0 = none)")] = 12,
    bodies: Annotated[int, typer.Option(help="body sequences (0 = none)")] = 0,
    frames: Annotated[int, typer.Option(help="frames per hand sequence")] = 40,
    body_frames: Annotated[
        int | None, typer.Option(help="kept frames per body sequence (default: the generator's)")
    ] = None,
    views: Annotated[int, typer.Option(help="body views, 1..5 (front + Human3.6M cameras)")] = 5,
    size: Annotated[int, typer.Option(help="body render height, px")] = 256,
) -> None:
    """Render seeded synthetic hand and body captures into a capture root (same seed, same bytes)."""
    from pydantic import ValidationError
    from rich.table import Table

    from poseops.capture import write_captures
    from poseops.config import BodyCaptureParams, CaptureParams, HandCaptureParams
    from poseops.errors import ConfigError
    from poseops.storage import join

    if hands == 0 and bodies == 0:
        raise ConfigError("data synth: --hands and --bodies are both 0: nothing to render")
    try:
        params = CaptureParams(
            seed=seed,
            hands=HandCaptureParams(sequences=hands, frames_per_sequence=frames) if hands else None,
            bodies=BodyCaptureParams(
                sequences=bodies, frames_per_sequence=body_frames, views=views, image_size=size
            )
            if bodies
            else None,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"data synth: {problems}") from None

    with console.status("rendering") as status:
        manifests = write_captures(
            out, params, on_part=lambda part: status.update(f"rendering synthetic {part}")
        )
    table = Table(title=f"synthetic captures, seed {seed} -> {out}")
    for column in ("part", "sequences", "frames", "images", "folder"):
        table.add_column(column, justify="left" if column in ("part", "folder") else "right")
    for part, manifest in manifests.items():
        counts = manifest["counts"]
        table.add_row(
            part,
            str(counts["sequences"]),
            str(counts["frames"]),
            str(counts.get("images", counts["frames"])),
            join(out, part),
        )
    console.print(table)


@data_app.command("show")
@friendly
def data_show(
    url: Annotated[
        str,
        typer.Argument(
            help="an import folder or annotations JSON, a capture folder or root "
            "(hands/, bodies/), or a derived dataset (card.json)"
        ),
    ],
    out: Annotated[Path, typer.Option(help="PNG to write")] = Path("grid.png"),
    count: Annotated[int, typer.Option(help="samples to draw (per part of a capture root)")] = 16,
    part: Annotated[
        str | None, typer.Option(help="of a capture root, draw only: hands or bodies")
    ] = None,
) -> None:
    """Draw samples with keypoints, edges and visibility (hollow grey = occluded), to check labels."""
    import cv2

    from poseops.browse import label_grid

    grid = label_grid(url, count, part=part)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), grid)
    console.print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]})")


@data_app.command("derive")
@friendly
def data_derive(
    family: Annotated[str, typer.Argument(help="family whose dataset kind to derive")],
    out: Annotated[str, typer.Option(help="output folder or fsspec URL (s3://...)")],
    annotations: Annotated[Path, typer.Option(help="internal annotations JSON")] = Path(
        "data/annotations/labels.json"
    ),
    executor: Annotated[
        str, typer.Option(help="ray (tasks on $RAY_ADDRESS or a local instance), local, or auto")
    ] = "auto",
) -> None:
    """Derive a family's shards from annotations and raw captures (on Ray; card.json written last)."""
    from poseops.annotations.internal import load_annotations
    from poseops.annotations.keypoint_sets import coverage_lines, family_coverage
    from poseops.datasets.derive import cap_lines, derive_dataset
    from poseops.families import get_family, load_params
    from poseops.paths import append_run_log
    from poseops.skeletons import SKELETONS

    params, fam = load_params(), get_family(family)
    if (
        fam.skeleton in SKELETONS
    ):  # what this family takes of each source and category, and why not the rest
        for line in coverage_lines(
            family_coverage(load_annotations(annotations), {family: fam.skeleton})
        )[0]:
            console.print(f"derive@{family}: {line}", highlight=False)
    facts: dict = {}

    def log(record: dict) -> None:
        facts.update(record)
        append_run_log("derive", {"family": family, **record})

    card = derive_dataset(
        fam.task_module.rows,
        annotations,
        out,
        params.families[family].data,
        params.data.split,
        skeleton=fam.skeleton,
        executor=executor,
        run_log=log,
        source_weights=params.data.weights,
    )
    console.print(
        f"derived {card.get('counts')} -> {out} ({facts['executor']}, {facts['tasks']} tasks, "
        f"{facts['seconds']:.1f} s; dataset checksum {facts['dataset_checksum'][:12]})"
    )
    for line in cap_lines(card):
        console.print(f"derive@{family}: {line}", highlight=False)


data_io.register(data_app)
