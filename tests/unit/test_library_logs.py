"""Ray's and MLflow's log noise stays off the console and lands in .poseops/logs/<name>.log."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from poseops.library_logs import library_logs_to_file


def test_library_loggers_write_to_the_file_not_the_console(tmp_path, capsys):
    with library_logs_to_file("stage", root=tmp_path) as path:
        logging.getLogger("ray.train").info("Attempting to start training worker group")
        logging.getLogger("mlflow.store.db.utils").info(
            "Creating initial MLflow database tables..."
        )
        # what `import ray` does at import time, and MLflow's own configuration: ignored meanwhile
        logging.getLogger("ray").addHandler(logging.StreamHandler(sys.stderr))
        logging.getLogger("ray").warning("Token authentication is enabled for this Ray cluster")
        warnings.warn("a library's FutureWarning", FutureWarning, stacklevel=1)
        assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
        print("train@handmle: Ray Train, 1 worker(s), 1 epochs")  # poseops' own line
    out, err = capsys.readouterr()
    assert out == "train@handmle: Ray Train, 1 worker(s), 1 epochs\n" and err == ""
    assert path == tmp_path / ".poseops" / "logs" / "stage.log"
    text = path.read_text()
    for line in (
        "Attempting to start training worker group",
        "Creating initial MLflow database tables",
        "Token authentication is enabled",
        "FutureWarning",
        "train@handmle: Ray Train",
    ):
        assert line in text


def test_worker_lines_show_only_a_workers_own_prints_without_the_prefix(tmp_path, capsys):
    with library_logs_to_file("train", root=tmp_path) as path:
        # as Ray's driver prints forwarded worker output: stdout lines to stdout, stderr lines to stderr
        print(
            "\x1b[36m(RayTrainWorker pid=25408)\x1b[0m epoch 1/3: train_loss 0.4 val_pck 0.5 (3 steps)"
        )
        print(
            "\x1b[36m(TrainController pid=25025)\x1b[0m Requesting resources: {'CPU': 1.0} * 1",
            file=sys.stderr,
        )
        print(
            "(ServeReplica:app:Ingress pid=7, ip=10.0.0.2) INFO 200 POST /v1/handmle/predict",
            file=sys.stderr,
        )
        sys.stderr.write("error: data/annotations/labels.json: no such file")  # no newline yet
    out, err = capsys.readouterr()
    assert out == "epoch 1/3: train_loss 0.4 val_pck 0.5 (3 steps)\n"
    assert err == "error: data/annotations/labels.json: no such file"  # flushed on exit
    text = path.read_text()
    assert (
        "(TrainController pid=25025)" in text
        and "POST /v1/handmle/predict" in text
        and "epoch 1/3" in text
    )


def test_a_partial_line_that_is_no_worker_line_is_shown_at_once(tmp_path, capsys):
    with library_logs_to_file("capture", root=tmp_path):
        sys.stdout.write(
            "\r⠋ capture: rendering synthetic hands"
        )  # a live spinner frame, no newline
        assert capsys.readouterr().out == "\r⠋ capture: rendering synthetic hands"
        sys.stdout.write(
            "(RayTrainWorker pid=3) epoch 1/1"
        )  # could be a worker line: held to its end
        assert capsys.readouterr().out == ""
        sys.stdout.write("\n")
        assert capsys.readouterr().out == "epoch 1/1\n"


def test_everything_is_restored_on_exit(tmp_path, capsys):
    ray_logger = logging.getLogger("ray")
    before = (
        sys.stdout,
        sys.stderr,
        ray_logger.handlers[:],
        ray_logger.propagate,
        os.environ.get("MLFLOW_CONFIGURE_LOGGING"),
    )
    with library_logs_to_file("x", root=tmp_path):
        assert sys.stdout is not before[0]
    assert (
        sys.stdout,
        sys.stderr,
        ray_logger.handlers,
        ray_logger.propagate,
        os.environ.get("MLFLOW_CONFIGURE_LOGGING"),
    ) == before
    ray_logger.addHandler(handler := logging.NullHandler())  # a real addHandler again
    assert handler in ray_logger.handlers
    ray_logger.removeHandler(handler)
