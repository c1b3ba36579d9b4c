"""The fleet: nodes built from real `nvidia-smi topo -m` outputs.

Topologies are read with the project's parser (:mod:`labeler.topology.smi_parser`)
from a search path: the user's directories first, then the boards bundled with
the simulator (``simulator/boards/``, byte-for-byte copies of files of the
topology corpus, checked by a test). A file the parser refuses is an error,
never a guess.

The openb trace has no intra-node topology, only a GPU model and count per
node. :data:`OPENB_TOPOLOGIES` is the documented mapping from (model, GPUs) to
a corpus topology; it is an **assumption**, the reason for each row is given,
and ``--fleet-map FILE`` replaces it (YAML: ``{"G2/8": "027_....txt", ...}``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import yaml

from labeler.topology import smi_parser
from labeler.topology.errors import TopologyParseError
from labeler.topology.model import Topology
from simulator.errors import ScenarioError
from simulator.model import NodeSpec
from simulator.trace import TraceNode

__all__ = [
    "BOARDS_DIR",
    "OPENB_TOPOLOGIES",
    "load_fleet_map",
    "load_topology",
    "search_path",
    "trace_fleet",
]

BOARDS_DIR = Path(__file__).parent / "boards"

#: openb (GPU model, GPUs per node) → corpus topology, with the reason (docs/placement.md shows this table).
OPENB_TOPOLOGIES: dict[tuple[str, int], tuple[str, str]] = {
    ("G2", 8): ("027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt",
                "undisclosed ~20 GB model in 8-GPU boxes: a 2-socket PCIe server with NVLink-bridged pairs "
                "(islands at every level: pair, NUMA node, socket)"),
    ("G3", 8): ("010_dgx-a100x8-nv12-10nics-pxb-nps4.txt",
                "undisclosed ~30 GB model in the largest boxes (128 cores, 768 GiB): an NVSwitch board"),
    ("V100M16", 8): ("005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt", "8x V100 SXM2: DGX-1 hybrid cube-mesh"),
    ("V100M32", 8): ("005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt", "8x V100 SXM2: DGX-1 hybrid cube-mesh"),
    ("V100M16", 4): ("045_ibm-ac922-v100x4-nv3-6nics-tabs.txt", "4x V100: NVLink pairs on two sockets (AC922)"),
    ("V100M32", 4): ("045_ibm-ac922-v100x4-nv3-6nics-tabs.txt", "4x V100: NVLink pairs on two sockets (AC922)"),
    ("T4", 4): ("048_a10x4-allsys-2nics-single-numa-vm.txt", "4 PCIe inference cards, no P2P island (all SYS)"),
    ("T4", 2): ("044_della-2gpu-sys-2nics-tabs.txt", "2 PCIe cards, one per socket (SYS)"),
    ("P100", 2): ("046_gtx1080tix2-phb-numa-na-desktop.txt", "2 PCIe cards under one host bridge (PHB)"),
    ("P100", 1): ("003_h100pcie-x1-kvm-1nic.txt", "1 GPU: no links inside the node"),
    ("V100M16", 1): ("003_h100pcie-x1-kvm-1nic.txt", "1 GPU: no links inside the node"),
    ("A10", 1): ("003_h100pcie-x1-kvm-1nic.txt", "1 GPU: no links inside the node"),
}


def search_path(extra: Iterable[str | Path] = ()) -> tuple[Path, ...]:
    """The user's directories first, then the bundled boards."""
    return (*(Path(p) for p in extra), BOARDS_DIR)


@functools.lru_cache(maxsize=256)
def _parse_file(path: Path) -> Topology:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise ScenarioError(f"cannot read topology {path}: {err.strerror or err}") from None
    try:
        return smi_parser.parse(text, source=path.name)
    except TopologyParseError as err:
        raise ScenarioError(f"topology {path} is not readable: {err}") from None


def load_topology(name: str, search: Sequence[Path]) -> Topology:
    """A topology by file name (looked up along ``search``) or by path."""
    direct = Path(name)
    candidates = [direct] if direct.is_absolute() or direct.parent != Path(".") else []
    candidates += [d / name for d in search]
    for c in candidates:
        if c.is_file():
            return _parse_file(c.resolve())
    where = ", ".join(str(d) for d in search)
    raise ScenarioError(f"topology {name!r} not found (looked in {where})")


def load_fleet_map(path: str | Path) -> dict[tuple[str, int], str]:
    """A YAML mapping ``"MODEL/GPUS": topology-file`` (replaces :data:`OPENB_TOPOLOGIES`)."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ScenarioError(f"fleet map {path}: {err}") from None
    if not isinstance(doc, dict):
        raise ScenarioError(f"fleet map {path}: expected a mapping of MODEL/GPUS to a topology file")
    out: dict[tuple[str, int], str] = {}
    for key, value in doc.items():
        model, _, count = str(key).rpartition("/")
        if not model or not count.isdigit() or not isinstance(value, str):
            raise ScenarioError(f"fleet map {path}: entry {key!r}: {value!r} is not MODEL/GPUS: FILE")
        out[(model, int(count))] = value
    return out


def trace_fleet(
    nodes: Sequence[TraceNode],
    search: Sequence[Path],
    mapping: Mapping[tuple[str, int], str] | None = None,
) -> list[NodeSpec]:
    """Nodes of an openb node list, each with the topology its (model, GPUs) maps to; CPU and memory from the trace."""
    table = mapping if mapping is not None else {k: v[0] for k, v in OPENB_TOPOLOGIES.items()}
    out = []
    for n in nodes:
        if n.gpus == 0:
            continue  # CPU-only nodes: FGD's runs use the GPU node list; the simulator places on GPU nodes
        file = table.get((n.model, n.gpus))
        if file is None:
            raise ScenarioError(f"node {n.name}: no topology for {n.model} x{n.gpus} in the fleet map")
        topo = load_topology(file, search)
        if len(topo.gpus) != n.gpus:
            raise ScenarioError(f"node {n.name}: {n.gpus} GPUs but topology {file} has {len(topo.gpus)}")
        out.append(NodeSpec(n.name, topo, n.cpu_milli, n.memory_mib, n.model))
    return out
