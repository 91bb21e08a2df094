"""DVC stage `derive@<family>` (see dvc.yaml): a few lines over poseops.pipeline.derive."""

import sys

from poseops.cli.main import run_stage

if __name__ == "__main__":
    run_stage("derive", sys.argv[1])
