"""hack/kube/build.sh says clearly what is missing (fast: runs in `make test`, builds nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .kubebin import REPO

SCRIPT = REPO / "hack" / "kube" / "build.sh"


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_no_go_on_path_is_a_clear_error(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "E2E_KUBE_CACHE": str(tmp_path / "cache")}
    if any(shutil.which("go", path=p) for p in env["PATH"].split(":")):
        pytest.skip("a go binary lives in /usr/bin or /bin on this machine")
    done = _run(env)
    assert done.returncode == 1
    assert "the Go toolchain is not installed (no 'go' on PATH)" in done.stderr
    assert done.stdout == ""  # nothing a caller could mistake for the binaries' directory


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the go command")
def test_module_proxy_off_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "GOPROXY": "off", "E2E_KUBE_CACHE": str(tmp_path / "cache")}
    done = _run(env)
    assert done.returncode == 1
    assert "proxy" in done.stderr.lower(), done.stderr
    assert done.stdout == ""
