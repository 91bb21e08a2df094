"""DVC stage `predict@<family>` (see dvc.yaml): a few lines over poseops.pipeline.predict."""

import sys

from poseops.numerics import pin_portable_numerics

if __name__ == "__main__":
    pin_portable_numerics()  # before numpy and torch load: the same bytes on every x86-64 CPU
    from poseops.cli.main import run_stage

    run_stage("predict", sys.argv[1])
