"""What every command shares: the console (stderr) and the user-error wrapper."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer
from rich.console import Console

from poseops.errors import PoseopsError

console = Console(stderr=True)


def friendly(fn: Callable) -> Callable:
    """Turn PoseopsError into a clear message and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PoseopsError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(1) from None

    return wrapper
