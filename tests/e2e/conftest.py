"""Fixtures of the end-to-end scenarios: one real control plane per test module.

Every test here is marked ``e2e`` (``make test`` deselects them, ``make e2e`` runs
them). Binaries: ``$E2E_KUBE_BIN`` (``make e2e`` sets it) or built on first use.
Each module's cluster lives in ``out/e2e/<module>/``; after a module whose tests
all passed it is deleted, otherwise every log is kept and the path is printed in
the terminal summary. Set ``E2E_KEEP_LOGS=1`` to keep them always.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster
from .kubebin import REPO, kube_bin

_KEPT: list[str] = []
_FAILED_MODULES: set[str] = set()
_REPORT: list[str] = []


def report(line: str) -> None:
    """A figure to print in the terminal summary (throughput, timings)."""
    _REPORT.append(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every scenario module (test_e2e_*.py) is `e2e`; test_kube_build.py is fast and runs in `make test`."""
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == here and path.name.startswith("test_e2e_"):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed:  # type: ignore[attr-defined]
        _FAILED_MODULES.add(item.module.__name__)  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _REPORT + _KEPT:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def kube_bin_dir() -> Path:
    return kube_bin()


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, kube_bin_dir: Path) -> Iterator[Cluster]:
    """etcd + kube-apiserver, with ``manifests/overlays/default`` applied; always torn down."""
    module = request.module.__name__
    workdir = REPO / "out" / "e2e" / module.rsplit(".", 1)[-1]
    shutil.rmtree(workdir, ignore_errors=True)
    c = Cluster(workdir, kube_bin_dir)
    try:
        c.up()
        c.apply_manifests()
        c.ensure_namespace("default")
        # the labeler DaemonSet's pods use runtimeClassName: nvidia (the GPU operator installs it)
        c.kubectl("apply", "-f", "-", input_text="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\n"
                  "metadata: {name: nvidia}\nhandler: nvidia\n")
    except BaseException:
        _FAILED_MODULES.add(module)  # start-up failed: keep its logs
        c.down()
        _KEPT.append(f"e2e: {module}: cluster start-up failed; logs kept in {c.logs}")
        raise
    try:
        yield c
    finally:
        c.down()
        if module in _FAILED_MODULES or os.environ.get("E2E_KEEP_LOGS"):
            _KEPT.append(f"e2e: {module}: logs kept in {c.logs}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
