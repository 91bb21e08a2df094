"""DVC stage `predict@<family>` (see dvc.yaml): a few lines over poseops.pipeline.predict."""

import sys

from poseops.cli.main import run_stage

if __name__ == "__main__":
    run_stage("predict", sys.argv[1])
