"""Named machines for the pod and NCCL audit tests: corpus topologies plus the identities a probe adds.

The link matrices come from the real corpus files (read by the `nvidia-smi topo -m` reader,
whose goldens are checked elsewhere). `nvidia-smi topo -m` carries no UUIDs or bus ids, so
:func:`dgx_a100` adds them the way NVML would report them: the bus ids are DGX A100's real
GPU addresses (tests/discovery/machines.py), in index order; the UUIDs are made up, with
GPU0 and GPU1 sharing the prefix ``GPU-8932f93`` so that abbreviation rules can be tested.
GPU0's UUID is the example from the CUDA Programming Guide.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from labeler.topology import smi_parser
from labeler.topology.model import Topology

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "topo-corpus"

DGX_A100_UUIDS = (
    "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6",
    "GPU-8932f938-0000-4000-8000-000000000001",
    "GPU-1a2b3c4d-0000-4000-8000-000000000002",
    "GPU-5e6f7a8b-0000-4000-8000-000000000003",
    "GPU-9c0d1e2f-0000-4000-8000-000000000004",
    "GPU-a3b4c5d6-0000-4000-8000-000000000005",
    "GPU-e7f8a9b0-0000-4000-8000-000000000006",
    "GPU-c1d2e3f4-0000-4000-8000-000000000007",
)
DGX_A100_BUS = ("0000:07:00.0", "0000:0f:00.0", "0000:47:00.0", "0000:4e:00.0",
                "0000:87:00.0", "0000:90:00.0", "0000:b7:00.0", "0000:bd:00.0")
#: MIG devices as NVML would name them (R470+ form), on GPU3 and GPU6
DGX_A100_MIG = {
    "MIG-1b7e05f1-6f3a-5b6e-9a0c-4c2d1e0f9a01": 3,
    "MIG-1b7e05f1-6f3a-5b6e-9a0c-4c2d1e0f9a02": 3,
    "MIG-77d0c2a4-0b1e-5c3f-8d2a-9e4f6a7b8c03": 6,
}


def corpus(name: str) -> Topology:
    path = next(CORPUS.glob(f"{name}_*.txt"))
    return smi_parser.parse(path.read_text(encoding="utf-8"), source=path.name)


def dgx_a100() -> Topology:
    """DGX A100 (corpus 010: NV12 all-to-all, NICs PXB in pairs, NPS4 NUMA 3,1,7,5) with UUIDs and bus ids."""
    topo = corpus("010")
    gpus = [dataclasses.replace(g, uuid=DGX_A100_UUIDS[g.index], bus_id=DGX_A100_BUS[g.index],
                                name="NVIDIA A100-SXM4-80GB") for g in topo.gpus]
    return Topology.from_rows(gpus, topo.nics, topo.links, source=topo.source)


def container_view(node: Topology, host_indices: list[int]) -> Topology:
    """What a probe inside a container sees: only its GPUs, renumbered 0..n-1 in PCI order."""
    keep = sorted(host_indices)
    pos = {g.index: p for p, g in enumerate(node.gpus)}
    n_gpu = len(node.gpus)
    rows_idx = [pos[i] for i in keep] + list(range(n_gpu, n_gpu + len(node.nics)))
    links = [[node.links[r][c] for c in rows_idx] for r in rows_idx]
    gpus = [dataclasses.replace(node.gpu(h), index=k) for k, h in enumerate(keep)]
    return Topology.from_rows(gpus, node.nics, links, source="container probe")
