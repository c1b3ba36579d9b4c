"""Size of the ``{prefix}topology`` annotation (format v2) for 8- and 16-GPU nodes with 18 NICs.

What is measured: the bytes of the value the agent publishes (``labels.encode_annotations``
of ``Topology.stable()``), with every v2 fact a probe would fill in (name, UUID, bus id,
CPU/NUMA affinity, architecture, compute capability, NVLink version, PCIe link, MIG mode
(disabled, as NVML reports it on a MIG-capable GPU), P2P per pair, NIC rates). Beside it:
the same topology in format v1 (full square matrix of JSON tokens, the encoding of label
schema v1, written here only for the comparison) and the decode time of the v2 value
against ``json.loads`` of the same bytes (the floor).

* 8 GPUs + 18 NICs: the real OCI A100 node of corpus 028 (its matrix and affinity), with
  the facts NVML/sysfs would add for an A100-SXM4 on HDR InfiniBand;
* 16 GPUs + 18 NICs: a modelled 2-socket NVSwitch board (NV6 all-to-all, DGX-2 class):
  8 PCIe switches of 2 GPUs + 2 NICs (PIX), NODE within a socket, SYS across, plus two
  storage NICs on socket 0.

P2P is measured uniform (``"p2p":"OK"``, the common case) and mixed (one pair not OK:
the per-pair rows are written). Prints figures; asserts nothing.
Run: ``.venv/bin/python bench/bench_annotation_size.py``. Results: docs/labels.md.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labeler.topology import labels, serialize, smi_parser  # noqa: E402
from labeler.topology.links import SELF, Link, parse_link_token  # noqa: E402
from labeler.topology.model import P2P, Gpu, Nic, PcieLink, Topology  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "topo-corpus"
NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")


def with_facts(topo: Topology, *, name: str, arch: str, cc: str, nvlink: str, pcie: PcieLink, rate: int,
               p2p_bad: int = 0) -> Topology:
    gpus = [
        dataclasses.replace(g, name=name, uuid=f"GPU-{uuid.uuid5(NS, f'{name}{g.index}')}",
                            bus_id=f"0000:{0x07 + 0x10 * g.index:02x}:00.0", arch=arch, cc=cc,
                            nvlink_version=nvlink, pcie=pcie, mig=False)
        for g in topo.gpus
    ]
    nics = [dataclasses.replace(n, device=n.device or f"mlx5_{k}", rate_mbps=rate) for k, n in enumerate(topo.nics)]
    n = len(gpus)
    p2p: list[list[P2P | None]] = [[None if i == j else P2P.OK for j in range(n)] for i in range(n)]
    for k in range(p2p_bad):
        p2p[0][k + 1] = p2p[k + 1][0] = P2P.CNS
    return Topology.from_rows(gpus, nics, topo.links, p2p=p2p)


def board_16x18() -> Topology:
    """16 GPUs NV6 all-to-all; switch s (0-7) holds GPU 2s, 2s+1 and NIC 2s, 2s+1; NIC16/17 storage on socket 0."""
    n_gpu, n_nic = 16, 18
    n = n_gpu + n_nic

    def switch(e: int) -> int:
        return e // 2 if e < n_gpu else ((e - n_gpu) // 2 if e < n_gpu + 16 else -1)

    def socket(e: int) -> int:
        return 0 if switch(e) < 0 else switch(e) // 4

    rows: list[list[Link | None]] = []
    for i in range(n):
        row: list[Link | None] = []
        for j in range(n):
            if i == j:
                row.append(SELF)
            elif i < n_gpu and j < n_gpu:
                row.append(parse_link_token("NV6"))
            elif switch(i) >= 0 and switch(i) == switch(j):
                row.append(parse_link_token("PIX"))
            else:
                row.append(parse_link_token("NODE" if socket(i) == socket(j) else "SYS"))
        rows.append(row)
    gpus = [Gpu(index=g, cpu_affinity=frozenset(range(48 * (g // 8), 48 * (g // 8) + 48)) |
                frozenset(range(96 + 48 * (g // 8), 144 + 48 * (g // 8))), numa_affinity=frozenset({g // 8}))
            for g in range(n_gpu)]
    nics = [Nic(column=f"NIC{k}", device=f"mlx5_{k}") for k in range(n_nic)]
    return Topology.from_rows(gpus, nics, rows)


def v1_size(topo: Topology) -> int:
    """The label-schema-v1 encoding (format 1) of the facts format 1 could carry."""
    doc = {
        "v": 1,
        "gpus": [{k: v for k, v in {"index": g.index, "name": g.name, "bus_id": g.bus_id, "uuid": g.uuid,
                                    "cpu_affinity": serialize.format_cpulist(g.cpu_affinity) if g.cpu_affinity
                                    else None,
                                    "numa_affinity": serialize.format_cpulist(g.numa_affinity) if g.numa_affinity
                                    else None}.items() if v is not None} for g in topo.gpus],
        "nics": [{"column": n.column, "device": n.device} for n in topo.nics],
        "links": [[None if c is None else c.token for c in row] for row in topo.links],
    }
    return len(json.dumps(doc, separators=(",", ":"), sort_keys=True))


def decode_times(value: str, runs: int = 300) -> tuple[float, float]:
    floor, full = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        json.loads(value)
        t1 = time.perf_counter()
        labels.decode_topology({"gputopo.io/topology": value})
        t2 = time.perf_counter()
        floor.append(t1 - t0)
        full.append(t2 - t1)
    return statistics.median(floor) * 1e3, statistics.median(full) * 1e3


def main() -> None:
    a100 = smi_parser.parse((CORPUS / "028_oci-a100x8-nv12-18nics-nps4.txt").read_text())
    cases = {
        "8 GPU + 18 NIC (corpus 028, A100 HDR)": (a100, dict(
            name="NVIDIA A100-SXM4-40GB", arch="ampere", cc="8.0", nvlink="3.0",
            pcie=PcieLink(4, 16, 4, 16), rate=200000)),
        "16 GPU + 18 NIC (modelled NVSwitch board)": (board_16x18(), dict(
            name="NVIDIA H100 80GB HBM3", arch="hopper", cc="9.0", nvlink="4.0",
            pcie=PcieLink(5, 16, 5, 16), rate=400000)),
    }
    print(f"{'node':44} {'p2p':8} {'v2 bytes':>8} {'v1 bytes':>8} {'v2/v1':>6} "
          f"{'json.loads ms':>13} {'decode ms':>9}")
    for name, (base, facts) in cases.items():
        for p2p_name, bad in (("uniform", 0), ("mixed", 1)):
            topo = with_facts(base, p2p_bad=bad, **facts)  # type: ignore[arg-type]
            value = labels.encode_annotations(topo.stable())["gputopo.io/topology"]
            assert labels.decode_topology({"gputopo.io/topology": value}) == topo.stable()
            floor, full = decode_times(value)
            v1 = v1_size(topo)
            print(f"{name:44} {p2p_name:8} {len(value):8d} {v1:8d} {len(value) / v1:6.2f} {floor:13.3f} {full:9.3f}")


if __name__ == "__main__":
    main()
