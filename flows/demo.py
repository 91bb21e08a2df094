"""`make demo`: the whole pipeline on synthetic captures, the champions served and queried, then stopped.

Prints the metrics beside the committed ones (`dvc metrics diff HEAD`: empty when the run reproduced
them), the keypoints the endpoint returned, the path of an overlay image, the wall time and the peak
memory (the rise of MemTotal - MemAvailable over the run, sampled every 0.5 s).
"""

from __future__ import annotations

from rich.console import Console

from poseops.demo import query_each_family
from poseops.library_logs import library_logs_to_file
from poseops.monitor import RunMonitor
from poseops.pipeline import dvc_repro
from poseops.reporting import committed_metrics_diff, metrics_summary_table

console = Console()


def main() -> None:
    with library_logs_to_file("demo") as log, RunMonitor() as run:
        console.rule("dvc repro: capture -> annotate -> derive -> train -> evaluate -> promote")
        dvc_repro()
        metrics_summary_table(print_it=True)
        console.rule("dvc metrics diff HEAD: this run against the committed metrics")
        committed_metrics_diff(print_it=True)
        console.rule("serve the champions and query them")
        query_each_family()
    console.rule("done")
    console.print(run.summary())
    console.print(f"Ray, MLflow and stage logs: {log.parent}/")


if __name__ == "__main__":
    main()
