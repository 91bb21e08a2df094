"""DVC stage `annotate` (see dvc.yaml): a few lines over poseops.pipeline.annotate."""

from poseops.cli.main import run_stage

if __name__ == "__main__":
    run_stage("annotate")
