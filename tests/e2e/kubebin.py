"""Where the control-plane binaries are: ``$E2E_KUBE_BIN`` or what ``hack/kube/build.sh`` builds.

``make e2e`` runs ``make kube`` first and passes the directory on; a bare
``pytest -m e2e`` or ``python -m tests.e2e.cluster up`` builds (or reuses) them
itself, so there is one way to get them either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["BINARIES", "REPO", "kube_bin"]

REPO = Path(__file__).resolve().parents[2]
BINARIES = ("etcd", "kube-apiserver", "kube-scheduler", "kubectl")


def kube_bin() -> Path:
    """The directory holding :data:`BINARIES`; builds them when ``E2E_KUBE_BIN`` is unset."""
    given = os.environ.get("E2E_KUBE_BIN")
    if given:
        path = Path(given)
        if path.name != "bin" and (path / "bin").is_dir():
            path = path / "bin"  # the directory `make kube` prints holds bin/
    else:
        print("e2e: building or reusing the control plane (hack/kube/build.sh) ...", file=sys.stderr, flush=True)
        done = subprocess.run(["bash", str(REPO / "hack/kube/build.sh")], stdout=subprocess.PIPE, text=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"hack/kube/build.sh failed with status {done.returncode} (its messages are above)")
        path = Path(done.stdout.strip().splitlines()[-1]) / "bin"
    missing = [b for b in BINARIES if not os.access(path / b, os.X_OK)]
    if missing:
        raise RuntimeError(f"{path}: missing control-plane binaries {missing}; run `make kube`")
    return path
