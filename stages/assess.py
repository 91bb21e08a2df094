"""DVC stage `assess` (see dvc.yaml): synthetic experts and trainees scored beside the paper's figures."""

from poseops.numerics import pin_portable_numerics

if __name__ == "__main__":
    pin_portable_numerics()  # before numpy and torch load: the same bytes on every x86-64 CPU
    from poseops.cli.assess import run_study_stage

    run_study_stage()
