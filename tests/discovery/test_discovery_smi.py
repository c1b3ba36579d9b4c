"""`nvidia-smi topo -m` source: a fake runner, and a real executable on PATH (the real subprocess path)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from discovery_support import FIXTURES, smi_text, smi_topology
from machines import DGX_A100, L40S_8X, MACHINES, Machine

from labeler.discovery import smi
from labeler.discovery.smi import RunOutput
from labeler.topology.errors import NoGpuError, ProbeError, SourceUnavailable, TopologyParseError

DRIVER_DOWN = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)


class FakeRunner:
    """Records argv/timeout; answers with a canned output or raises like subprocess would."""

    def __init__(self, out: RunOutput | None = None, exc: BaseException | None = None) -> None:
        self.out, self.exc = out, exc
        self.calls: list[tuple[tuple[str, ...], float]] = []

    def __call__(self, argv: Sequence[str], *, timeout: float) -> RunOutput:
        self.calls.append((tuple(argv), timeout))
        if self.exc is not None:
            raise self.exc
        assert self.out is not None
        return self.out


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_fake_runner_output_is_parsed(machine: Machine) -> None:
    runner = FakeRunner(RunOutput(0, smi_text(machine), ""))
    topo = smi.probe(runner, timeout=7)
    assert runner.calls == [(("nvidia-smi", "topo", "-m"), 7)]
    assert topo == smi_topology(machine)
    assert topo.source == "nvidia-smi"


@pytest.mark.parametrize(
    ("runner", "error", "match"),
    [
        (FakeRunner(exc=FileNotFoundError(2, "No such file", "nvidia-smi")), SourceUnavailable, "not found"),
        (FakeRunner(exc=PermissionError(13, "Permission denied")), SourceUnavailable, "not executable"),
        (
            FakeRunner(exc=subprocess.TimeoutExpired(["nvidia-smi"], 20, stderr=b"still waiting for GPU3")),
            ProbeError,
            "timed out.*still waiting for GPU3",
        ),
        (FakeRunner(RunOutput(9, DRIVER_DOWN, "")), NoGpuError, "couldn't communicate"),
        (FakeRunner(RunOutput(6, "No devices were found\n", "")), NoGpuError, "No devices were found"),
        (
            FakeRunner(RunOutput(15, "", "Unable to determine the device handle for GPU0000:3B:00.0: GPU is lost.\n")),
            ProbeError,
            "exited 15.*GPU is lost",
        ),
    ],
    ids=["missing-binary", "not-executable", "timeout", "driver-down", "no-devices", "gpu-lost-exit-15"],
)
def test_runner_failures(runner: FakeRunner, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        smi.probe(runner)
    if error is ProbeError:
        assert type(info.value) is ProbeError


def test_unparseable_output_raises_parse_error() -> None:
    with pytest.raises(TopologyParseError):
        smi.probe(FakeRunner(RunOutput(0, "GPU0 GPU1\nGPU0 X BOGUS\n", "")))


# -- the real subprocess path: an executable script named nvidia-smi on PATH ------------------


def _install(tmp_path: Path, body: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return bindir


@pytest.mark.parametrize("machine", [L40S_8X, DGX_A100], ids=["l40s", "dgx-a100"])
def test_real_executable_on_path(machine: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixture = FIXTURES / machine.smi_fixture
    body = f'[ "$1 $2" = "topo -m" ] || {{ echo "unexpected args: $*" >&2; exit 2; }}\nexec cat "{fixture}"\n'
    monkeypatch.setenv("PATH", str(_install(tmp_path, body)) + os.pathsep + "/usr/bin:/bin")
    assert smi.probe() == smi_topology(machine)


def test_real_executable_nonzero_exit_carries_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = 'echo "Failed to initialize NVML: Insufficient Permissions" >&2\nexit 3\n'
    monkeypatch.setenv("PATH", str(_install(tmp_path, body)) + os.pathsep + "/usr/bin:/bin")
    with pytest.raises(ProbeError, match=r"exited 3.*Insufficient Permissions"):
        smi.probe()


def test_real_executable_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(_install(tmp_path, "exec sleep 30\n")) + os.pathsep + "/usr/bin:/bin")
    with pytest.raises(ProbeError, match=r"timed out after 0\.3s"):
        smi.probe(timeout=0.3)


def test_real_driver_down_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = f"printf '%s' \"{DRIVER_DOWN.strip()}\"\nexit 9\n"
    monkeypatch.setenv("PATH", str(_install(tmp_path, body)) + os.pathsep + "/usr/bin:/bin")
    with pytest.raises(NoGpuError):
        smi.probe()


def test_binary_not_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SourceUnavailable, match="not found on PATH"):
        smi.probe()
