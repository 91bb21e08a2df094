"""The `poseops` command line (typer + rich)."""


def main() -> None:
    """The `poseops` console script: numerics pinned before numpy and torch load, then the typer app."""
    from poseops.numerics import pin_portable_numerics

    pin_portable_numerics()
    from poseops.cli.main import app

    app()
