"""The gputopo error hierarchy, shared by every component.

Why one small tree: callers at the edges (the agent loop, the extender's HTTP
handlers, the CLI) decide how to *degrade* by catching a class, never by
matching message text. Library exceptions (NVML, gRPC, the kubernetes client)
are wrapped with ``raise ... from err`` so the cause is kept.

::

    GputopoError
    ├── TopologyError               a topology could not be built or decoded
    │   ├── TopologyParseError      `nvidia-smi topo -m` text is unusable (names the line)
    │   └── CodecError              a label/annotation value cannot be decoded
    │       ├── DeviceListError     NVIDIA_/CUDA_VISIBLE_DEVICES beyond the decoder's limits
    │       └── NcclLogError        an nccl-tests log that cannot be read (limits, not a log)
    ├── ProbeError                  a hardware source failed (NVML, nvidia-smi, sysfs, kubelet)
    │   ├── NoGpuError              the machine has no NVIDIA GPU / driver at all
    │   └── SourceUnavailable       one source is absent (binary, socket, library missing)
    ├── PublishError                the Kubernetes API refused our write after retries
    └── ConfigError                 settings are invalid (raised at start-up, never later)
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "ConfigError",
    "DeviceListError",
    "GputopoError",
    "NcclLogError",
    "NoGpuError",
    "ProbeError",
    "PublishError",
    "SourceUnavailable",
    "TopologyError",
    "TopologyParseError",
]


class GputopoError(Exception):
    """Root of every error gputopo raises on purpose."""


class TopologyError(GputopoError):
    """A topology could not be built, parsed or decoded."""


class TopologyParseError(TopologyError):
    """`nvidia-smi topo -m` text that cannot be read without guessing.

    ``line`` is 1-based and refers to the text as given (before any clean-up),
    so a person can find it in the file they pasted. ``line`` is ``None`` for
    problems of the whole text (e.g. no matrix header at all).
    """

    def __init__(self, message: str, *, line: int | None = None, text: str | None = None) -> None:
        self.line = line
        self.text = text
        self.reason = message
        where = f"line {line}: " if line is not None else ""
        shown = f" [{text.strip()[:80]!r}]" if text else ""
        super().__init__(f"{where}{message}{shown}")


class CodecError(TopologyError):
    """A label or annotation value that does not decode (wrong version, damaged JSON...)."""


class DeviceListError(CodecError):
    """A device-list environment variable that is refused outright (too long, control characters)."""


class NcclLogError(CodecError):
    """An nccl-tests output that cannot be read: over the size limits, binary, or no log at all."""


class ProbeError(GputopoError):
    """A hardware or node source failed while probing."""


class NoGpuError(ProbeError):
    """No NVIDIA GPU (or no driver) on this machine: a state, not a crash."""


class SourceUnavailable(ProbeError):
    """One discovery source is absent here (binary, library, socket or sysfs path)."""


class PublishError(GputopoError):
    """A write to the Kubernetes API failed after all retries."""


class ConfigError(GputopoError):
    """Invalid settings; raised at start-up so a bad config never runs half-way."""
