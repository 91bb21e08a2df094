"""A fresh clone's `make demo` reproduces the committed results (CI runs it before this suite).

Every DVC-versioned output is a pure function of its inputs, so the data stages must rebuild exactly
what the committed dvc.lock records, and training (same seed, worker and thread count: params.yaml pins
them) must give the committed metrics: to the bit where the machine computes the same bits, within a
tolerance elsewhere. Skipped where `make demo` has not run in this checkout, or where params.yaml is not
the committed one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def demo_checkout() -> Path:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing committed to compare with")
    if not ((REPO / ".poseops" / "demo").is_dir() and (REPO / "data" / "derived").is_dir()):
        pytest.skip("make demo has not run in this checkout")
    if git("diff", "--quiet", "HEAD", "--", "params.yaml").returncode != 0:
        pytest.skip("params.yaml differs from the committed one")
    return REPO


def data_stages(lock: dict) -> list[str]:
    return [
        name
        for name in lock["stages"]
        if name in ("capture", "annotate") or name.startswith("derive@")
    ]


def test_data_stages_rebuilt_what_the_committed_lock_records(demo_checkout):
    committed = yaml.safe_load(git("show", "HEAD:dvc.lock").stdout)
    current = yaml.safe_load((demo_checkout / "dvc.lock").read_text())
    stages = data_stages(committed)
    assert {"capture", "annotate"} <= set(stages) and any(s.startswith("derive@") for s in stages)

    def outs(lock: dict, stage: str) -> dict:
        return {o["path"]: (o["md5"], o.get("nfiles")) for o in lock["stages"][stage]["outs"]}

    for stage in stages:
        assert outs(current, stage) == outs(committed, stage), (
            f"{stage}: outputs differ from the committed dvc.lock"
        )
    status = subprocess.run(
        [str(BIN / "dvc"), "status", "--json", *stages],
        cwd=demo_checkout,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout or "{}") == {}, status.stdout


def committed_and_current_metrics(root: Path) -> dict[str, tuple[dict, dict]]:
    """Each family's committed metrics.json and the one this checkout's `make demo` wrote."""
    found = {}
    for path in sorted((root / "metrics").glob("*/metrics.json")):
        shown = git("show", f"HEAD:{path.relative_to(root).as_posix()}")
        if shown.returncode == 0:
            found[path.parent.name] = (json.loads(shown.stdout), json.loads(path.read_text()))
    return found


def test_trained_metrics_equal_the_committed_ones(demo_checkout):
    """On a machine that computes the same bits (equal `numerics_fingerprint`), every metric is equal.
    Elsewhere, training is the same function rounded differently (PyTorch promises no bitwise equality
    across CPUs), so each family's primary metric must agree within 0.05 (fractions) or 10 % (mm)."""
    from poseops.families import get_family
    from poseops.reporting import committed_metrics_diff

    pairs = committed_and_current_metrics(demo_checkout)
    assert pairs, "no committed metrics.json to compare with"
    same_bits = all(
        old.get("numerics_fingerprint") == new.get("numerics_fingerprint")
        for old, new in pairs.values()
    )
    if same_bits:
        diff = committed_metrics_diff(demo_checkout)
        assert diff == {}, json.dumps(diff, indent=1)[:4000]
        return
    off = {}
    for family_name, (old, new) in pairs.items():
        primary = get_family(family_name).primary_metric
        before, after = float(old[primary]), float(new[primary])
        allowed = 0.05 if max(abs(before), abs(after)) <= 1 else 0.10 * abs(before)
        if abs(after - before) > allowed:
            off[family_name] = {primary: {"committed": before, "now": after, "allowed": allowed}}
    print(
        f"another machine's numerics: primary metrics compared within tolerance ({len(pairs)} families)"
    )
    assert off == {}, json.dumps(off, indent=1)
