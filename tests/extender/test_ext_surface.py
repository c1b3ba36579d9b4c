"""The server's surface: request-head and body deadlines, connection limit, and TLS / mutual TLS.

Everything runs the production server configuration (:func:`extender.server.uvicorn_config`)
over real loopback sockets; certificates are generated per test session with
``cryptography`` (a CA, a server certificate for 127.0.0.1, a client certificate
from the same CA and one from a stranger CA).
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ext_support import PROTOCOL, make_service

from extender.app import create_app, limits
from extender.cli import main
from extender.server import listen_socket, uvicorn_config
from extender.settings import ExtenderSettings, load

WIRE = (PROTOCOL / "filter-request-nodenames.wire.json").read_bytes()


@contextmanager
def run_server(settings: ExtenderSettings, **app_options: Any) -> Iterator[tuple[tuple[str, int], Any]]:
    service = make_service()
    options: dict[str, Any] = {**limits(settings), **app_options}
    app = create_app(service, **options)
    sock = listen_socket("127.0.0.1", 0)
    timeouts: list[str] = []
    server = uvicorn.Server(uvicorn_config(app, settings, on_timeout=timeouts.append))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[:2], timeouts
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


PARSERS = ["httptools", "h11"]


@pytest.mark.parametrize("parser", PARSERS)
def test_a_silent_connection_is_closed_after_the_header_timeout(parser: str) -> None:
    with run_server(load(mode="stateless", header_timeout_seconds=0.3, http=parser)) as (addr, timeouts):
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\n")  # ... and never the rest of the head
            assert s.recv(1024) == b""  # closed by the server
        with socket.create_connection(addr, timeout=10) as s:
            assert s.recv(1024) == b""  # nothing sent at all: closed too
        assert timeouts == ["header", "header"]
        # an ordinary request on a fresh connection still works, and keep-alive reuse too
        conn = http.client.HTTPConnection(*addr, timeout=10)
        for _ in range(2):
            conn.request("POST", "/filter", body=WIRE)
            assert conn.getresponse().read() and True
        conn.close()


@pytest.mark.parametrize("parser", PARSERS)
def test_a_head_over_16_kib_is_refused_and_the_connection_closed(parser: str) -> None:
    """h11's own limit, held for httptools too (llhttp keeps whatever headers it is sent)."""
    with run_server(load(mode="stateless", http=parser)) as (addr, _):
        # a head that keeps growing without ending: both parsers answer 400 past 16 KiB and close
        # (a complete oversized head in one read: httptools refuses it; h11 parses it, it is not incomplete)
        heads = [b"X-Pad: " + b"a" * 20_000 + b"\r\n"]
        if parser == "httptools":
            heads.append(heads[0] + b"\r\n")
        for head in heads:
            with socket.create_connection(addr, timeout=10) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + head)
                answer = b""
                while chunk := s.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 400"), answer[:60]
        conn = http_client(addr)  # a head under the limit on a fresh connection is served
        conn.request("GET", "/healthz", headers={"X-Pad": "a" * 8_000})
        assert conn.getresponse().status == 200
        conn.close()


def http_client(addr: Any) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(*addr, timeout=10)


@pytest.mark.parametrize("parser", PARSERS)
def test_a_slow_body_is_answered_408(parser: str) -> None:
    with run_server(load(mode="stateless", body_timeout_seconds=0.3, http=parser)) as (addr, _):
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(b"POST /prioritize HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:60]


@pytest.mark.parametrize("parser", PARSERS)
def test_connections_beyond_the_limit_get_503(parser: str) -> None:
    with run_server(load(mode="stateless", max_connections=2, http=parser)) as (addr, _):
        held = [socket.create_connection(addr, timeout=10) for _ in range(2)]
        try:
            time.sleep(0.1)
            conn = http.client.HTTPConnection(*addr, timeout=10)
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 503
            conn.close()
        finally:
            for s in held:
                s.close()


# -- TLS -------------------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: Any, issuer: tuple[x509.Name, Any] | None, *, ca: bool = False,
          server: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer is not None else (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, *items: Any) -> str:
    data = b""
    for item in items:
        if isinstance(item, x509.Certificate):
            data += item.public_bytes(serialization.Encoding.PEM)
        else:
            data += item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pki")
    ca_key, stranger_key = _key(), _key()
    ca = _cert("gputopo-test-ca", ca_key, None, ca=True)
    stranger = _cert("stranger-ca", stranger_key, None, ca=True)
    srv_key, cli_key, bad_key = _key(), _key(), _key()
    srv = _cert("gputopo-extender", srv_key, (ca.subject, ca_key), server=True)
    cli = _cert("kube-scheduler", cli_key, (ca.subject, ca_key))
    bad = _cert("kube-scheduler", bad_key, (stranger.subject, stranger_key))
    return {
        "ca": _write(d / "ca.pem", ca),
        "server_cert": _write(d / "server.pem", srv),
        "server_key": _write(d / "server-key.pem", srv_key),
        "client_cert": _write(d / "client.pem", cli),
        "client_key": _write(d / "client-key.pem", cli_key),
        "stranger_cert": _write(d / "stranger.pem", bad),
        "stranger_key": _write(d / "stranger-key.pem", bad_key),
    }


def _client(pki: dict[str, str], cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def _post(addr: tuple[str, int], ctx: ssl.SSLContext) -> int:
    conn = http.client.HTTPSConnection(*addr, context=ctx, timeout=10)
    try:
        conn.request("POST", "/filter", body=WIRE, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert json.loads(resp.read())["Error"] == ""
        return resp.status
    finally:
        conn.close()


def test_tls_serves_https_with_the_given_certificate(pki: dict[str, str]) -> None:
    settings = load(mode="stateless", tls_cert_file=pki["server_cert"], tls_key_file=pki["server_key"])
    with run_server(settings) as (addr, _):
        assert _post(addr, _client(pki)) == 200
        with socket.create_connection(addr, timeout=10) as s:  # plain HTTP on the TLS port goes nowhere
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not s.recv(1024).startswith(b"HTTP/1.1 200")


def test_mutual_tls_requires_a_client_certificate_from_the_ca(pki: dict[str, str]) -> None:
    settings = load(mode="stateless", tls_cert_file=pki["server_cert"], tls_key_file=pki["server_key"],
                    tls_client_ca_file=pki["ca"])
    with run_server(settings) as (addr, _):
        assert _post(addr, _client(pki, pki["client_cert"], pki["client_key"])) == 200
        for ctx in (_client(pki), _client(pki, pki["stranger_cert"], pki["stranger_key"])):
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
                _post(addr, ctx)


def test_tls_settings_are_checked_at_start_up(pki: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--tls-cert-file", pki["server_cert"], "--check-config"]) == 2  # key missing
    assert "go together" in capsys.readouterr().err
    assert main(["--tls-client-ca-file", pki["ca"], "--check-config"]) == 2
    assert main(["--tls-cert-file", "/nonexistent.pem", "--tls-key-file", pki["server_key"], "--check-config"]) == 2
    assert main(["--tls-cert-file", pki["server_cert"], "--tls-key-file", pki["server_key"],
                 "--tls-client-ca-file", pki["ca"], "--check-config"]) == 0


def test_tls_flags_also_read_from_the_environment(pki: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUTOPO_EXTENDER_TLS_CERT_FILE", pki["server_cert"])
    monkeypatch.setenv("GPUTOPO_EXTENDER_TLS_KEY_FILE", pki["server_key"])
    monkeypatch.setenv("GPUTOPO_EXTENDER_TLS_CLIENT_CA_FILE", pki["ca"])
    settings = load()
    assert settings.tls and settings.tls_client_ca_file == pki["ca"]


def test_limits_default_per_mode() -> None:
    cached, stateless = load(mode="cached"), load(mode="stateless")
    assert (cached.body_limit, stateless.body_limit) == (8 << 20, 64 << 20)
    assert (cached.concurrency_limit, stateless.concurrency_limit) == (64, 4)
    assert load(mode="cached", max_body_bytes=4096).body_limit == 4096


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _header_timeouts(mport: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", mport, timeout=10)
    try:
        conn.request("GET", "/metrics")
        for line in conn.getresponse().read().decode().splitlines():
            if line.startswith("gputopo_extender_refused_total{") and 'reason="header"' in line and 'verb="-"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0
    finally:
        conn.close()


def test_probes_and_metrics_answer_in_plain_http_on_their_own_port_under_mutual_tls(pki: dict[str, str]) -> None:
    """`gputopo extender` as a process: the scheduling port wants a client certificate, the metrics port plain HTTP.

    What the TLS overlay relies on: the kubelet's probes and Prometheus present no client
    certificate, so they go to --metrics-port; /filter is not served there. A connection that
    sends no request head in time is closed on either port and counted (before: the process
    never wired the counter, so such closes went unseen).
    """
    import subprocess
    import sys

    port, mport = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gputopo", "extender", "--mode=stateless", "--host=127.0.0.1", f"--port={port}",
         f"--metrics-port={mport}", f"--tls-cert-file={pki['server_cert']}", f"--tls-key-file={pki['server_key']}",
         f"--tls-client-ca-file={pki['ca']}", "--header-timeout-seconds=1", "--log-level=warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", mport, timeout=5)
                conn.request("GET", "/healthz")
                assert conn.getresponse().read() == b"ok\n"
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
                assert time.monotonic() < deadline, "extender did not start"
                time.sleep(0.1)
        for path, status in (("/readyz", 200), ("/metrics", 200)):
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            assert r.status == status
        assert b"gputopo_extender_requests_total" in body and b"gputopo_extender_inexact_placements_total" in body
        conn.request("POST", "/filter", body=WIRE)
        assert conn.getresponse().status == 404  # scheduling verbs only on the scheduling port
        conn.close()
        before = _header_timeouts(mport)
        ctx = _client(pki, pki["client_cert"], pki["client_key"])
        with socket.create_connection(("127.0.0.1", mport), timeout=10) as s, \
                ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                server_hostname="127.0.0.1") as t:
            assert s.recv(1024) == b""  # silent on the metrics port: closed
            with contextlib.suppress(ssl.SSLError, ConnectionError):  # a TLS close may surface as either
                assert t.recv(1024) == b""  # silent after the handshake on the scheduling port: closed
        assert _header_timeouts(mport) - before == 2
        # TLS 1.3: the server refuses the missing certificate after the client thinks the
        # handshake is done, so the client sees the alert or just the connection closing
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _post(("127.0.0.1", port), _client(pki))  # no client certificate: refused there
        assert _post(("127.0.0.1", port), _client(pki, pki["client_cert"], pki["client_key"])) == 200
    finally:
        proc.terminate()
        # a graceful stop: uvicorn shuts both servers down, then re-raises the signal it caught
        assert proc.wait(15) in (0, -15)
