"""Reproduce every result: (optionally switch profile,) `dvc repro`, then a summary of every family's metrics.

    python flows/reproduce.py                 # the profile params.yaml holds
    python flows/reproduce.py --profile tiny  # write profiles/tiny.yaml into params.yaml first
On a cluster: ray job submit --address http://HEAD:8265 -- python flows/reproduce.py
"""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated, Optional

import typer

from poseops.reporting import metrics_summary_table


def main(profile: Annotated[Optional[str], typer.Option(help="profile to write into params.yaml first")] = None) -> None:
    if profile:
        subprocess.run([sys.executable, "-m", "poseops.cli.main", "config", "use", profile], check=True)
    subprocess.run(["dvc", "repro"], check=True)
    metrics_summary_table(print_it=True)


if __name__ == "__main__":
    typer.run(main)
