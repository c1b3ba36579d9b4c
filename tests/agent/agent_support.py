"""Helpers shared by the agent tests and bench/bench_agent_writes.py (corpus machines, a real client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from fake_kube_api import FakeKubeApi, realistic_gpu_node
from kubernetes import client as k8s

from labeler.topology import smi_parser
from labeler.topology.model import Topology

_REPO = Path(__file__).resolve().parents[2]
_CORPUS_DIRS = (_REPO / "tests" / "fixtures" / "topo-corpus", Path("/work/shared/topo-corpus"))

#: Real machines from the corpus, by a short name used in test ids.
MACHINES = {
    "dgx1-v100": "005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt",
    "dgx-a100-nps4": "010_dgx-a100x8-nv12-10nics-pxb-nps4.txt",
    "aws-p4d": "013_aws-p4d24xl-a100x8-nv12-nonic.txt",
    "h100-nv18-8nics": "051_h100x8-nv18-8nics-dualport-pix-pairs.txt",
    "rtx4090x8-allsys": "032_rtx4090x8-allsys-2nics-tabs.txt",
    "gh200": "055_gh200-480gb-x1-4nics-bf3-gpunumaid-1.txt",
    "h20-36nics": "001_h20x8-nv18-36nics-mangled.txt",
    "nv12-bridge-pairs": "027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt",
}


def corpus_path(filename: str) -> Path:
    for d in _CORPUS_DIRS:
        if (d / filename).is_file():
            return d / filename
    raise AssertionError(f"topology corpus file {filename} not found in {[str(d) for d in _CORPUS_DIRS]}")


def machine(name: str) -> Topology:
    """Parse a real machine's `nvidia-smi topo -m` from the corpus."""
    path = corpus_path(MACHINES[name])
    return smi_parser.parse(path.read_text(encoding="utf-8"), source=path.name)


def kube_api(url: str) -> k8s.CoreV1Api:
    """The official client pointed at the in-test server, retries off as in the agent."""
    cfg = k8s.Configuration()
    cfg.host = url
    cfg.retries = urllib3.Retry(total=0, redirect=0, respect_retry_after_header=False)
    return k8s.CoreV1Api(k8s.ApiClient(cfg))



@pytest.fixture(name="fake_api")
def fake_api_fixture() -> Iterator[FakeKubeApi]:
    """The in-test API server holding one realistic GPU node, ``gpu-node-1``.

    Test modules import this fixture by name (there is deliberately no conftest.py
    here: a second ``conftest`` module would shadow the suite's own).
    """
    api = FakeKubeApi()
    api.add_node(realistic_gpu_node("gpu-node-1"))
    with api:
        yield api
