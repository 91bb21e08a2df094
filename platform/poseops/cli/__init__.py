"""The `poseops` command line (typer + rich)."""
