"""`gputopo` command line: one entry point, subcommands imported lazily.

Why lazy: `gputopo audit` must start fast and work without the extender's web
stack or NVML, and the agent image never needs FastAPI. Each subcommand's
module exposes ``main(argv) -> int``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gputopo import __version__

__all__ = ["main"]

_HELP = """\
GPU-topology-aware placement for Kubernetes.

subcommands:
  audit      read a topology (saved `nvidia-smi topo -m`, stdin, or this machine) and report
             islands, NIC locality, best placements and the labels gputopo would publish
  audit pod  inside a container: the GPUs it got, their island, ring, bandwidth, NICs, CPU alignment
  audit nccl compare an all_reduce_perf (nccl-tests) log with what its GPUs should reach
  audit cluster  every GPU node of a cluster: classes per pool and the odd ones out, stale or
             missing labels, pods whose GPUs span islands, stranded GPUs, where to run nccl-tests
  agent      run the node labeler (the DaemonSet entrypoint)
  extender   run the kube-scheduler HTTP extender (filter + prioritize)
  simulate   replay a workload (openb trace or a synthetic PyTorchJob/vLLM mix) on real topologies under
             gputopo, the default scheduler, BestFit and Random, side by side

run `gputopo SUBCOMMAND --help` for the options of each.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="gputopo", description=_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"gputopo {__version__}")
    parser.add_argument("subcommand", choices=["audit", "agent", "extender", "simulate"], help=argparse.SUPPRESS)
    if not args or args[0] in ("-h", "--help", "--version"):
        parser.parse_args(args or ["--help"])
        return 0
    sub, rest = args[0], args[1:]
    if sub == "audit" and rest[:1] in (["pod"], ["nccl"]):  # `./pod` still names a file
        from gputopo import audit_nccl, audit_pod

        return audit_pod.main(rest[1:]) if rest[0] == "pod" else audit_nccl.main(rest[1:])
    if sub == "audit" and rest[:1] == ["cluster"]:
        from gputopo import audit_cluster

        return audit_cluster.main(rest[1:])
    if sub == "audit":
        from gputopo import audit

        return audit.main(rest)
    if sub == "agent":
        from labeler.agent import cli as agent_cli

        return agent_cli.main(rest)
    if sub == "extender":
        from extender import cli as extender_cli

        return extender_cli.main(rest)
    if sub == "simulate":
        from simulator import cli as simulate_cli

        return simulate_cli.main(rest)
    parser.parse_args(args)  # prints the usage error and exits 2
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
