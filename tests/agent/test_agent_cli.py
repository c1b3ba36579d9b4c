"""`gputopo agent` end to end: settings, --once, --dry-run, /healthz + /metrics, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from agent_support import (
    MACHINES,
    corpus_path,
    fake_api_fixture,  # noqa: F401  (provides the fake_api fixture)
)
from fake_kube_api import FakeKubeApi

from labeler.agent import cli
from labeler.agent.settings import load
from labeler.topology.errors import ConfigError

NODE = "gpu-node-1"
P = "gputopo.io/"
REPO = Path(__file__).resolve().parents[2]


def kubeconfig(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": url}}],
        "users": [{"name": "t", "user": {"token": "test-token"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
    }))
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("GPUTOPO_") or k == "NODE_NAME":
            monkeypatch.delenv(k)


def test_settings_env_then_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "node-a")
    monkeypatch.setenv("GPUTOPO_PROBE_INTERVAL", "120")
    monkeypatch.setenv("GPUTOPO_ALLOCATION", "false")
    s = load({})
    assert (s.node_name, s.probe_interval, s.allocation) == ("node-a", 120.0, False)
    s = load(vars(cli.build_parser().parse_args(["--probe-interval", "30", "--node-name", "node-b"])))
    assert (s.node_name, s.probe_interval) == ("node-b", 30.0)


@pytest.mark.parametrize(("env", "args", "needle"), [
    ({"GPUTOPO_PROBE_INTERVAL": "soon"}, [], "probe_interval: Input should be a valid number"),
    ({"GPUTOPO_PROBE_INTERVAL": "0"}, [], "probe_interval: Input should be greater than or equal to 1"),
    ({}, ["--prefix", "nope"], "prefix: label prefix must look like"),
    ({}, ["--health-port", "70000"], "health_port"),
    ({"NODE_NAME": "Bad_Name"}, [], "node_name: not a valid node name"),
    ({"NODE_NAME": ""}, [], "node name is required"),
    ({"GPUTOPO_RESYNC_INTERVAL": "2000"}, [], "health_stale_after must exceed resync_interval"),
    ({"GPUTOPO_NO_SUCH_KNOB": "1"}, [], "unknown environment variable(s): GPUTOPO_NO_SUCH_KNOB"),
])
def test_bad_settings_exit_2_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           env: dict[str, str], args: list[str], needle: str) -> None:
    monkeypatch.setenv("NODE_NAME", "node-a")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["--once", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gputopo agent: error: invalid settings: ") and needle in err


def test_flag_overrides_bad_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "node-a")
    monkeypatch.setenv("GPUTOPO_PROBE_INTERVAL", "soon")
    with pytest.raises(ConfigError):
        load({})
    assert load({"probe_interval": 30}).probe_interval == 30


def test_help_lists_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "gputopo agent" in out and "--dry-run" in out and "GPUTOPO_" in out


def test_once_publishes_through_kubeconfig(tmp_path: Path, fake_api: FakeKubeApi) -> None:
    topo = corpus_path(MACHINES["dgx-a100-nps4"])
    code = cli.main(["--once", "--kubeconfig", str(kubeconfig(tmp_path, fake_api.url)), "--topology-file",
                     str(topo), "--node-name", NODE, "--no-allocation"])
    assert code == 0
    (write,) = fake_api.writes()
    assert write.json()["metadata"]["labels"][P + "gpu-count"] == "8"
    assert fake_api.labels(NODE)[P + "status"] == "ok"
    assert any(r.method == "GET" for r in fake_api.requests)


def test_once_exit_1_when_api_refuses(tmp_path: Path, fake_api: FakeKubeApi,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake_api.fail_next(403, methods=("PATCH",))
    topo = corpus_path(MACHINES["gh200"])
    code = cli.main(["--once", "--kubeconfig", str(kubeconfig(tmp_path, fake_api.url)), "--topology-file",
                     str(topo), "--node-name", NODE, "--no-allocation"])
    assert code == 1 and "HTTP 403" in capsys.readouterr().err


def test_dry_run_prints_patch_and_never_writes(tmp_path: Path, fake_api: FakeKubeApi,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    fake_api.modify(NODE, lambda n: n["metadata"]["labels"].update({P + "stale": "1"}))
    topo = corpus_path(MACHINES["h100-nv18-8nics"])
    code = cli.main(["--once", "--dry-run", "--kubeconfig", str(kubeconfig(tmp_path, fake_api.url)),
                     "--topology-file", str(topo), "--node-name", NODE, "--no-allocation"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["contentType"] == "application/merge-patch+json"
    assert doc["patch"]["metadata"]["labels"][P + "stale"] is None
    assert doc["patch"]["metadata"]["labels"][P + "nvlink"] == "true"
    assert fake_api.writes() == [] and {r.method for r in fake_api.requests} == {"GET"}


def test_dry_run_without_cluster_plans_against_empty_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topo = corpus_path(MACHINES["aws-p4d"])
    code = cli.main(["--once", "--dry-run", "--topology-file", str(topo), "--no-allocation",
                     "--kubeconfig", str(tmp_path / "missing")])
    assert code == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["patch"]["metadata"]["labels"][P + "gpu-count"] == "8"
    assert "planning against an empty node" in captured.err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_daemon_serves_health_and_metrics_and_exits_on_sigterm(tmp_path: Path, fake_api: FakeKubeApi) -> None:
    """The real process: `python -m labeler.agent`, as the image runs it."""
    port = _free_port()
    topo = corpus_path(MACHINES["dgx1-v100"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUTOPO_")}
    env.update({"NODE_NAME": NODE, "GPUTOPO_HEALTH_PORT": str(port), "GPUTOPO_HEALTH_HOST": "127.0.0.1",
                "GPUTOPO_ALLOCATION": "false", "PYTHONPATH": str(REPO)})
    proc = subprocess.Popen([sys.executable, "-m", "labeler.agent", "--kubeconfig",
                             str(kubeconfig(tmp_path, fake_api.url)), "--topology-file", str(topo)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        status, body = 0, ""
        while time.monotonic() < deadline:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/healthz")
                if status == 200 and body.startswith("ok") and fake_api.writes():
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert status == 200 and body.startswith("ok"), body
        status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert "gputopo_agent_gpus 8.0" in metrics
        assert 'gputopo_agent_publish_total{outcome="patched"} 1.0' in metrics
        assert 'gputopo_agent_status{status="ok"} 1.0' in metrics
        assert 'gputopo_agent_islands{level="nvlink"} 1.0' in metrics
        assert "gputopo_agent_probe_duration_seconds_bucket" in metrics
        assert _get(f"http://127.0.0.1:{port}/nope")[0] == 404
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(fake_api.writes()) == 1


def test_missing_topology_file_is_a_startup_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo must stop the agent, not publish status=error to a healthy node."""
    assert cli.main(["--once", "--node-name", NODE, "--topology-file", str(tmp_path / "nope.txt")]) == 2
    err = capsys.readouterr().err
    assert err == f"gputopo agent: error: topology file {tmp_path / 'nope.txt'} does not exist\n"
