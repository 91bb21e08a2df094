"""`poseops data ingest | import | export | validate`: users' captures and real annotation formats."""

from __future__ import annotations

import typer


def register(data_app: typer.Typer) -> None:
    """Add this module's commands to the `data` group (called once by poseops.cli.data)."""
