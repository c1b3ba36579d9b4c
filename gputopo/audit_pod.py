"""`gputopo audit pod`: run inside a container, say what its GPUs are worth together.

Reads ``NVIDIA_VISIBLE_DEVICES`` / ``CUDA_VISIBLE_DEVICES`` (decoded by
:mod:`policy.audit.device_list`), finds the node's topology — ``--topology FILE``, else a probe
of this container (NVML, ``nvidia-smi``, sysfs), else the Node's ``{prefix}topology``
annotation through the API (node name from the downward-API variable ``NODE_NAME``) —
and prints the analysis of :mod:`policy.audit.pod_audit`. With ``--fail-on LEVEL`` it is a
gate for an init container.

Exit status (docs/audit.md; 0, 1 and 130 mean what they mean for ``gputopo audit``,
:mod:`gputopo.guard`): 0 ok or gate passed; 1 internal error; 2 unusable input (a
device-list variable beyond limits, an unreadable ``--topology``, a bad option); 3 no
topology (no GPU found by the probe and no API to ask); 4 the GPUs or their ring could not
be determined (a gate then fails closed); 5 ``--fail-on`` reached; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gputopo.guard import PipeSafeConsole, guarded
from labeler.topology import labels
from labeler.topology.errors import CodecError, DeviceListError, GputopoError, ProbeError, TopologyError
from labeler.topology.findings import Finding, Severity
from labeler.topology.links import ISLAND_LEVELS, LinkLevel
from labeler.topology.model import Topology
from labeler.topology.serialize import format_cpulist
from policy.audit import device_list, pod_audit
from policy.audit.device_list import Scope

__all__ = ["EXIT_GATE", "EXIT_INPUT", "EXIT_NO_TOPOLOGY", "EXIT_UNKNOWN", "Source", "main", "run"]

EXIT_INPUT = 2
EXIT_NO_TOPOLOGY = 3
EXIT_UNKNOWN = 4
EXIT_GATE = 5

#: Downward-API variables holding the node name (``fieldRef: spec.nodeName``), first found wins.
NODE_NAME_VARS = ("NODE_NAME", "GPUTOPO_NODE_NAME")
#: Most entries listed below the volume-mounts directory.
MAX_MOUNT_ENTRIES = device_list.MAX_ENTRIES


@dataclass(frozen=True)
class Source:
    """A topology and whose indices it carries."""

    topology: Topology
    scope: Scope
    origin: str
    mig_parent: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[Finding, ...] = ()  # what the source itself reports (probe sources, a failed probe)


Prober = Callable[[], Source]
AnnotationReader = Callable[[str], dict[str, str]]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gputopo audit pod",
        description=(
            "Run inside a container: decode NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES, map the GPUs onto the "
            "node's topology (--topology FILE, else a probe of this container, else the Node's topology annotation "
            "through the API using NODE_NAME from the downward API) and report their island, NCCL ring bottleneck, "
            "predicted bus bandwidth, nearest NICs and CPU/NUMA alignment."
        ),
        epilog=("exit status: 0 ok; 1 internal error; 2 bad input; 3 no topology; 4 GPUs or ring undetermined "
                "(a gate fails closed); 5 --fail-on reached; 130 interrupted"),
    )
    p.add_argument("--topology", metavar="FILE", help="the node's `nvidia-smi topo -m` text or topology JSON")
    p.add_argument("--fail-on", metavar="LEVEL", choices=[lv.slug for lv in ISLAND_LEVELS],
                   help="exit 5 when the GPUs' ring bottleneck is at LEVEL or worse (nvlink pix pxb phb node sys); "
                        "sys: the ring has a SYS hop, across CPU sockets or inside one NUMA node (findings "
                        "socket-crossing, sys-within-numa)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--prefix", default=labels.DEFAULT_PREFIX, help="label/annotation prefix (default: %(default)s)")
    return p


def probe_container() -> Source:
    """This container's GPUs through NVML, `nvidia-smi` and sysfs. Raises ProbeError."""
    from labeler.discovery import local  # I/O edge, imported only when probing

    facts = local.probe_local()
    mig = facts.nvml.uuid_to_index() if facts.nvml is not None else {}
    mig = {u: g for u, g in mig.items() if u.upper().startswith("MIG-")}
    return Source(facts.topology, Scope.CONTAINER, "probe of this container (" + ", ".join(facts.merged.sources) + ")",
                  mig, tuple(local.render_report(facts)))


def read_annotations_from_api(node: str) -> dict[str, str]:
    from gputopo import kube_node  # the kubernetes client, imported only when asked

    return kube_node.read_node_annotations(node, kube_node.core_api())


def _list_mounts(root: str = device_list.VOLUME_MOUNTS_ROOT) -> list[str] | None:
    """Entry names below the volume-mounts root (CDI ones as ``vendor/class=name``); None if unreadable."""
    base = Path(root)
    try:
        out: list[str] = []
        for entry in sorted(base.iterdir())[: MAX_MOUNT_ENTRIES + 1]:
            if entry.name == "cdi" and entry.is_dir():
                for sub in sorted(entry.rglob("*"))[: MAX_MOUNT_ENTRIES + 1]:
                    rel = sub.relative_to(entry).parts
                    if len(rel) == 3 and not sub.is_dir():
                        out.append(f"{rel[0]}/{rel[1]}={rel[2]}")
            else:
                out.append(entry.name)
        return out
    except OSError:
        return None


def _topology(args: argparse.Namespace, env: Mapping[str, str], prober: Prober,
              read_annotations: AnnotationReader) -> Source:
    if args.topology:
        topo = _read_file(args.topology, args.prefix)
        return Source(topo, Scope.NODE, f"file {args.topology}")
    try:
        return prober()
    except ProbeError as err:
        node = next((env[v] for v in NODE_NAME_VARS if env.get(v)), None)
        if node is None:
            raise ProbeError(f"{err}; and no {NODE_NAME_VARS[0]} to read the Node's annotation") from err
        try:
            annotations = read_annotations(node)
        except GputopoError as api_err:
            raise ProbeError(f"{err}; and the Node annotation: {api_err}") from api_err
        decoded = labels.decode_topology(annotations, prefix=args.prefix)
        if decoded is None:
            raise ProbeError(f"{err}; and Node {node} has no {args.prefix}{labels.ANNOTATION_TOPOLOGY} annotation "
                             "(is the gputopo agent running there?)") from err
        return Source(decoded, Scope.NODE, f"annotation {args.prefix}{labels.ANNOTATION_TOPOLOGY} of Node {node}",
                      notes=(Finding(Severity.INFO, "source", f"probe of this container failed: {err}"),))


def _read_file(path: str, prefix: str) -> Topology:
    from gputopo.topology_input import read_topology

    return read_topology(path, prefix=prefix)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cpus: frozenset[int] | None,
    prober: Prober = probe_container,
    read_annotations: AnnotationReader = read_annotations_from_api,
    list_mounts: Callable[[], list[str] | None] = _list_mounts,
    out: Any = None,
) -> int:
    """The command with its I/O passed in (tests give fakes; :func:`main` gives the real ones)."""
    args = _parser().parse_args(list(argv))
    stdout = out if out is not None else sys.stdout
    try:
        args.prefix = labels.validate_prefix(args.prefix)
        nv_value = env.get("NVIDIA_VISIBLE_DEVICES")
        mounts = list_mounts() if nv_value is not None and nv_value.strip() == device_list.VOLUME_MOUNTS_ROOT else None
        legacy = bool(env.get("CUDA_VERSION")) and not env.get("NVIDIA_REQUIRE_CUDA")
        nvidia = device_list.decode_nvidia_visible(nv_value, legacy_image=legacy, mounts=mounts)
        cuda = device_list.decode_cuda_visible(env.get("CUDA_VISIBLE_DEVICES"))
    except (DeviceListError, ValueError) as err:
        print(f"gputopo audit pod: {err}", file=sys.stderr)
        return EXIT_INPUT
    try:
        source = _topology(args, env, prober, read_annotations)
    except OSError as err:
        print(f"gputopo audit pod: cannot read {args.topology}: {err.strerror or err}", file=sys.stderr)
        return EXIT_INPUT
    except (TopologyError, CodecError) as err:
        print(f"gputopo audit pod: {args.topology or 'topology'}: {err}", file=sys.stderr)
        return EXIT_INPUT
    except ProbeError as err:
        print(f"gputopo audit pod: no topology: {err}", file=sys.stderr)
        return EXIT_NO_TOPOLOGY
    resolution = device_list.resolve(nvidia, cuda, source.topology, source.scope, mig_parent=source.mig_parent,
                                     device_order=env.get("CUDA_DEVICE_ORDER"))
    audit = pod_audit.analyse(source.topology, resolution, cpus)
    verdict = pod_audit.gate(audit, LinkLevel.from_slug(args.fail_on)) if args.fail_on else None
    code = _exit_code(audit, verdict)
    if args.json:
        doc = {
            "topology_source": source.origin,
            "scope": source.scope.value,
            "env": {k: env.get(k) for k in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")},
            **pod_audit.to_dict(audit),
            "gate": None if verdict is None else {"fail_on": args.fail_on, "result": verdict.value},
            "source_findings": [f.as_dict() for f in source.notes],
            "exit_code": code,
        }
        json.dump(doc, stdout, indent=2, ensure_ascii=False)
        stdout.write("\n")
    else:
        _render(audit, source, env, verdict, args.fail_on, PipeSafeConsole(file=stdout, highlight=False))
    return code


def _exit_code(audit: pod_audit.PodAudit, verdict: pod_audit.Gate | None) -> int:
    if verdict is pod_audit.Gate.FAIL:
        return EXIT_GATE
    if verdict is pod_audit.Gate.UNKNOWN or (verdict is None and not audit.known):
        return EXIT_UNKNOWN
    return 0


def _render(audit: pod_audit.PodAudit, source: Source, env: Mapping[str, str], verdict: pod_audit.Gate | None,
            fail_on: str | None, console: Console) -> None:
    topo = source.topology
    console.print(f"[bold]topology[/bold]: {escape(source.origin)} "
                  f"({source.scope.value} indices, {len(topo.gpus)} GPUs)")
    for var in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        value = env.get(var)
        console.print(escape(f"{var}={value!r}" if value is not None else f"{var} unset"))
    console.print(f"[bold]GPUs of this process[/bold]: {', '.join(f'GPU{g}' for g in audit.gpus) or 'none'}"
                  + ("" if audit.known else "  (incomplete: see findings)"))
    if audit.gpus:
        table = Table(title="GPUs", title_justify="left")
        for col in ("GPU", "name", "bus", "NUMA", "CPU affinity", "local CPUs in mask", "nearest NIC", "level"):
            table.add_column(col)
        nics = {g: (lvl, n) for g, lvl, n in audit.nics}
        local = {g: (n, total) for g, n, total in audit.cpu.local}
        for g in audit.gpus:
            gpu = topo.gpu(g)
            lvl, names = nics.get(g, (None, ()))
            n_local = local.get(g)
            table.add_row(
                str(g), escape(gpu.name or "-"), gpu.bus_id or "-",
                "-" if gpu.numa_node is None else str(gpu.numa_node),
                "-" if gpu.cpu_affinity is None else format_cpulist(gpu.cpu_affinity),
                "-" if n_local is None else f"{n_local[0]} of {n_local[1]}",
                escape(", ".join(names) or "-"), "-" if lvl is None else lvl.token,
            )
        console.print(table)
    summary = Table(title="Together", title_justify="left", show_header=False)
    summary.add_column("what")
    summary.add_column("value")
    summary.add_row("one island at", "-" if audit.island_level is None else audit.island_level.slug)
    if audit.bottleneck is not None and audit.placement is not None:
        summary.add_row("NCCL ring", "→".join(f"GPU{g}" for g in audit.placement.ring))
        summary.add_row("ring bottleneck", audit.bottleneck.token)
    summary.add_row("predicted bus bandwidth",
                    "-" if audit.expected_busbw is None else f"{audit.expected_busbw:g} GB/s (bandwidth model)")
    cpus = audit.cpu.process_cpus
    summary.add_row("process CPUs", "-" if cpus is None else f"{format_cpulist(cpus)} ({len(cpus)})"
                    + (f", NUMA {','.join(map(str, audit.cpu.process_numa))}" if audit.cpu.process_numa else ""))
    summary.add_row("CPU/NUMA alignment", escape(f"{audit.cpu.status.value}: {audit.cpu.message}"))
    if verdict is not None:
        summary.add_row(f"--fail-on {fail_on}", verdict.value)
    console.print(summary)
    notes = list(audit.findings)
    if notes or source.notes:
        console.print("[bold]Findings[/bold]")
        for f in notes:
            console.print(escape(f"  {'!' if f.severity.value != 'info' else '-'} [{f.code}] {f.message}"))
        for f in source.notes:
            console.print(escape(f"  {'!' if f.is_warning else '-'} [{f.code}] {f.message}"))


def main(argv: Sequence[str]) -> int:
    try:
        cpus: frozenset[int] | None = frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = None
    return guarded("gputopo audit pod", lambda: run(argv, env=dict(os.environ), cpus=cpus))
