"""`poseops data add` of a source on object storage: `dvc import-url` brings the labels and the images
into data/raw/<name>/ (a local S3 server, moto), and the source imports from there."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from tests.helpers_annotations import dvc, onehand10k_file
from tests.s3server import s3_environment, s3_filesystem
from typer.testing import CliRunner

from poseops.cli.main import app

pytestmark = pytest.mark.slow


def test_source_on_object_storage_is_imported_with_dvc_import_url(tmp_path, s3_server):
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    (root / "params.yaml").write_text("data:\n  annotations: []\n")
    labels, _ = onehand10k_file(tmp_path / "upload", count=2)
    server = s3_server
    with s3_environment(server):
        fs = s3_filesystem()
        fs.mkdir("lab")
        fs.put(str(labels), "lab/hands.json")
        for image in sorted((tmp_path / "upload").glob("*.jpg")):
            fs.put(str(image), f"lab/images/{image.name}")
        done = CliRunner().invoke(
            app,
            [
                "data",
                "add",
                "lab",
                "coco",
                "s3://lab/hands.json",
                "--images",
                "s3://lab/images",
                "--params",
                str(root / "params.yaml"),
            ],
            env={"COLUMNS": "4000"},
        )
    assert done.exit_code == 0, done.output
    assert (root / "data/raw/lab/hands.json").is_file() and len(
        list((root / "data/raw/lab/images").iterdir())
    ) == 2
    tracked = yaml.safe_load((root / "data/raw/lab/hands.json.dvc").read_text())
    assert tracked["deps"][0]["path"] == "s3://lab/hands.json"  # dvc update fetches a newer version
    entry = yaml.safe_load((root / "params.yaml").read_text())["data"]["annotations"][0]
    assert entry == {
        "format": "coco",
        "file": "data/raw/lab/hands.json",
        "name": "lab",
        "images": "data/raw/lab/images",
    }
