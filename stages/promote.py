"""DVC stage `promote@<family>` (see dvc.yaml): a few lines over poseops.pipeline.promote."""

import sys

from poseops.cli.main import run_stage

if __name__ == "__main__":
    run_stage("promote", sys.argv[1])
