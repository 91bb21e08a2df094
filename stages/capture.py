"""DVC stage `capture` (see dvc.yaml): a few lines over poseops.pipeline.capture."""

from poseops.cli.main import run_stage

if __name__ == "__main__":
    run_stage("capture")
