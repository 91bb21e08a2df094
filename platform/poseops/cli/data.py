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
    out: Annotated[str, typer.Option(help="output folder or URL")],
    seed: Annotated[int, typer.Option(help="generator seed")] = 0,
    sequences: Annotated[int, typer.Option(help="hand sequences")] = 12,
    frames: Annotated[int, typer.Option(help="frames per sequence")] = 40,
) -> None:
    """Render seeded synthetic captures (same seed, same bytes)."""
    from poseops.capture.synthetic_hands import write_hand_captures
    from poseops.config import CaptureParams, HandCaptureParams

    params = CaptureParams(seed=seed, hands=HandCaptureParams(sequences=sequences, frames_per_sequence=frames))
    manifest = write_hand_captures(out, params)
    console.print(f"wrote {len(manifest['sequences'])} sequences to {out}")


@data_app.command("show")
@friendly
def data_show(
    url: Annotated[str, typer.Argument(help="a capture folder (manifest.json) or a derived dataset (card.json)")],
    out: Annotated[Path, typer.Option(help="PNG to write")] = Path("grid.png"),
    count: Annotated[int, typer.Option(help="samples to draw")] = 16,
) -> None:
    """Draw samples with keypoints, edges and visibility (hollow grey = occluded), to check labels."""
    import cv2

    from poseops.browse import label_grid

    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), label_grid(url, count))
    console.print(f"wrote {out}")


@data_app.command("derive")
@friendly
def data_derive(
    family: Annotated[str, typer.Argument(help="family whose dataset kind to derive")],
    out: Annotated[str, typer.Option(help="output folder or fsspec URL (s3://...)")],
    annotations: Annotated[Path, typer.Option(help="internal annotations JSON")] = Path("data/annotations/labels.json"),
    executor: Annotated[str, typer.Option(help="ray (tasks on $RAY_ADDRESS or a local instance), local, or auto")] = "auto",
) -> None:
    """Derive a family's shards from annotations and raw captures (on Ray; card.json written last)."""
    from poseops.datasets.derive import derive_dataset
    from poseops.families import get_family, load_params

    params, fam = load_params(), get_family(family)
    card = derive_dataset(fam.dataset_kind, annotations, out, params.families[family].data, params.data.split,
                          skeleton=fam.skeleton, executor=executor)
    console.print(f"derived {card.get('counts')} -> {out} ({card['executor']['name']}, {card['executor']['tasks']} tasks)")


data_io.register(data_app)
