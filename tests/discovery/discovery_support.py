"""Helpers shared by the discovery tests (imported as a plain module: tests/ has no packages)."""

from __future__ import annotations

from pathlib import Path

from machines import Machine

from labeler.topology import smi_parser
from labeler.topology.model import Topology

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "discovery"


def smi_text(machine: Machine) -> str:
    return (FIXTURES / machine.smi_fixture).read_text()


def smi_topology(machine: Machine) -> Topology:
    return smi_parser.parse(smi_text(machine), source="nvidia-smi")


def tokens(topo: Topology) -> list[list[str | None]]:
    return [[None if c is None else c.token for c in row] for row in topo.links]


def lay_out(tmp_path: Path, machine: Machine) -> Path:
    """Build ``machine``'s sysfs tree in a fresh directory under ``tmp_path``; return its root."""
    from sysfs_tree import build

    root = tmp_path / f"root-{machine.name}"
    root.mkdir()
    return build(root, machine)
