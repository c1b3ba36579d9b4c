"""THE Kubernetes client builder of every gputopo process (agent, extender, audits).

One configuration order, kubectl's, for every process::

    1. an explicit kubeconfig (``--kubeconfig``, or the process's own setting), with ``context``;
    2. ``$KUBECONFIG`` (a path list, merged as kubectl merges it), else ``~/.kube/config`` when it exists;
    3. the in-cluster service account (``KUBERNETES_SERVICE_HOST`` and the mounted token).

Why this order rather than in-cluster first: an operator who sets ``KUBECONFIG`` (or passes a
flag) means it, inside a pod as on a laptop, and a pod of the DaemonSet or the Deployment has
neither, so it lands on its service account as before. ``$KUBECONFIG`` is read at call time,
not when the ``kubernetes`` package was imported (its ``KUBE_CONFIG_DEFAULT_LOCATION`` is
frozen at import).

Every client gets its own ``Configuration`` (never the process-global default) with urllib3's
retries switched off: each caller retries with its own backoff and counts every attempt (the
agent's publisher, the extender's reflector), and urllib3 would otherwise retry connection
errors and sleep on ``Retry-After`` behind their back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from labeler.topology.errors import ConfigError

__all__ = ["DEFAULT_KUBECONFIG", "Source", "api_client", "choose_source", "core_api"]

#: kubectl's default kubeconfig, expanded against $HOME at call time
DEFAULT_KUBECONFIG = "~/.kube/config"


@dataclass(frozen=True, slots=True)
class Source:
    """Where the configuration comes from: a kubeconfig path (list) or the in-cluster service account."""

    kind: str  # "flag" | "env" | "home" | "in-cluster" | "none"
    path: str | None = None

    def describe(self) -> str:
        return {"flag": f"kubeconfig {self.path}", "env": f"$KUBECONFIG ({self.path})",
                "home": f"kubeconfig {self.path}", "in-cluster": "the in-cluster service account",
                "none": f"no kubeconfig ({DEFAULT_KUBECONFIG} absent, $KUBECONFIG unset) and not in a cluster "
                        "(KUBERNETES_SERVICE_HOST unset)"}[self.kind]


def choose_source(kubeconfig: str | Path | None, environ: Mapping[str, str] | None = None) -> Source:
    """The configuration order above, as a pure choice (``environ`` defaults to ``os.environ``)."""
    env = os.environ if environ is None else environ
    if kubeconfig is not None and str(kubeconfig):
        return Source("flag", str(kubeconfig))
    if env.get("KUBECONFIG"):
        return Source("env", env["KUBECONFIG"])
    home = Path(env["HOME"], ".kube", "config") if env.get("HOME") else Path(DEFAULT_KUBECONFIG).expanduser()
    if home.is_file():
        return Source("home", str(home))
    if env.get("KUBERNETES_SERVICE_HOST"):
        return Source("in-cluster")
    return Source("none")


def api_client(kubeconfig: str | Path | None = None, *, context: str | None = None) -> k8s.ApiClient:
    """An ``ApiClient`` configured by the order above; :class:`ConfigError` (one line) when none works."""
    source = choose_source(kubeconfig)
    if source.kind == "none":
        raise ConfigError(f"no Kubernetes API configuration: {source.describe()}")
    cfg = k8s.Configuration()
    try:
        if source.kind == "in-cluster":
            k8s_config.load_incluster_config(client_configuration=cfg)
        else:
            k8s_config.load_kube_config(config_file=source.path, context=context, client_configuration=cfg)
    except (k8s_config.ConfigException, OSError, ValueError, TypeError) as err:
        detail = " ".join(str(err).split())[:200]
        raise ConfigError(f"no usable Kubernetes API configuration from {source.describe()}: {detail}") from None
    cfg.retries = urllib3.Retry(total=0, redirect=0, respect_retry_after_header=False)
    return k8s.ApiClient(cfg)


def core_api(kubeconfig: str | Path | None = None, *, context: str | None = None) -> k8s.CoreV1Api:
    """``CoreV1Api`` over :func:`api_client`."""
    return k8s.CoreV1Api(api_client(kubeconfig, context=context))
