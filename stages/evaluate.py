"""DVC stage `evaluate@<family>` (see dvc.yaml): a few lines over poseops.pipeline.evaluate."""

import sys

from poseops.cli.main import run_stage

if __name__ == "__main__":
    run_stage("evaluate", sys.argv[1])
