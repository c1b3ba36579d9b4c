"""kubeio.client: one configuration order for every process, and urllib3 retries off.

The order is kubectl's (flag, ``$KUBECONFIG``, ``~/.kube/config``, in-cluster); each row names the
files and variables a real laptop or pod would have and the source the builder must pick.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from kubeio import client as kube_client
from labeler.topology.errors import ConfigError


def write_kubeconfig(path: Path, contexts: dict[str, str], current: str) -> Path:
    """A kubeconfig with one cluster per context (``name → server URL``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in contexts.items()],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in contexts],
    }))
    return path


@pytest.mark.parametrize(("flag", "env_kubeconfig", "home_file", "in_cluster", "expected"), [
    # laptop with ~/.kube/config: the home file
    (False, False, True, False, "home"),
    # a flag beats everything, even inside a pod with $KUBECONFIG set
    (True, True, True, True, "flag"),
    # $KUBECONFIG beats ~/.kube/config and the service account (kubectl's rule)
    (False, True, True, True, "env"),
    # a DaemonSet/Deployment pod: no kubeconfig anywhere, the service account
    (False, False, False, True, "in-cluster"),
    # a pod whose image happens to carry ~/.kube/config: that file (kubectl inside a pod does the same)
    (False, False, True, True, "home"),
    # nothing at all
    (False, False, False, False, "none"),
])
def test_choose_source_follows_kubectls_order(tmp_path: Path, flag: bool, env_kubeconfig: bool, home_file: bool,
                                              in_cluster: bool, expected: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if home_file:
        write_kubeconfig(home / ".kube" / "config", {"h": "https://home:6443"}, "h")
    env = {"HOME": str(home)}
    if env_kubeconfig:
        env["KUBECONFIG"] = str(tmp_path / "a.yaml") + ":" + str(tmp_path / "b.yaml")
    if in_cluster:
        env["KUBERNETES_SERVICE_HOST"] = "10.96.0.1"
    source = kube_client.choose_source(tmp_path / "flag.yaml" if flag else None, env)
    assert source.kind == expected
    assert source.path == {"flag": str(tmp_path / "flag.yaml"), "env": env.get("KUBECONFIG"),
                           "home": str(home / ".kube" / "config")}.get(expected)


def test_kubeconfig_variable_is_read_at_call_time_and_context_is_honoured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # set after `kubernetes` was imported: its KUBE_CONFIG_DEFAULT_LOCATION is frozen at import
    path = write_kubeconfig(tmp_path / "kc", {"a": "https://a.example:6443", "b": "https://b.example:6443"}, "a")
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert kube_client.api_client().configuration.host == "https://a.example:6443"
    assert kube_client.api_client(context="b").configuration.host == "https://b.example:6443"


def test_each_client_has_its_own_configuration_with_retries_off(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", {"a": "https://a.example:6443"}, "a")
    one, two = kube_client.api_client(path), kube_client.api_client(str(path))
    assert one.configuration is not two.configuration
    retries = one.configuration.retries
    assert retries.total == 0 and retries.redirect == 0 and retries.respect_retry_after_header is False


@pytest.mark.parametrize(("setup", "message"), [
    ("nothing", "not in a cluster"),
    ("missing-flag", "missing.yaml"),
    ("unknown-context", "nope"),
    ("in-cluster-without-token", "in-cluster service account"),
])
def test_no_usable_configuration_is_one_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str,
                                                     message: str) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    flag: Path | None = None
    context = None
    if setup == "missing-flag":
        flag = tmp_path / "missing.yaml"
    elif setup == "unknown-context":
        flag = write_kubeconfig(tmp_path / "kc", {"a": "https://a.example:6443"}, "a")
        context = "nope"
    elif setup == "in-cluster-without-token":
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ConfigError, match=message) as info:
        kube_client.api_client(flag, context=context)
    assert "\n" not in str(info.value)


class _Busy(BaseHTTPRequestHandler):
    """Answers every GET with 503 and Retry-After, as an overloaded API server does; counts requests."""

    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        body = b'{"kind":"Status","code":503}'
        self.send_response(503)
        self.send_header("Retry-After", "30")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def busy_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_503_with_retry_after_reaches_the_caller_at_once(tmp_path: Path, busy_server: str) -> None:
    """urllib3 would sleep 30 s on Retry-After and retry a GET; the caller must see one attempt."""
    _Busy.calls = 0
    api = kube_client.core_api(write_kubeconfig(tmp_path / "kc", {"a": busy_server}, "a"))
    with pytest.raises(ApiException) as info:
        api.read_node("n1", _request_timeout=5)
    assert info.value.status == 503
    assert _Busy.calls == 1
