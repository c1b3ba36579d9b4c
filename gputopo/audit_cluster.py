"""``gputopo audit cluster``: what every GPU node publishes, and what the cluster makes of it.

Reads Nodes, the agents' allocation ConfigMaps and pending pods (:mod:`gputopo.cluster_reader`),
runs the pure analysis (:mod:`policy.audit.cluster_audit`) and prints tables for people or one JSON
object for machines. Every outcome is a documented exit code (``EXIT_CODES``, printed by
``--help``); ``--fail-on SEVERITY`` turns findings into a non-zero exit for CI and cron jobs.

Settings: one pydantic-settings object (:class:`AuditClusterSettings`, environment
``GPUTOPO_AUDIT_*``; flags win). The two ages that decide freshness default to the agent's
``allocation_refresh`` and the extender's ``allocation_max_age_seconds``, read from their own
settings classes, so the audit's "stale" is the extender's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from rich.console import Console

from extender.settings import ExtenderSettings
from gputopo import guard
from kubeio import names
from labeler.agent.settings import AgentSettings
from labeler.topology import carrier, labels
from labeler.topology.errors import ConfigError
from labeler.topology.findings import Severity
from policy.audit.cluster_audit import SEVERITY_ORDER, ClusterAudit, audit
from policy.audit.cluster_nodes import DEFAULT_POOL_KEYS, DEFAULT_TYPE_KEYS, AuditConfig
from policy.workload import GPU_RESOURCE

__all__ = ["EXIT_CODES", "AuditClusterSettings", "main"]

EXIT_OK = guard.EXIT_OK
EXIT_INTERNAL = guard.EXIT_INTERNAL
EXIT_USAGE = 2
EXIT_CLUSTER = 4
EXIT_FINDINGS = 5
EXIT_INTERRUPTED = guard.EXIT_INTERRUPTED

EXIT_CODES = """\
exit status:
  0    audit printed; no finding at or above --fail-on (or no --fail-on)
  1    internal error, reported in one line (please report it)
  2    usage or configuration error: a bad option or setting, no kubeconfig and not in a cluster,
       an unreadable kubeconfig, a --picture path not writable
  4    the cluster could not be read: API server unreachable, TLS or authentication failure, the
       node list refused (RBAC) or failing
  5    audit printed, and some finding is at or above the --fail-on severity
  130  interrupted (Ctrl-C)
"""

_MAX_AGE_DEFAULT = float(ExtenderSettings.model_fields["allocation_max_age_seconds"].default)
_REFRESH_DEFAULT = float(AgentSettings.model_fields["allocation_refresh"].default)


class AuditClusterSettings(BaseSettings):
    """Every knob of ``gputopo audit cluster`` (see ``--help`` and docs/audit.md)."""

    model_config = SettingsConfigDict(env_prefix="GPUTOPO_AUDIT_", extra="forbid")

    kubeconfig: str | None = None
    context: str | None = None
    prefix: str = labels.DEFAULT_PREFIX
    resource: str = GPU_RESOURCE
    allocation_namespace: str = carrier.DEFAULT_NAMESPACE
    #: the extender's rule (ExtenderSettings.allocation_max_age_seconds): older allocations are stale; 0 = never
    allocation_max_age_seconds: float = Field(_MAX_AGE_DEFAULT, ge=0)
    #: the agent's re-stamp period (AgentSettings.allocation_refresh), quoted in findings
    allocation_refresh_seconds: float = Field(_REFRESH_DEFAULT, ge=0)
    pool_keys: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_POOL_KEYS))
    type_keys: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_TYPE_KEYS))
    sizes: Annotated[list[int] | None, NoDecode] = None
    page_size: int = Field(500, ge=1, le=100_000)
    cached_list: bool = False
    request_timeout_seconds: float = Field(60.0, gt=0)
    fail_on: Literal["info", "warning", "error"] | None = None

    @field_validator("pool_keys", "type_keys", "sizes", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        return names.split_commas(v)

    @field_validator("allocation_namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return names.namespace(v)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return labels.validate_prefix(v)

    @field_validator("pool_keys", "type_keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        return names.label_keys(v)

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(k < 1 for k in v)):
            raise ValueError("sizes must be GPU counts >= 1")
        return v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gputopo audit cluster", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Audit every GPU node of a cluster: topology class, island shapes, status and label freshness per "
            "node; classes per node pool with the odd ones out; GPU nodes without labels or with stale ones; "
            "running pods whose GPUs span islands; GPUs stranded by topology; a node per class to run "
            "nccl-tests on. Reads Nodes, the agents' allocation ConfigMaps and pending pods (read-only; "
            "RBAC in docs/audit.md). Settings also come from GPUTOPO_AUDIT_* variables."
        ),
    )
    a = p.add_argument
    a("--kubeconfig", metavar="FILE", help="kubeconfig (default: $KUBECONFIG or ~/.kube/config, else in-cluster)")
    a("--context", help="kubeconfig context (default: the current one)")
    a("--json", action="store_true", help="print one JSON object instead of tables")
    a("--fail-on", dest="fail_on", choices=["info", "warning", "error"],
      help=f"exit {EXIT_FINDINGS} when a finding of this severity or worse exists")
    a("--sizes", metavar="K,K", help="GPU counts to test stranded GPUs against (default: the pending pods' "
      "requests, else the running pods' sizes)")
    a("--namespace", dest="allocation_namespace", metavar="NS",
      help=f"namespace of the agents' allocation ConfigMaps (default {carrier.DEFAULT_NAMESPACE})")
    a("--prefix", help=f"label prefix (default {labels.DEFAULT_PREFIX})")
    a("--resource", help=f"GPU extended resource (default {GPU_RESOURCE})")
    a("--max-age", dest="allocation_max_age_seconds", type=float, metavar="S",
      help=f"allocation older than this is stale (default: the extender's, {_MAX_AGE_DEFAULT:g}; 0 = never)")
    a("--pool-keys", dest="pool_keys", metavar="K,K", help="node-pool label keys, first match wins "
      f"(default {','.join(DEFAULT_POOL_KEYS)})")
    a("--type-keys", dest="type_keys", metavar="K,K", help="machine-type label keys, first match wins "
      f"(default {','.join(DEFAULT_TYPE_KEYS)})")
    a("--page-size", dest="page_size", type=int, metavar="N", help="objects per list page (default 500)")
    a("--cached-list", dest="cached_list", action="store_true", default=None,
      help="list from the API server's watch cache (resourceVersion=0): lighter on etcd, may be slightly "
      "behind, and servers may then answer in one page")
    a("--nodes", choices=["all", "findings", "none"], default="all",
      help="which nodes the per-node table shows (text output; default all)")
    a("--picture", metavar="PATH", help="also draw the per-class summary chart (nodes and GPUs per topology "
      "class, with the nccl-tests node) as SVG, or PNG when PATH ends in .png")
    a("--format", choices=("svg", "png"), help="picture format (default: PATH's suffix, else svg)")
    a("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def load(**overrides: object) -> AuditClusterSettings:
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return AuditClusterSettings(**given)  # type: ignore[arg-type]
    except ValidationError as err:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors(include_url=False)]
        raise _UsageError("invalid settings: " + "; ".join(lines)) from None


class _UsageError(Exception):
    pass


def _core_api(settings: AuditClusterSettings) -> Any:
    """A CoreV1Api from --kubeconfig, else $KUBECONFIG / ~/.kube/config, else the in-cluster service account
    (:mod:`kubeio.client`: the order of every gputopo process)."""
    from kubeio.client import core_api

    try:
        return core_api(settings.kubeconfig, context=settings.context)
    except ConfigError as err:
        raise _UsageError(str(err)) from None


class _Bar:
    """rich progress on stderr, one task per listed kind."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def start(self, kind: str, total: int | None) -> None:
        self.tasks[kind] = self.progress.add_task(f"listing {kind}", total=total)

    def advance(self, kind: str, items: int, total: int | None) -> None:
        self.progress.update(self.tasks[kind], advance=items, total=total)


def main(argv: Sequence[str]) -> int:
    """Run the cluster audit; every outcome is an exit code from ``EXIT_CODES`` and at most one line on stderr."""
    return guard.guarded("gputopo audit cluster", lambda: _main(argv))


def _main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        settings = load(kubeconfig=args.kubeconfig, context=args.context, fail_on=args.fail_on, sizes=args.sizes,
                        allocation_namespace=args.allocation_namespace, prefix=args.prefix, resource=args.resource,
                        allocation_max_age_seconds=args.allocation_max_age_seconds, pool_keys=args.pool_keys,
                        type_keys=args.type_keys, page_size=args.page_size, cached_list=args.cached_list)
        core_v1 = _core_api(settings)
    except _UsageError as err:
        print(f"gputopo audit cluster: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = _read(core_v1, settings, progress=not args.no_progress)
    except _ClusterError as err:
        print(f"gputopo audit cluster: {err}", file=sys.stderr)
        return EXIT_CLUSTER
    config = AuditConfig(
        now=time.time(), allocation_max_age_s=settings.allocation_max_age_seconds,
        allocation_refresh_s=settings.allocation_refresh_seconds, prefix=settings.prefix,
        pool_keys=tuple(settings.pool_keys), type_keys=tuple(settings.type_keys),
        sizes=None if settings.sizes is None else tuple(settings.sizes),
    )
    from gputopo.cluster_reader import paused_gc

    with paused_gc():  # records and findings: no reference cycles (see paused_gc)
        report = audit(result.nodes, result.pending, config, input_findings=result.input_findings)
    if args.picture:
        try:
            _write_chart(report, result.nodes, args.picture, args.format, prefix=settings.prefix)
        except OSError as err:
            print(f"gputopo audit cluster: cannot write {args.picture}: {err.strerror or err}", file=sys.stderr)
            return EXIT_USAGE
    if args.json:
        doc = report.to_dict()
        doc["reads"] = [{"kind": s.kind, "objects": s.objects, "pages": s.pages, "bytes": s.bytes,
                         "seconds": round(s.seconds, 3)} for s in result.stats]
        json.dump(doc, sys.stdout, indent=1, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        from gputopo.audit_cluster_text import render

        console = guard.PipeSafeConsole(highlight=False)
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console.width = 200  # a file or a pipe: wide rows rather than wrapped cells
        render(report, console, nodes=args.nodes)
        if args.picture:
            print(f"picture written to {args.picture}")
    sys.stdout.flush()
    if settings.fail_on is not None and _fails(report, Severity(settings.fail_on)):
        return EXIT_FINDINGS
    return EXIT_OK


class _ClusterError(Exception):
    pass


def _write_chart(report: ClusterAudit, nodes: Sequence[Any], path: str, fmt: str | None, *, prefix: str) -> None:
    """The per-class chart (``labeler.topology.class_chart``) of the GPU nodes; example node = the nccl-tests node."""
    import dataclasses

    from labeler.topology import class_chart
    from labeler.topology.scene import to_svg

    gpu = {v.name for v in report.views if v.gpu_node}
    rows = class_chart.rows_from_labels({n.name: n.labels for n in nodes if n.name in gpu}, prefix=prefix)
    nccl = {c.topology_class: c.nccl.node for c in report.classes if c.nccl is not None}
    rows = [dataclasses.replace(r, example=nccl.get(r.cls, "")) for r in rows]
    scene = class_chart.chart_scene(rows)
    suffix = Path(path).suffix.lower().lstrip(".")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if (fmt or ("png" if suffix == "png" else "svg")) == "png":
        from gputopo.png import render_png  # matplotlib: imported only when a PNG is asked for

        Path(path).write_bytes(render_png(scene))
    else:
        Path(path).write_text(to_svg(scene), encoding="utf-8")


def _fails(report: ClusterAudit, threshold: Severity) -> bool:
    worst = report.worst()
    return worst is not None and SEVERITY_ORDER[worst] >= SEVERITY_ORDER[threshold]


def _read(core_v1: Any, settings: AuditClusterSettings, *, progress: bool) -> Any:
    from kubernetes.client.exceptions import ApiException
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from urllib3.exceptions import HTTPError

    from gputopo.cluster_reader import ClusterReadError, paused_gc, read_cluster

    err_console = Console(stderr=True)
    show = progress and err_console.is_terminal
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console, transient=True, disable=not show)
    keys = frozenset(settings.pool_keys) | frozenset(settings.type_keys)
    try:
        with bar, paused_gc():
            return read_cluster(core_v1, prefix=settings.prefix, resource=settings.resource,
                                namespace=settings.allocation_namespace, label_keys=keys,
                                page_size=settings.page_size, cached=settings.cached_list,
                                timeout=settings.request_timeout_seconds, reporter=_Bar(bar) if show else None)
    except ClusterReadError as err:
        raise _ClusterError(str(err)) from None
    except ApiException as err:
        raise _ClusterError(f"API error: HTTP {err.status} {err.reason}") from None
    except (HTTPError, OSError) as err:  # connection refused, TLS, timeouts (urllib3 wraps them)
        raise _ClusterError(f"cannot reach the API server: {' '.join(str(err).split())[:200]}") from None
