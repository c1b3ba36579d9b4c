"""`nvidia-smi topo -m` source: the matrix exactly as NVIDIA's own tool prints it.

Why keep it next to NVML: it is the format people paste into tickets, it labels NICs
(`NIC Legend`) which NVML cannot see, and when the Python NVML bindings are missing
from an image the binary usually is not. Running it is I/O, parsing it is pure: the
text goes to :func:`labeler.topology.smi_parser.parse`.

The runner is injected (:class:`Runner`), so tests use a fake one *and* a real
executable script on ``PATH`` through :func:`subprocess_runner`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from labeler.topology.errors import NoGpuError, ProbeError, SourceUnavailable
from labeler.topology.model import Topology

__all__ = ["ARGV", "SOURCE", "RunOutput", "Runner", "probe", "run_topo", "subprocess_runner"]

SOURCE = "nvidia-smi"
ARGV: tuple[str, ...] = ("nvidia-smi", "topo", "-m")
DEFAULT_TIMEOUT_S = 20.0

# What nvidia-smi prints (on stdout, exit 9 or 6) when there is no usable GPU.
_NO_GPU_MARKERS = (
    "couldn't communicate with the nvidia driver",
    "no devices were found",
    "nvml library not found",
    "driver/library version mismatch",
)


@dataclass(frozen=True, slots=True)
class RunOutput:
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Run argv, return its output; raise FileNotFoundError / subprocess.TimeoutExpired like subprocess."""

    def __call__(self, argv: Sequence[str], *, timeout: float) -> RunOutput: ...


def subprocess_runner(argv: Sequence[str], *, timeout: float) -> RunOutput:
    """The real runner: no shell, captured text output, killed after ``timeout`` seconds."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    return RunOutput(done.returncode, done.stdout, done.stderr)


def run_topo(runner: Runner = subprocess_runner, *, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Run ``nvidia-smi topo -m`` and return stdout, or raise a discovery error.

    missing binary → :class:`SourceUnavailable`; timeout or non-zero exit →
    :class:`ProbeError` carrying stderr (stdout too: nvidia-smi writes its own error
    messages there); "no driver / no devices" → :class:`NoGpuError`.
    """
    try:
        out = runner(ARGV, timeout=timeout)
    except FileNotFoundError as err:
        raise SourceUnavailable("nvidia-smi: not found on PATH") from err
    except PermissionError as err:
        raise SourceUnavailable(f"nvidia-smi: not executable ({err})") from err
    except subprocess.TimeoutExpired as err:
        stderr = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else (err.stderr or "")
        raise ProbeError(f"nvidia-smi topo -m timed out after {timeout:g}s; stderr: {stderr.strip()!r}") from err
    if out.returncode != 0:
        said = " ".join(x.strip() for x in (out.stderr, out.stdout) if x.strip())
        if any(m in said.lower() for m in _NO_GPU_MARKERS):
            raise NoGpuError(f"nvidia-smi: {said[:300]}")
        raise ProbeError(f"nvidia-smi topo -m exited {out.returncode}; stderr: {out.stderr.strip()[:500]!r}")
    return out.stdout


def probe(
    runner: Runner = subprocess_runner,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    parse: Callable[[str], Topology] | None = None,
) -> Topology:
    """Run and parse. ``parse`` defaults to :func:`labeler.topology.smi_parser.parse`."""
    text = run_topo(runner, timeout=timeout)
    if parse is None:
        from labeler.topology import smi_parser  # imported late: the parser is a separate module

        return smi_parser.parse(text, source=SOURCE)
    return parse(text)
