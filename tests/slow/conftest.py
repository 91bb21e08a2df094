"""Session fixtures for the slow layer: one real Ray cluster, one smoke-trained project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cluster import LocalCluster, start_cluster, stop_cluster
from s3server import s3_environment, start_s3_server, stop_s3_server

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def make_project(dest: Path, profile: str | None = None) -> Path:
    """A throw-away copy of the project (pipeline files and sources), DVC-initialised."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, dest / name)
    for folder in ("stages", "profiles", "flows"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        REPO / "platform",
        dest / "platform",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=dest, check=True)
    if profile:
        subprocess.run(
            [str(BIN / "poseops"), "config", "use", profile],
            cwd=dest,
            check=True,
            capture_output=True,
        )
    return dest


def project_env(cluster: LocalCluster | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "POSEOPS_ROOT")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if cluster:
        env.update(RAY_ADDRESS=cluster.address, RAY_AUTH_MODE="token")
    return env


@pytest.fixture(scope="session")
def ray_cluster():
    """`ray start --head` (2 CPUs, dashboard for job submission) plus a 1-CPU worker node."""
    stop_cluster()
    cluster = start_cluster(head_cpus=2, worker_cpus=1, dashboard=True)
    yield cluster
    stop_cluster()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """The slow suite's one S3 server (moto, as s3fs's own tests use), started on first use."""
    server = start_s3_server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    stop_s3_server(server)


@pytest.fixture(scope="module")
def s3(s3_server):
    """The S3 server's settings (endpoint, dummy keys) in this process's environment for one module."""
    with s3_environment(s3_server):
        yield s3_server


@pytest.fixture(scope="module")
def s3_ray_address(s3):
    """A private Ray instance (2 CPUs) started with the S3 settings in its environment: Ray processes
    take their S3 credentials from their own environment (none are shipped with a job). Its GCS address,
    for the CLI through RAY_ADDRESS; started once a module, as ray.init costs seconds."""
    import ray

    if ray.is_initialized():  # an instance of this test process started without the S3 settings
        ray.shutdown()
    context = ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


JOB_LOG = ".poseops/job_submit.log"
PIPELINE_TIMEOUT = (
    1500  # s: the smoke pipeline job from scratch (~11 minutes here, vmhpe's training ~6 of them)
)
CHANGED_FAMILY = (
    "handmle"  # whose training seed the slow suite changes on a project seeded from make demo
)


def demo_results(repo: Path = REPO) -> bool:
    """True when `make demo` has filled this checkout: DVC cache, outputs, MLflow store, on the committed
    params (CI runs make demo before the slow suite)."""
    filled = all(
        (repo / p).exists()
        for p in (".dvc/cache", ".poseops/mlflow.db", ".poseops/demo", "dvc.lock")
    )
    same_params = (
        subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "params.yaml"], cwd=repo).returncode
        == 0
    )
    return filled and same_params


def seed_from_demo(root: Path, repo: Path = REPO) -> None:
    """Start a project from the checkout's `make demo` results instead of rebuilding them: its dvc.lock,
    its DVC cache (shared, so `dvc checkout` restores every cached output), its uncached metrics and
    plots, and a copy of its MLflow store (whose champions `poseops serve` then finds)."""
    shutil.copy(repo / "dvc.lock", root / "dvc.lock")
    subprocess.run(
        [str(BIN / "dvc"), "cache", "dir", "--local", str(repo / ".dvc" / "cache")],
        cwd=root,
        check=True,
    )
    for folder in (
        "metrics",
        "plots",
        "reports",
    ):  # uncached outputs (metrics, plots, the assess report)
        shutil.copytree(repo / folder, root / folder, dirs_exist_ok=True)
    # DVC writes a .gitignore beside outputs in a git checkout; annotate depends on data/raw as a folder,
    # whose hash counts it, so the (git-less) project gets the same files
    for ignore in (repo / "data").rglob(".gitignore"):
        (root / ignore.relative_to(repo)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ignore, root / ignore.relative_to(repo))
    (root / ".poseops").mkdir(exist_ok=True)
    shutil.copy(repo / ".poseops" / "mlflow.db", root / ".poseops" / "mlflow.db")
    checkout = subprocess.run(
        [str(BIN / "dvc"), "checkout", "-q"], cwd=root, capture_output=True, text=True
    )
    if checkout.returncode != 0:
        pytest.fail(f"dvc checkout from make demo's cache failed:\n{checkout.stderr[-3000:]}")


def pytest_collection_modifyitems(items):
    """The test that first asks for `smoke_project` pays for the pipeline in its setup: give every such
    test the job's time plus its own, over pytest-timeout's default."""
    for item in items:
        if "smoke_project" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(PIPELINE_TIMEOUT + 300))


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory, ray_cluster):
    """The demo's pipeline (smoke profile): `flows/reproduce.py` submitted once as a Ray job to the cluster,
    which runs `dvc repro` with every stage attached to the cluster. The job's output is kept in JOB_LOG.

    Where `make demo` has run in this checkout, the project starts from its results and the training seed of
    CHANGED_FAMILY is changed first, so the job re-runs that family's train, evaluate and promote only
    (`test_seeded_job_reran_only_the_changed_family` checks it); elsewhere the job builds everything."""
    root = make_project(tmp_path_factory.mktemp("smoke") / "project")
    if demo_results():
        seed_from_demo(root)
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["families"][CHANGED_FAMILY]["train"]["seed"] += 1
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (root / ".poseops" / "seeded_from_demo").write_text(CHANGED_FAMILY)
    entry = f"cd {root} && {sys.executable} flows/reproduce.py"
    run = subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            ray_cluster.dashboard_url,
            "--",
            "bash",
            "-c",
            entry,
        ],
        env=project_env(ray_cluster),
        capture_output=True,
        text=True,
        timeout=PIPELINE_TIMEOUT,
    )
    (root / JOB_LOG).parent.mkdir(exist_ok=True)
    (root / JOB_LOG).write_text(run.stdout + run.stderr)
    if run.returncode != 0:
        pytest.fail(f"the pipeline job failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    return root
