"""Child processes of the launcher: one log file each, readiness by polling, teardown by process group.

Why process groups: ``kube-apiserver`` and friends are single processes, but
``gputopo extender`` or a shell wrapper may fork; every child is started in its
own session (``start_new_session``) and stopped with a signal to its group, so
nothing outlives the launcher. Teardown is SIGTERM, a grace period, then SIGKILL.
Pids are recorded so that ``python -m tests.e2e.cluster down`` in another
process can stop exactly what ``up`` started, by id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Proc", "free_port", "kill_group", "wait_for"]


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the kernel's pick; loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, *, interval_s: float = 0.2,
             alive: Callable[[], str | None] | None = None) -> None:
    """Poll ``check`` until it is true; ``TimeoutError`` naming ``what`` after ``timeout_s``.

    ``alive`` returns a message when a process we are waiting on has died, so a
    crash fails at once instead of after the whole timeout.
    """
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while True:
        try:
            if check():
                return
        except Exception as err:  # readiness probes raise while the server is still starting
            last_error = f" (last error: {type(err).__name__}: {str(err)[:200]})"
        if alive is not None and (dead := alive()):
            raise RuntimeError(f"{what}: {dead}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout_s:.0f}s{last_error}")
        time.sleep(interval_s)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - not ours
        return False
    return True


def kill_group(pid: int, *, grace_s: float = 10.0, reap: Callable[[float], object] | None = None) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL what is left after ``grace_s``; a gone group is fine.

    ``reap(timeout)`` waits for the leader when it is our child (``Popen.wait``), so
    it does not linger as a zombie that keeps the group "alive".
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    if reap is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            reap(grace_s)
    while _group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if reap is not None:
        reap(grace_s)


@dataclass
class Proc:
    """One started program: name, argv, its log, and the Popen handle."""

    name: str
    argv: Sequence[str]
    log: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"# {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                list(self.argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(self.env) if self.env is not None else None, cwd=self.cwd, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was not started"
        return self.popen.pid

    def dead(self) -> str | None:
        """``None`` while running, else why it is not (for :func:`wait_for`)."""
        if self.popen is None:
            return f"{self.name} was never started"
        rc = self.popen.poll()
        return None if rc is None else f"{self.name} exited with status {rc}; log: {self.log}"

    def stop(self, *, grace_s: float = 10.0) -> int | None:
        """Stop the whole process group; returns the exit status (``None`` if never started)."""
        if self.popen is None:
            return None
        # the group may outlive its leader (a forked child), so signal it even after the leader exited
        kill_group(self.popen.pid, grace_s=grace_s, reap=lambda t: self.popen.wait(timeout=t) if self.popen else None)
        return self.popen.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
