"""Registry against a real tracking server: `mlflow server` on a private PostgreSQL cluster (any
installed version).

Starts both on free loopback ports in a temporary folder, registers, promotes and downloads a
model through `MLFLOW_TRACKING_URI=http://...`, and stops both afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from pydantic import BaseModel
from tests.helpers_servers import (
    free_port,
    http_ok,
    port_open,
    start_process,
    stop_process,
    wait_http,
    wait_until,
)
from torch import nn

from poseops import checkpoints, packaging
from poseops.errors import GateRefused
from poseops.models import register_model
from poseops.tracking import registry

pytestmark = pytest.mark.slow


def find_pg_bin() -> Path:
    """The installed PostgreSQL's server binaries, any version: $POSEOPS_PG_BIN, else
    `pg_config --bindir`, else the newest /usr/lib/postgresql/<version>/bin (Debian's layout)."""
    if os.environ.get("POSEOPS_PG_BIN"):
        return Path(os.environ["POSEOPS_PG_BIN"])
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if found.returncode == 0 and (Path(found.stdout.strip()) / "initdb").exists():
            return Path(found.stdout.strip())
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
    )
    return versions[-1] if versions else Path("/usr/lib/postgresql/bin")


PG_BIN = find_pg_bin()
PG_USER = "nobody"  # PostgreSQL refuses to run as root


class PgToyConfig(BaseModel):
    width: int = 3


@register_model("test_pg_toy", PgToyConfig, {"smoke": {}})
def build_pg_toy(config: PgToyConfig) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, config.width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _skip_reason() -> str | None:
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        return f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root and there is no unprivileged user {PG_USER!r} to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


def _as_pg_user(args: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="module")
def postgres():
    """A private cluster on a free port: yields (port, superuser)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    # Not under pytest's tmp_path: its parents are 0700 root, which the unprivileged user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="poseops-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        user = pwd.getpwnam(PG_USER)
        os.chown(root, user.pw_uid, user.pw_gid)
    data, log = root / "data", root / "postgres.log"
    superuser = "mlflow"
    subprocess.run(
        _as_pg_user(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                superuser,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c fsync=off"
    )
    subprocess.run(
        _as_pg_user(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                "30",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=port, user=superuser, dbname="postgres"
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE mlflow")
        connection.close()
        yield port, superuser
    finally:
        subprocess.run(
            _as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def start_mlflow_server(postgres, root: Path):
    """`mlflow server` (1 worker) on the PostgreSQL cluster, artifacts proxied to `root/artifacts`:
    returns (process, url, port) once /health answers."""
    pg_port, pg_user = postgres
    port, log = free_port(), root / f"mlflow-server-{free_port()}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = start_process(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"postgresql+psycopg2://{pg_user}@127.0.0.1:{pg_port}/mlflow",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        log_path=log,
        env=env,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", timeout=90, process=process, log_path=log)
    return process, url, port


def stop_mlflow_server(process, url: str, port: int) -> None:
    stop_process(process)
    wait_until(lambda: not port_open(port), 10, f"{url} closed")


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """The module's `mlflow server` on PostgreSQL: yields its URL."""
    process, url, port = start_mlflow_server(postgres, tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield url
    finally:
        stop_mlflow_server(process, url, port)


@pytest.fixture
def server_uri(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("POSEOPS_ROOT", str(tmp_path))
    yield mlflow_server
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_register_promote_and_download_through_a_postgres_backed_server(server_uri, tmp_path):
    assert http_ok(f"{server_uri}/health")
    torch.manual_seed(0)
    model = build_pg_toy(PgToyConfig()).eval()
    checkpoints.save_checkpoint(
        tmp_path / "ck",
        "pgtoy",
        "test_pg_toy",
        model.state_dict(),
        PgToyConfig(),
        {"metrics": {"pck": 0.8}},
    )

    first = packaging.log_and_register(tmp_path / "ck", "pgtoy")
    with pytest.raises(GateRefused, match="pck"):
        registry.promote("pgtoy", first["version"], {"pck": 0.1}, {"min_pck": 0.5})
    assert registry.get_alias_version("poseops-pgtoy", "champion") is None
    registry.promote("pgtoy", first["version"], {"pck": 0.8}, {"min_pck": 0.5})
    assert registry.get_alias_version("poseops-pgtoy", "champion") == first["version"]

    folder, ident = packaging.download_version("pgtoy", "champion", dst=tmp_path / "served")
    assert ident == {"name": "poseops-pgtoy", "version": first["version"]}
    x = torch.randn(2, 3, 7, 7)
    expected = model(x).detach().numpy()
    assert np.array_equal(
        checkpoints.build_model_from_checkpoint(folder)(x).detach().numpy(), expected
    )
    pyfunc = mlflow.pyfunc.load_model("models:/poseops-pgtoy@champion")
    assert np.array_equal(pyfunc.predict(x.numpy()), expected)

    history = registry.alias_history("poseops-pgtoy")
    assert history[0]["aliases"] == ["champion"] and history[0]["tags"]["metric.pck"] == "0.8"


def test_promotion_history_and_rollback_survive_a_server_restart(postgres, tmp_path, monkeypatch):
    """History (who, when, why, metrics) and aliases live in PostgreSQL: a restarted server (this test's
    own, killed and started again on the same database) reads them back, and rollback still works."""
    monkeypatch.setenv("POSEOPS_ROOT", str(tmp_path))
    monkeypatch.setenv("POSEOPS_USER", "ops-bob")
    process, url, port = start_mlflow_server(postgres, tmp_path)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        versions = []
        for seed, pck in ((1, 0.6), (2, 0.7)):
            torch.manual_seed(seed)
            model = build_pg_toy(PgToyConfig()).eval()
            checkpoints.save_checkpoint(
                tmp_path / f"ck{seed}",
                "pghist",
                "test_pg_toy",
                model.state_dict(),
                PgToyConfig(),
                {},
            )
            version = packaging.log_and_register(tmp_path / f"ck{seed}", "pghist")["version"]
            registry.record_evaluation("pghist", version, {"pck": pck}, "data-x", "test")
            registry.promote(
                "pghist", version, gate={"min_pck": 0.5}, primary_metric="pck", why=f"seed {seed}"
            )
            versions.append(version)
        before = registry.history("pghist")
    finally:
        stop_mlflow_server(process, url, port)
    mlflow.set_tracking_uri(None)

    process, url, port = start_mlflow_server(postgres, tmp_path)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        assert registry.history("pghist") == before
        assert [(e["event"], e["version"], e["by"], e["why"]) for e in before] == [
            ("promoted", versions[0], "ops-bob", "seed 1"),
            ("promoted", versions[1], "ops-bob", "seed 2"),
        ]
        assert before[1]["metrics"] == {"pck": 0.7}
        assert registry.get_alias_version("poseops-pghist") == versions[1]
        registry.rollback("pghist", why="canary errors")
        assert registry.get_alias_version("poseops-pghist") == versions[0]
        assert registry.history("pghist")[-1]["why"] == "canary errors"
        # the user's view of the same: `poseops registry history` against the restarted server
        shown = subprocess.run(
            [sys.executable, "-m", "poseops.cli.main", "registry", "history", "pghist"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={
                **os.environ,
                "MLFLOW_TRACKING_URI": url,
                "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "platform"),
                "COLUMNS": "250",
            },
        )
        assert shown.returncode == 0, shown.stderr
        lines = [line for line in shown.stderr.splitlines() if "ops-bob" in line]
        assert len(lines) == 3, shown.stderr
        for line, (event, version, why) in zip(
            lines,
            [
                ("promoted", versions[0], "seed 1"),
                ("promoted", versions[1], "seed 2"),
                ("rollback", versions[0], "canary errors"),
            ],
        ):
            assert event in line and f"v{version}" in line and why in line, line
    finally:
        stop_mlflow_server(process, url, port)
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
