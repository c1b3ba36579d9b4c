"""`gputopo audit cluster` against an API server over real HTTP, read by the official `kubernetes` client.

The cluster (``cluster_fixture.audit_cluster``, 303 nodes) and what the audit must find in it,
worked out by hand from the machines' matrices (module doc of ``cluster_fixture``):

* EKS node group ``l40s`` (g6e.48xlarge), 120 L40S boards + ``l40s-odd`` (GPU2-GPU3 at PHB):
  - ``l40s-000``: pod ml/train-a on GPUs 0,1 (socket 0) and 4,5 (socket 1): its ring must use a SYS
    hop, while GPUs 0-3 would ring at NODE → pod-crosses-sockets (warning). Free 2,3 | 6,7: at NODE
    (the best level for 4 GPUs) they form islands of 2 and 2, and three 4-GPU pods are pending →
    all four stranded.
  - ``l40s-001``: ml/big-0 on all 8: SYS, but no 8 GPUs share a socket → pod-crosses-sockets (info).
  - ``l40s-002``: ml/pair-0 on the PIX pair 0,1 (fine); free 2,3 alone in socket 0 → 2,3 stranded.
  - ``l40s-003``: ml/infer-0 on GPU0; free 1,2,3 in socket 0 → stranded (4-7 can take a 4-GPU pod).
  - ``l40s-010..012``: allocation stamped 2 h ago (> 1800 s) → stale-allocation ×3.
  - ``l40s-020``: status=error → status-error. ``l40s-021``: topology annotation cut → undecodable-topology.
    ``l40s-022``: ConfigMap value "this is not JSON" → undecodable-allocation.
  - ``l40s-odd``: 1 of 120 voters (121 minus the error node) → odd-one-out.
  - nccl-tests: ``l40s-050`` (fresher than the rest; ``l40s-051`` is fresher still but cordoned).
* Karpenter pool ``h100`` (p5.48xlarge), 100 HGX H100: 000-049 run 8-GPU pods (NVLink, fine);
  ``h100-098`` advertises no GPU capacity → capacity-differs (warning); ``h100-099`` is schema v1 →
  schema-v1 (info). nccl-tests: ``h100-050``.
* 60 bare-metal A100 PCIe boards with NVLink bridges, grouped by GFD product:
  - ``a100-00``: ml/pair-x on 0 and 2 (NODE) where bridge pairs (NV12) exist → pod-spans-islands;
    free 1,3 | 4-7 → 1,3 stranded.
  - ``a100-01``: no allocation → no-allocation.
  - ``a100-02``: GPU7 lost → status-degraded, odd-one-out (7-GPU class), capacity 8 vs 7
    (capacity-differs, info), free 0-3 | 4-6 → 4,5,6 stranded, and its class has no healthy idle
    node → no-nccl-candidate (info). nccl-tests for the 8-GPU class: ``a100-03``.
* ``gpu-new-0`` (capacity 8), ``gpu-new-1`` (GFD labels only) → unlabelled ×2. 20 CPU nodes: nothing.
* Pending: three 4-GPU pods (sizes = {4}); a CPU pod, a bound-but-starting 2-GPU pod and 51 running
  pods are not demand (the field selector keeps them out: a size 2 or 8 would change the stranded GPUs).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_fixture import L40S as L40S_
from cluster_fixture import audit_cluster, kubeconfig, node
from fake_apiserver import FakeApiServer

from gputopo import audit_cluster as cli
from labeler.topology import labels

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    ("error", "status-error", ("l40s-020",), None),
    ("warning", "capacity-differs", ("h100-098",), None),
    ("warning", "no-allocation", ("a100-01",), None),
    ("warning", "odd-one-out", ("a100-02",), None),
    ("warning", "odd-one-out", ("l40s-odd",), None),
    ("warning", "pod-crosses-sockets", ("l40s-000",), "ml/train-a"),
    ("warning", "pod-spans-islands", ("a100-00",), "ml/pair-x"),
    ("warning", "stale-allocation", ("l40s-010",), None),
    ("warning", "stale-allocation", ("l40s-011",), None),
    ("warning", "stale-allocation", ("l40s-012",), None),
    ("warning", "status-degraded", ("a100-02",), None),
    ("warning", "stranded", ("a100-00",), None),
    ("warning", "stranded", ("a100-02",), None),
    ("warning", "stranded", ("l40s-000",), None),
    ("warning", "stranded", ("l40s-002",), None),
    ("warning", "stranded", ("l40s-003",), None),
    ("warning", "undecodable-allocation", ("l40s-022",), None),
    ("warning", "undecodable-topology", ("l40s-021",), None),
    ("warning", "unlabelled", ("gpu-new-0",), None),
    ("warning", "unlabelled", ("gpu-new-1",), None),
    ("info", "capacity-differs", ("a100-02",), None),
    ("info", "no-nccl-candidate", ("a100-02",), None),
    ("info", "pod-crosses-sockets", ("l40s-001",), "ml/big-0"),
    ("info", "schema-v1", ("h100-099",), None),
}


@pytest.fixture(scope="module")
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    audit_cluster(time.time()).load(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kc(api: FakeApiServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kubeconfig(tmp_path_factory.mktemp("kube") / "config", api.url)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = cli.main(["--no-progress", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def audit_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    rc, out, err = run(capsys, "--json", *args)
    assert rc == 0, err
    return json.loads(out)


def found(doc: dict) -> set[tuple[str, str, tuple[str, ...], str | None]]:
    return {(f["severity"], f["code"], tuple(f["nodes"]), f.get("pod")) for f in doc["findings"]}


def test_the_hand_built_cluster(api: FakeApiServer, kc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    api.requests.clear()
    doc = audit_json(capsys, "--kubeconfig", str(kc), "--page-size", "50")
    assert found(doc) == EXPECTED
    s = doc["summary"]
    # 121 + 100 + 60 labelled, 2 unlabelled GPU nodes, 20 CPU nodes; 7 labelled nodes not usable
    # (3 stale, error, damaged topology, damaged allocation, no allocation)
    assert (s["nodes"], s["gpu_nodes"], s["labelled"], s["usable"], s["classes"]) == (303, 283, 281, 274, 5)
    # free GPUs on usable nodes: L40S 4+0+6+7 + 111x8, H100 50x8, A100 6+7+57x8 (a100-03..59; a100-01 not usable)
    assert (s["free_gpus"], s["stranded_gpus"]) == (4 + 0 + 6 + 7 + 111 * 8 + 50 * 8 + 6 + 7 + 57 * 8,
                                                  4 + 2 + 3 + 2 + 3)
    assert (s["pods_multi_gpu"], s["pods_spanning_islands"], s["pods_crossing_sockets"]) == (3 + 50 + 1, 2, 2)
    assert doc["stranded"]["sizes"] == [4] and doc["stranded"]["sizes_from"] == "pending"
    assert doc["stranded"]["pending_gpu_pods"] == 3
    assert {x["node"]: x["stranded"] for x in doc["stranded"]["nodes"]} == {
        "l40s-000": [2, 3, 6, 7], "l40s-002": [2, 3], "l40s-003": [1, 2, 3], "a100-00": [1, 3], "a100-02": [4, 5, 6]}
    nccl = {x["node"]: x for x in doc["nccl"]}
    assert set(nccl) == {"l40s-050", "h100-050", "a100-03", "l40s-odd"}
    assert nccl["h100-050"]["command"] == "NCCL_DEBUG=INFO all_reduce_perf -b 8 -e 1G -f 2 -g 8"
    # the bandwidth model (docs/bandwidth.md) through the one seam, for the node's 8-GPU ring:
    # NV18, 18 x 20.6 GB/s (NVLink 4; the slowest generation with 18 links) = 370.8; L40S SYS: the
    # socket link of an unknown CPU, 6
    assert (nccl["h100-050"]["expected_busbw_gbps"], nccl["l40s-050"]["expected_busbw_gbps"]) == (370.8, 6.0)
    pods = {p["pod"]: p for p in doc["pods"]}
    assert pods["ml/train-a"] | {} == {"pod": "ml/train-a", "node": "l40s-000", "gpus": [0, 1, 4, 5], "level": "sys",
                                       "ring_bottleneck": "SYS", "best_level": "node", "spans_islands": True,
                                       "crosses_sockets": True}
    assert pods["ml/pair-x"]["level"] == "node" and pods["ml/pair-x"]["best_level"] == "nvlink"
    pools = {(p["pool"], p["instance_type"]): p for p in doc["pools"]}
    l40s = pools[("eks.amazonaws.com/nodegroup=l40s", "g6e.48xlarge")]
    assert l40s["nodes"] == 122 and l40s["odd_ones_out"] == ["l40s-odd"]
    assert pools[(None, "NVIDIA-A100-PCIE-40GB")]["odd_ones_out"] == ["a100-02"]
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert nodes["l40s-010"]["allocation"]["freshness"] == "stale" and not nodes["l40s-010"]["usable"]
    assert nodes["l40s-020"]["status_reason"] == "no NVIDIA GPU or driver: NVML_ERROR_DRIVER_NOT_LOADED"
    assert nodes["h100-099"]["allocation"]["freshness"] == "unstamped" and nodes["h100-099"]["schema"] == "v1"
    assert "cpu-00" not in nodes
    # what was asked of the API server: pages of nodes, our ConfigMaps in the agents' namespace, pending pods
    assert api.count("list nodes") == 7 and api.count("watch") == 0
    assert all("limit=50" in r for r in api.requests)
    assert api.count("list configmaps") == 6 and all(
        "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dgputopo" in r or "managed-by%3Dgputopo" in r
        for r in api.requests if r.startswith("list configmaps"))
    assert [r for r in api.requests if r.startswith("list pods")] == [
        "list pods fieldSelector=status.phase%3DPending%2Cspec.nodeName%3D&limit=50"]
    reads = {r["kind"]: r for r in doc["reads"]}
    assert reads["nodes"]["objects"] == 303 and reads["pods"]["objects"] == 4  # 3 waiting + the CPU pod


def test_watch_cache_list_gives_the_same_audit(api: FakeApiServer, kc: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    api.requests.clear()
    doc = audit_json(capsys, "--kubeconfig", str(kc), "--cached-list")
    assert found(doc) == EXPECTED
    (nodes_req,) = [r for r in api.requests if r.startswith("list nodes")]  # the cache answers in one page
    assert "resourceVersion=0" in nodes_req and "resourceVersionMatch=NotOlderThan" in nodes_req


def test_an_expired_continue_token_lists_again_from_the_start(api: FakeApiServer, kc: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    api.requests.clear()
    api.expire_continue = 1
    doc = audit_json(capsys, "--kubeconfig", str(kc), "--page-size", "100")
    assert found(doc) == EXPECTED  # nothing counted twice
    assert doc["summary"]["nodes"] == 303
    # nodes: page 1, then 410 on page 2, then four pages from the start
    assert [r.split("&")[0] for r in api.requests if r.startswith("list nodes")] == [
        "list nodes limit=100", "list nodes continue=100", "list nodes limit=100", "list nodes continue=100",
        "list nodes continue=200", "list nodes continue=300"]


def test_text_report(kc: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich's width when stdout is not a terminal
    rc, out, err = run(capsys, "--kubeconfig", str(kc), "--nodes", "findings")
    assert rc == 0, err
    for title in ("Topology classes", "Pools", "GPU nodes", "Pods whose GPUs span islands", "Stranded GPUs",
                  "nccl-tests", "error status-error (1)", "warning stranded (5)", "info schema-v1 (1)"):
        assert title in out
    assert "l40s-odd" in out and "NCCL_DEBUG=INFO all_reduce_perf -b 8 -e 1G -f 2 -g 8" in out
    assert "cpu-00" not in out and "a100-05" not in out  # --nodes findings: only nodes a finding names


@pytest.mark.parametrize(("fail_on", "rc"), [("error", 5), ("warning", 5), ("info", 5), (None, 0)])
def test_fail_on(kc: Path, capsys: pytest.CaptureFixture[str], fail_on: str | None, rc: int) -> None:
    args = ["--kubeconfig", str(kc), "--json"] + ([] if fail_on is None else ["--fail-on", fail_on])
    assert run(capsys, *args)[0] == rc


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[FakeApiServer, Path]]:
    """Two healthy L40S nodes, all GPUs free, freshly stamped, one of them with a reason to print."""
    from cluster_fixture import EKS_L40S, L40S, alloc, configmap

    server = FakeApiServer().start()
    now = time.time()
    for name in ("n-a", "n-b"):
        server.put("nodes", node(name, L40S, pool=EKS_L40S, instance_type="g6e.48xlarge"))
        server.put("configmaps", configmap(name, alloc(L40S, now - 10)))
    yield server, kubeconfig(tmp_path / "config", server.url)
    server.stop()


def test_clean_cluster_passes_fail_on_info(small: tuple[FakeApiServer, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _, kc = small
    rc, out, err = run(capsys, "--kubeconfig", str(kc), "--fail-on", "info")
    assert rc == 0, out + err
    assert "no findings" in out and "no GPUs stranded" in out


def test_markup_in_cluster_values_is_printed_not_interpreted(small: tuple[FakeApiServer, Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from cluster_fixture import L40S

    server, kc = small
    server.put("nodes", node("n-[bold]", L40S, status=labels.Status.DEGRADED, reason="[/bold] [red]x[/red]"))
    rc, out, err = run(capsys, "--kubeconfig", str(kc))
    assert rc == 0, err
    assert "status=degraded ([/bold] [red]x[/red])" in " ".join(out.split())


def test_configmaps_forbidden_is_a_finding_not_a_failure(small: tuple[FakeApiServer, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    server, kc = small
    server.refuse["configmaps"] = 403
    doc = audit_json(capsys, "--kubeconfig", str(kc))
    assert found(doc) == {
        ("warning", "configmaps-unreadable", (), None),
        ("warning", "no-allocation", ("n-a",), None),
        ("warning", "no-allocation", ("n-b",), None),
        ("info", "no-nccl-candidate", ("n-a", "n-b"), None),
    }


def test_a_configmap_speaking_for_another_node_is_refused_like_the_extender(
        small: tuple[FakeApiServer, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """carrier.claimed_node, the extender's rule: a ConfigMap counts only for the node its name is derived from."""
    from cluster_fixture import EKS_L40S, L40S, alloc, configmap

    from labeler.topology import carrier

    server, kc = small
    server.put("nodes", node("n-c", L40S, pool=EKS_L40S, instance_type="g6e.48xlarge"))
    copy = configmap("n-c", alloc(L40S, time.time() - 10))  # says n-c, but named after n-x: a copy
    copy["metadata"]["name"] = carrier.configmap_name("n-x")
    server.put("configmaps", copy)
    doc = audit_json(capsys, "--kubeconfig", str(kc))
    got = found(doc)
    assert ("warning", "foreign-allocation", ("n-c",), None) in got
    assert ("warning", "no-allocation", ("n-c",), None) in got  # the copy did not count for n-c
    (finding,) = [f for f in doc["findings"] if f["code"] == "foreign-allocation"]
    assert f"{carrier.configmap_name('n-x')} (names n-c)" in finding["message"]
    assert {n["name"]: n["allocation"]["source"] for n in doc["nodes"]}["n-a"] == "configmap"


def test_pods_forbidden_falls_back_to_running_sizes(small: tuple[FakeApiServer, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    server, kc = small
    server.refuse["pods"] = 403
    doc = audit_json(capsys, "--kubeconfig", str(kc))
    assert ("warning", "pods-unreadable", (), None) in found(doc)
    assert doc["stranded"]["sizes_from"] == "none"


def test_nodes_forbidden_exits_4_in_one_line(small: tuple[FakeApiServer, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    server, kc = small
    server.refuse["nodes"] = 403
    rc, out, err = run(capsys, "--kubeconfig", str(kc))
    assert rc == 4 and out == ""
    assert err.count("\n") == 1 and "cannot list nodes: HTTP 403" in err


def test_unreachable_api_server_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kc = kubeconfig(tmp_path / "config", f"http://127.0.0.1:{port}")
    rc, out, err = run(capsys, "--kubeconfig", str(kc))
    assert rc == 4 and out == "" and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("args", [
    ["--kubeconfig", "/nonexistent/kubeconfig"],
    ["--kubeconfig", "/dev/null", "--pool-keys", "not a key!"],
    ["--kubeconfig", "/dev/null", "--sizes", "0,2"],
    ["--kubeconfig", "/dev/null", "--prefix", "no-slash"],
])
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, *args)
    assert rc == 2 and out == "" and err.count("\n") == 1, err


def test_allocation_on_the_node_annotation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Agents run with --allocation-carrier=annotation: no ConfigMaps, the Node annotation is read."""
    from cluster_fixture import L40S, PREFIX, alloc

    server = FakeApiServer().start()
    try:
        used = {0: "ml/x", 4: "ml/x"}
        server.put("nodes", node("n-a", L40S, annotations={PREFIX + "allocation": alloc(L40S, time.time(), used)},
                                 instance_type="g6e.48xlarge"))
        doc = audit_json(capsys, "--kubeconfig", str(kubeconfig(tmp_path / "config", server.url)))
    finally:
        server.stop()
    assert doc["nodes"][0]["allocation"]["source"] == "annotation"
    assert ("warning", "pod-crosses-sockets", ("n-a",), "ml/x") in found(doc)


def test_hostile_objects_cost_only_themselves(small: tuple[FakeApiServer, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    server, kc = small
    with server.cond:  # objects the real API server would refuse, straight into the store
        server.objects["nodes"]["/x1"] = {"metadata": {"name": "x1", "labels": "not a map",
                                                       "annotations": {"gputopo.io/topology": 7}},
                                          "status": {"capacity": {"nvidia.com/gpu": "lots"}}, "spec": []}
        server.objects["nodes"]["/x2"] = {"metadata": {"labels": {}}}  # no name
        server.objects["configmaps"]["gputopo-system/bad"] = {
            "metadata": {"name": "bad", "namespace": "gputopo-system",
                         "labels": {"app.kubernetes.io/managed-by": "gputopo", "gputopo.io/node": "n-a"}},
            "data": "oops"}
    doc = audit_json(capsys, "--kubeconfig", str(kc))
    assert ("warning", "undecodable-capacity", ("x1",), None) in found(doc)
    assert ("warning", "unlabelled", ("x1",), None) in found(doc)  # the GPU resource is advertised
    assert ("warning", "undecodable-node", (), None) in found(doc)
    assert {n["name"] for n in doc["nodes"]} == {"n-a", "n-b", "x1"}


def test_console_entry_point(kc: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "gputopo", "audit", "cluster", "--kubeconfig", str(kc), "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert found(json.loads(res.stdout)) == EXPECTED
    helped = subprocess.run([sys.executable, "-m", "gputopo", "audit", "cluster", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert helped.returncode == 0 and "exit status:" in helped.stdout and "--fail-on" in helped.stdout
    # --fail-on's own help names the code it exits with: 5 (4 is "cluster unreadable")
    assert "exit 5 when a finding of this severity" in " ".join(helped.stdout.split())


def test_rbac_example_is_read_only_and_covers_every_list_the_audit_makes() -> None:
    import yaml

    docs = list(yaml.safe_load_all((ROOT / "manifests" / "examples" / "audit-cluster-rbac.yaml").read_text()))
    rules = {(d["kind"], d["metadata"].get("namespace")): d["rules"]
             for d in docs if d["kind"] in ("ClusterRole", "Role")}
    granted = {(ns, res, verb) for (_, ns), rs in rules.items()
               for r in rs for res in r["resources"] for verb in r["verbs"]}
    assert granted == {(None, "nodes", "list"), (None, "pods", "list"), ("gputopo-system", "configmaps", "list")}
    assert cli.AuditClusterSettings().allocation_namespace == "gputopo-system"


def test_per_class_chart(kc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import xml.etree.ElementTree as ET

    svg, png = tmp_path / "classes.svg", tmp_path / "classes.png"
    assert run(capsys, "--kubeconfig", str(kc), "--json", "--picture", str(svg))[0] == 0
    assert run(capsys, "--kubeconfig", str(kc), "--json", "--picture", str(png))[0] == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    rows = {g.get("data-class"): g for g in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}g")
            if g.get("class") == "class-row"}
    # five classes by their topology-class label, and the two GPU nodes without labels
    assert {c: rows[c].get("data-nodes") for c in rows} == {
        labels.encode(L40S_)[labels.DEFAULT_PREFIX + "topology-class"]: "120", "830a117ab3": "100",
        "5d488247f7": "59", "f36f600b4f": "1", "b76ae00f16": "1", "unlabelled": "2"}
    text = svg.read_text()
    assert "e.g. l40s-050" in text and "e.g. h100-050" in text  # the example node is the nccl-tests node


def test_unwritable_picture_exits_2(kc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "--kubeconfig", str(kc), "--json", "--picture", "/proc/nope/classes.svg")
    assert rc == 2 and out == "" and err.count("\n") == 1 and "cannot write" in err
