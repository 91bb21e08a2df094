"""Portable CPU numerics: which pins a process gets, and that they are set before numpy or torch loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from poseops.numerics import PORTABLE_X86_ENV, portable_env

REPO = Path(__file__).resolve().parents[2]


def test_x86_gets_every_pin_and_other_machines_none():
    assert portable_env({}, machine="x86_64") == PORTABLE_X86_ENV
    assert portable_env({}, machine="AMD64") == PORTABLE_X86_ENV
    assert portable_env({}, machine="aarch64") == {}


def test_a_value_the_user_set_is_kept_and_the_opt_out_drops_all():
    pins = portable_env({"OPENBLAS_CORETYPE": "SkylakeX"}, machine="x86_64")
    assert "OPENBLAS_CORETYPE" not in pins and "ATEN_CPU_CAPABILITY" in pins
    assert portable_env({"POSEOPS_NATIVE_NUMERICS": "1"}, machine="x86_64") == {}
    assert portable_env({"POSEOPS_NATIVE_NUMERICS": "0"}, machine="x86_64") == PORTABLE_X86_ENV


def test_stage_scripts_pin_before_numpy_and_torch_load():
    """Each stage script's first act is the pin; importing poseops.numerics must not load numpy or torch,
    or the pins would come too late for them."""
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_X86_ENV}
    probe = (
        "import sys; from poseops.numerics import pin_portable_numerics; "
        "print(pin_portable_numerics()); import os; print(os.environ.get('OPENBLAS_CORETYPE'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "PYTHONPATH": str(REPO / "platform")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert out[0] == "[]"
    import platform

    expected = "Haswell" if platform.machine().lower() in ("x86_64", "amd64") else "None"
    assert out[1] == expected
    for script in sorted((REPO / "stages").glob("*.py")):
        text = script.read_text()
        main = text.split('if __name__ == "__main__":', 1)
        assert len(main) == 2, script
        assert "pin_portable_numerics()" in main[1].split("import", 1)[0], script


def test_the_fingerprint_is_a_stable_digest_of_this_machines_bits():
    from poseops.numerics import fingerprint

    first = fingerprint()
    assert first == fingerprint() and len(first) == 16 and int(first, 16) >= 0
