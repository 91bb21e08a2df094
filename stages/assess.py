"""DVC stage `assess` (see dvc.yaml): synthetic experts and trainees scored beside the paper's figures."""

from poseops.cli.assess import run_study_stage

if __name__ == "__main__":
    run_study_stage()
