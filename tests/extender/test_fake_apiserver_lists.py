"""The in-test API server keeps kube-apiserver's LIST contract (``list_contract``), over real HTTP.

The same :func:`list_contract.check` runs against kube-apiserver v1.37.2 in
``tests/e2e/test_e2e_audit_cluster.py``. Before the double was fixed it served no namespaced pod
list (404), accepted any field label (the real server answers 400), and gave a filtered page that
filled ``limit`` no ``continue`` token when only non-matching objects followed (the real server
pages through keys, so the next page can be empty): this test failed there.
"""

from __future__ import annotations

from collections.abc import Iterator

import list_contract
import pytest
from fake_apiserver import FakeApiServer
from kubernetes import client


@pytest.fixture(scope="module")
def core() -> Iterator[client.CoreV1Api]:
    api = FakeApiServer().start()
    for i in range(list_contract.PODS):
        api.put("pods", {**list_contract.pod(i), "status": {"phase": "Pending"}})  # as the API server stores it
    api.put("pods", {"metadata": {"name": "elsewhere", "namespace": "other"}, "spec": {}})  # not listed
    cfg = client.Configuration()
    cfg.host = api.url
    yield client.CoreV1Api(client.ApiClient(cfg))
    api.stop()


def test_the_double_keeps_the_list_contract(core: client.CoreV1Api) -> None:
    list_contract.check(core)
