"""DVC stage `report@<family>` (see dvc.yaml): a few lines over poseops.pipeline.report."""

import sys

from poseops.cli.main import run_stage

if __name__ == "__main__":
    run_stage("report", sys.argv[1])
