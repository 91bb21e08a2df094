"""DVC stage `train@<family>` (see dvc.yaml): a few lines over poseops.pipeline.train."""

import sys

from poseops.cli.main import run_stage

if __name__ == "__main__":
    run_stage("train", sys.argv[1])
