"""`poseops score IMAGE|FOLDER --url URL --family F`: predictions from a running service, as JSON lines.

One line per image on stdout: {"file": ..., **response body} (or {"file": ..., "error": ...}); a rich
progress bar on stderr. Requests go through `poseops.client.PoseClient` (retries on 503/429 after
Retry-After, timeouts). Exit status 1 if any image failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from poseops.cli.common import console, friendly
from poseops.client import IMAGE_TYPES, PoseClient, ServiceError
from poseops.errors import ConfigError


def image_files(target: Path) -> list[Path]:
    """`target` itself, or the image files in a folder (sorted, not recursive)."""
    if target.is_file():
        return [target]
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.suffix.lower() in IMAGE_TYPES)
        if not files:
            raise ConfigError(f"{target}: no image files ({', '.join(sorted(IMAGE_TYPES))})")
        return files
    raise ConfigError(f"{target}: no such file or folder")


@friendly
def score_cmd(
    target: Annotated[Path, typer.Argument(help="an image file, or a folder of them")],
    family: Annotated[str, typer.Option(help="model family to ask, e.g. handmle")],
    url: Annotated[str, typer.Option(help="service base URL")] = "http://127.0.0.1:8000",
    version: Annotated[int | None, typer.Option(help="a registered version number")] = None,
    alias: Annotated[str | None, typer.Option(help="a registry alias, e.g. challenger")] = None,
    api_key_env: Annotated[
        str, typer.Option(help="environment variable holding the X-API-Key (if any)")
    ] = "POSEOPS_API_KEY",
    timeout: Annotated[float, typer.Option(help="seconds per request")] = 30.0,
    retries: Annotated[int, typer.Option(help="retries on 503/429/connection errors")] = 5,
) -> None:
    """Score images against a running `poseops serve`; JSON lines on stdout."""
    files = image_files(target)
    failed = 0
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with (
        PoseClient(
            url, api_key=os.environ.get(api_key_env), timeout_s=timeout, retries=retries
        ) as client,
        progress,
    ):
        task = progress.add_task(f"{family} @ {url}", total=len(files))
        for path in files:
            try:
                line = {
                    "file": str(path),
                    **client.predict(family, path, version=version, alias=alias),
                }
            except ServiceError as exc:
                failed += 1
                line = {"file": str(path), "error": str(exc)}
            sys.stdout.write(json.dumps(line) + "\n")
            progress.advance(task)
    if failed:
        console.print(f"[red]{failed} of {len(files)} images failed[/]")
        raise typer.Exit(1)
