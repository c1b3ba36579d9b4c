"""A real, throw-away Kubernetes control plane on loopback: etcd, kube-apiserver, kube-scheduler.

Used as a pytest fixture (``tests/e2e/conftest.py``) and as a developer command::

    python -m tests.e2e.cluster up      # start, apply manifests/overlays/default, start extender + scheduler
    eval "$(python -m tests.e2e.cluster env)"   # KUBECONFIG and PATH (kubectl) for this shell
    python -m tests.e2e.cluster down    # stop every process `up` started (by pid) and delete the state

What runs (binaries from ``hack/kube``, see docs/e2e.md): etcd (``--unsafe-no-fsync``:
a test cluster need not survive a power cut); kube-apiserver with generated certificates,
RBAC + Node authorization, the **default** admission plugins (ValidatingAdmissionPolicy
included), a service-account issuer and signing key; kube-scheduler with the project's own
KubeSchedulerConfiguration, read back from the ``gputopo-scheduler-config`` ConfigMap that
``kubectl apply -k manifests/overlays/default`` created, changed only where a local process
needs it (the extender's loopback URL, the kubeconfig path), authenticating as the
``gputopo-scheduler`` ServiceAccount so that the manifests' RBAC is what it runs under.

No kubelet, no controller-manager: what their controllers would do and the tests need is
done explicitly and named so (``default`` ServiceAccounts, removing the ``not-ready`` taint
from nodes that report Ready, the DaemonSet's pods).
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from .kubebin import REPO, kube_bin
from .pki import Pki, make_pki
from .procs import Proc, free_port, kill_group, wait_for

__all__ = ["NAMESPACE", "SCHEDULER_NAMESPACE", "SCHEDULER_USER", "Cluster", "main", "requests_of"]

NAMESPACE = "gputopo-system"  # agents, their allocation ConfigMaps, the extender
SCHEDULER_NAMESPACE = "gputopo-scheduler"  # the second scheduler: its configuration, SA and Lease
SCHEDULER_CONFIGMAP = "gputopo-scheduler-config"
SCHEDULER_SA = "gputopo-scheduler"
EXTENDER_SA = "gputopo-extender"
AGENT_SA = "gputopo-labeler"
AGENT_DAEMONSET = "gputopo-labeler"
STATE_FILE = "state.json"
SCHEDULER_USER = f"system:serviceaccount:{SCHEDULER_NAMESPACE}:{SCHEDULER_SA}"


def _pretty(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


@dataclass
class Cluster:
    """One control plane under ``workdir`` (certs, etcd data, kubeconfigs, logs/)."""

    workdir: Path
    bin_dir: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    api_port: int = 0
    etcd_port: int = 0
    pki: Pki | None = None
    _api: k8s.ApiClient | None = None

    # -- paths ---------------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        """kube-apiserver's audit log: one JSON event per request of a gputopo ServiceAccount."""
        return self.logs / "audit.log"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)

    # -- control plane -------------------------------------------------------------------
    def up(self, *, timeout_s: float = 180.0) -> Cluster:
        """Start etcd and kube-apiserver; wait until ``/readyz`` is ok and the admin can list namespaces."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(self.workdir / "pki")
        self.etcd_port, peer = free_port(), free_port()
        etcd = self._start("etcd", [
            self.binary("etcd"), "--name=e2e", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=e2e=http://127.0.0.1:{peer}", "--unsafe-no-fsync", "--log-level=warn",
        ])
        wait_for("etcd", lambda: b'"health":"true"' in _http_get(f"http://127.0.0.1:{self.etcd_port}/health"),
                 timeout_s, alive=etcd.dead)
        self.api_port = free_port()
        p = self.pki
        apiserver = self._start("kube-apiserver", [
            self.binary("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", f"--secure-port={self.api_port}", "--advertise-address=127.0.0.1",
            f"--tls-cert-file={p.serving_cert}", f"--tls-private-key-file={p.serving_key}",
            f"--client-ca-file={p.ca_cert}", f"--cert-dir={self.workdir / 'apiserver-certs'}",
            # front-proxy (aggregation) settings, as kubeadm sets them: delegated authn in
            # kube-scheduler reads them from kube-system/extension-apiserver-authentication
            f"--requestheader-client-ca-file={p.ca_cert}", "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.sa_pub}", f"--service-account-signing-key-file={p.sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",  # allocation bookkeeping only: nothing routes there
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",  # no kubelet or kube-proxy: the `kubernetes` Endpoints is not used
            "--profiling=false",
            f"--audit-policy-file={self._audit_policy()}", f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json", "--audit-log-mode=blocking",
            "--v=1",
        ])
        self._write_admin_kubeconfig()
        ctx = self.ssl_context(client_cert=True)
        wait_for("kube-apiserver /readyz", lambda: _http_get(f"{self.server}/readyz", ctx) == b"ok",
                 timeout_s, alive=apiserver.dead)
        wait_for("RBAC bootstrap", self._admin_can_list, timeout_s, alive=apiserver.dead)
        self.save_state()
        return self

    def _audit_policy(self) -> Path:
        """Metadata (who, verb, object, response code; no bodies) of every request of our ServiceAccounts.

        What the components really call is then on record: the scheduler scenarios check that
        the scheduler's least-privilege RBAC refused none of its requests.
        """
        path = self.workdir / "audit-policy.yaml"
        path.write_text(_pretty({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata", "userGroups": [f"system:serviceaccounts:{NAMESPACE}",
                                                           f"system:serviceaccounts:{SCHEDULER_NAMESPACE}"]},
                      {"level": "None"}]}))
        return path

    def audit_events(self, user: str) -> list[dict[str, Any]]:
        """The requests of ``user`` (``system:serviceaccount:ns:name``) in the audit log, once each.

        A request is counted when answered; a watch when its stream started (or was refused).
        """
        out = []
        if not self.audit_log.exists():
            return out
        with self.audit_log.open(encoding="utf-8") as f:
            for line in f:
                ev = json.loads(line)
                code = (ev.get("responseStatus") or {}).get("code", 0)
                if ev.get("verb") == "watch":  # a stream that started, or one refused before it could
                    count = ev.get("stage") == "ResponseStarted" or code >= 400
                else:
                    count = ev.get("stage") == "ResponseComplete"
                if count and ev.get("user", {}).get("username") == user:
                    out.append(ev)
        return out

    def _start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, list(argv), self.logs / f"{name}.log", env=env).start()
        self.procs[name] = proc
        self.save_state()
        return proc

    def stop(self, name: str) -> int | None:
        proc = self.procs.pop(name, None)
        rc = proc.stop() if proc is not None else None
        self.save_state()
        return rc

    def down(self) -> None:
        """Stop every process (newest first) and delete etcd's data; logs stay under ``workdir/logs``."""
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
        self.procs.clear()
        if self._api is not None:
            self._api.close()
            self._api = None
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
        (self.workdir / STATE_FILE).unlink(missing_ok=True)

    def save_state(self) -> None:
        """Pids and endpoints, so that ``down`` from another process stops exactly these processes."""
        state = {
            "server": self.server, "kubeconfig": str(self.admin_kubeconfig),
            "pids": {n: p.pid for n, p in self.procs.items() if p.popen is not None},
            "logs": str(self.logs), "bin": str(self.bin_dir),
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2))

    # -- clients -------------------------------------------------------------------------
    def ssl_context(self, *, client_cert: bool) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        if client_cert:
            ctx.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return ctx

    def _write_admin_kubeconfig(self) -> None:
        assert self.pki is not None
        self._write_kubeconfig(self.admin_kubeconfig, "e2e-admin",
                               {"client-certificate": str(self.pki.admin_cert), "client-key": str(self.pki.admin_key)})

    def _write_kubeconfig(self, path: Path, user: str, credentials: dict[str, str]) -> Path:
        assert self.pki is not None
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "e2e", "cluster": {"server": self.server,
                                                     "certificate-authority": str(self.pki.ca_cert)}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_pretty(doc))
        path.chmod(0o600)
        return path

    @property
    def api(self) -> k8s.ApiClient:
        """The admin's ApiClient (client certificate, system:masters)."""
        if self._api is None:
            self._api = k8s_config.new_client_from_config(config_file=str(self.admin_kubeconfig))
        return self._api

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    def _admin_can_list(self) -> bool:
        self.core.list_namespace(limit=1, _request_timeout=5)
        # the bootstrap controller creates kube-system; the scheduler's authn reads a ConfigMap there
        self.core.read_namespaced_config_map("extension-apiserver-authentication", "kube-system",
                                             _request_timeout=5)
        return True

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None,
                kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = [self.binary("kubectl"), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, input=input_text, timeout=120, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    # -- what controllers would do -------------------------------------------------------
    def ensure_namespace(self, name: str) -> None:
        """Create a namespace and its ``default`` ServiceAccount (the controller-manager's job)."""
        for create in (
            lambda: self.core.create_namespace({"metadata": {"name": name}}),  # type: ignore[arg-type]
            lambda: self.core.create_namespaced_service_account(
                name, {"metadata": {"name": "default"}}),  # type: ignore[arg-type]
        ):
            try:
                create()
            except ApiException as err:
                if err.status != 409:
                    raise

    def apply_manifests(self, target: str = "manifests/overlays/default", *, dry_run: bool = False) -> list[str]:
        """``kubectl apply -k`` (server-side, strict field validation); returns kubectl's lines."""
        args = ["apply", "-k", str(REPO / target), "--server-side", "--field-manager=gputopo-e2e",
                "--validate=strict"]
        if dry_run:
            args.append("--dry-run=server")
        return self.kubectl(*args).stdout.splitlines()

    def render(self, target: str) -> list[dict[str, Any]]:
        """``kubectl kustomize`` of a target: the objects ``apply -k`` sends."""
        out = self.kubectl("kustomize", str(REPO / target)).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    # -- identities ----------------------------------------------------------------------
    def token(self, sa: str, namespace: str = NAMESPACE, *, pod: dict[str, Any] | None = None,
              seconds: int = 3600) -> str:
        """A TokenRequest token for ServiceAccount ``sa``, bound to ``pod`` when given.

        A token bound to a Pod that is bound to a Node carries the node's name and uid
        (claims ``kubernetes.io.node``; user extra ``authentication.kubernetes.io/node-name``),
        which is what a policy can restrict the agent with.
        """
        spec: dict[str, Any] = {"audiences": [], "expirationSeconds": seconds}
        if pod is not None:
            spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"],
                                      "uid": pod["metadata"]["uid"]}
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        made = self.core.create_namespaced_service_account_token(sa, namespace, body)  # type: ignore[arg-type]
        token = made.status.token if made.status is not None else None
        assert isinstance(token, str), made
        return token

    def token_kubeconfig(self, name: str, token: str) -> Path:
        return self._write_kubeconfig(self.workdir / "kubeconfigs" / f"{name}.kubeconfig", name, {"token": token})

    def sa_kubeconfig(self, sa: str, namespace: str = NAMESPACE) -> Path:
        return self.token_kubeconfig(f"{namespace}-{sa}", self.token(sa, namespace))

    def daemonset_pod(self, node: str) -> dict[str, Any]:
        """Create the pod the labeler DaemonSet's controller would create on ``node`` (never runs: no kubelet)."""
        ds = self.api.sanitize_for_serialization(
            k8s.AppsV1Api(self.api).read_namespaced_daemon_set(AGENT_DAEMONSET, NAMESPACE))
        template = ds["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{AGENT_DAEMONSET}-{node}"[:63].rstrip("-."), "namespace": NAMESPACE,
                            "labels": template["metadata"].get("labels", {})},
               "spec": {**template["spec"], "nodeName": node}}
        made = self.core.create_namespaced_pod(NAMESPACE, pod)  # type: ignore[arg-type]
        out = self.api.sanitize_for_serialization(made)
        assert isinstance(out, dict)
        return out

    def agent_kubeconfig(self, node: str) -> Path:
        """The agent's identity on ``node``: its DaemonSet pod there and a token bound to that pod."""
        pod = self.daemonset_pod(node)
        return self.token_kubeconfig(f"agent-{node}", self.token(AGENT_SA, pod=pod))

    # -- scheduler and extender ----------------------------------------------------------
    def scheduler_config(self, extender_url: str | None, kubeconfig: Path, *, baseline: bool = False) -> str:
        """The applied KubeSchedulerConfiguration with loopback URL and file path filled in.

        ``baseline``: the same configuration without the ``extenders`` stanza (the
        "without gputopo" side of the throughput comparison; nothing else differs).
        """
        cm = self.core.read_namespaced_config_map(SCHEDULER_CONFIGMAP, SCHEDULER_NAMESPACE)
        cfg = yaml.safe_load((cm.data or {})["config.yaml"])
        cfg.setdefault("clientConnection", {})["kubeconfig"] = str(kubeconfig)
        if baseline:
            cfg.pop("extenders", None)
        else:
            for ext in cfg.get("extenders", []):
                ext["urlPrefix"] = extender_url
        return _pretty(cfg)

    def start_scheduler(self, extender_url: str | None, *, name: str = "kube-scheduler", baseline: bool = False,
                        timeout_s: float = 90.0) -> Proc:
        """Run kube-scheduler as ``gputopo-scheduler`` with the project's configuration; wait for readiness + lease."""
        kubeconfig = self.sa_kubeconfig(SCHEDULER_SA, SCHEDULER_NAMESPACE)
        cfg_path = self.workdir / name / "config.yaml"
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(self.scheduler_config(extender_url, kubeconfig, baseline=baseline))
        port = free_port()
        previous = self._lease_holder()
        proc = self._start(name, [
            self.binary("kube-scheduler"), f"--config={cfg_path}", "--bind-address=127.0.0.1",
            f"--secure-port={port}", f"--cert-dir={cfg_path.parent / 'certs'}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}", "--v=2",
        ])
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # the scheduler's self-signed serving cert, on loopback
        wait_for(f"{name} /readyz", lambda: _http_get(f"https://127.0.0.1:{port}/readyz", insecure) == b"ok",
                 timeout_s, alive=proc.dead)
        # leader: a holder other than a previous scheduler's (whose lease may not have expired yet)
        wait_for(f"{name} leader lease", lambda: self._lease_holder() not in (None, previous), timeout_s,
                 alive=proc.dead)
        return proc

    def _lease_holder(self) -> str | None:
        """Holder of the scheduler's leader-election Lease, if it renewed within the lease duration."""
        try:
            lease = k8s.CoordinationV1Api(self.api).read_namespaced_lease("gputopo-scheduler", SCHEDULER_NAMESPACE)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        spec = lease.spec
        if spec is None or not spec.holder_identity or spec.renew_time is None:
            return None
        age = time.time() - spec.renew_time.timestamp()
        return spec.holder_identity if age < (spec.lease_duration_seconds or 15) else None

    def start_extender(self, *, name: str = "extender", port: int | None = None, timeout_s: float = 90.0,
                       extra: Sequence[str] = ()) -> tuple[Proc, str]:
        """``gputopo extender --mode=cached`` as the ``gputopo-extender`` ServiceAccount; waits for /readyz."""
        kubeconfig = self.sa_kubeconfig(EXTENDER_SA)
        port = port or free_port()
        gputopo = shutil.which("gputopo", path=str(Path(sys.executable).parent)) or "gputopo"
        proc = self._start(name, [gputopo, "extender", "--mode=cached", "--host=127.0.0.1", f"--port={port}",
                                  f"--metrics-port={free_port()}", f"--kubeconfig={kubeconfig}", "--log-level=info",
                                  *extra])
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{name} /readyz", lambda: _http_get(f"{url}/readyz") is not None, timeout_s, alive=proc.dead)
        return proc, url


def requests_of(events: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Audit events summed up: ``"verb group/resource[/subresource] [ns/name]"`` → {HTTP code: count}.

    Namespaced objects name their namespace only where RBAC is per name (Leases, ConfigMaps).
    """
    out: dict[str, dict[str, int]] = {}
    for ev in events:
        ref = ev.get("objectRef") or {}
        what = ("/".join(x for x in (ref.get("apiGroup") or "core", ref["resource"], ref.get("subresource")) if x)
                if ref.get("resource") else ev.get("requestURI", "").split("?")[0])
        if ref.get("resource") in ("leases", "configmaps", "leasecandidates"):
            what += f" {ref.get('namespace', '')}/{ref.get('name', '*')}"
        key = f"{ev['verb']} {what}"
        code = str((ev.get("responseStatus") or {}).get("code"))
        out.setdefault(key, {}).setdefault(code, 0)
        out[key][code] += 1
    return dict(sorted(out.items()))


def _http_get(url: str, ctx: ssl.SSLContext | None = None, timeout_s: float = 3.0) -> bytes | None:
    """Body of a 200 answer; ``None`` for any other status (raises on connection errors)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=ctx) as resp:
            body: bytes = resp.read()
            return body if resp.status == 200 else None
    except urllib.error.HTTPError:
        return None


def metric(url: str, name: str, *labels: str) -> float:
    """Sum of the Prometheus samples of ``name`` at ``url``/metrics whose labels contain each of ``labels``."""
    total = 0.0
    for line in (_http_get(f"{url}/metrics") or b"").decode().splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] == name and all(x in series for x in labels):
            total += float(value)
    return total


def jwt_claims(token: str) -> dict[str, Any]:
    """The (unverified) payload of a JWT: what the API server put in a ServiceAccount token."""
    payload = token.split(".")[1]
    doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(doc, dict)
    return doc


# -- the developer command ---------------------------------------------------------------
_DEFAULT_DIR = REPO / "out" / "e2e-cluster"


def _up(workdir: Path) -> int:
    if (workdir / STATE_FILE).exists():
        print(f"a cluster is already up in {workdir} (run `down` first)", file=sys.stderr)
        return 1
    cluster = Cluster(workdir, kube_bin())
    try:
        cluster.up()
        for line in cluster.apply_manifests():
            print(f"  {line}", file=sys.stderr)
        _, url = cluster.start_extender()
        cluster.start_scheduler(url)
    except BaseException:
        print(f"start-up failed; logs kept in {cluster.logs}", file=sys.stderr)
        cluster.down()
        raise
    cluster.save_state()
    for proc in cluster.procs.values():
        proc.popen = None  # detach: these keep running after we exit; `down` stops them by pid
    print(f"cluster up: {cluster.server}; logs in {cluster.logs}", file=sys.stderr)
    _print_env(json.loads((workdir / STATE_FILE).read_text()))
    return 0


def _print_env(state: dict[str, Any]) -> None:
    """Shell lines for `eval`: the admin kubeconfig, and kubectl v1.37.2 first on PATH."""
    print(f"export KUBECONFIG={state['kubeconfig']}")
    print(f"export PATH={state['bin']}:$PATH")


def _down(workdir: Path) -> int:
    state_path = workdir / STATE_FILE
    if not state_path.exists():
        print(f"no cluster state in {workdir}", file=sys.stderr)
        return 0
    state = json.loads(state_path.read_text())
    for name, pid in reversed(list(state["pids"].items())):
        print(f"stopping {name} (pid {pid})", file=sys.stderr)
        kill_group(int(pid))
    shutil.rmtree(workdir / "etcd", ignore_errors=True)
    state_path.unlink()
    print(f"down; logs kept in {state['logs']}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.e2e.cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["up", "down", "env"])
    p.add_argument("--dir", type=Path, default=_DEFAULT_DIR, help=f"state, certs and logs (default {_DEFAULT_DIR})")
    args = p.parse_args(argv)
    workdir = args.dir.resolve()
    if args.command == "up":
        return _up(workdir)
    if args.command == "down":
        return _down(workdir)
    state_path = workdir / STATE_FILE
    if not state_path.exists():
        print(f"no cluster state in {workdir}; run `up` first", file=sys.stderr)
        return 1
    _print_env(json.loads(state_path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
