"""What the bandwidth model answers: a prediction, its ring's hops, the limits it met, the network path.

Why a module of its own: these are the values callers read (the audit, the policy layer's
scores, ``/explain``); :mod:`labeler.topology.busbw` holds the model that computes them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from labeler.topology.links import Link

__all__ = ["Hop", "Limit", "NetworkPath", "Prediction", "Transport", "round_gbps"]


class Transport(enum.StrEnum):
    """How NCCL moves one hop's data."""

    NVLINK = "nvlink"
    P2P = "p2p"  # GPU to GPU over PCIe, inside a PCIe switch tree
    SHM = "shm"  # staged through host memory (NCCL's SHM transport, or P2P unavailable)


def round_gbps(x: float) -> float:
    """Round to 1 MB/s: stable output (18 × 20.6 is 370.8, not 370.80000000000007)."""
    return round(x, 3)


@dataclass(frozen=True, slots=True)
class Hop:
    """One hop of the ring, GPU ``src`` sends to GPU ``dst``."""

    src: int
    dst: int
    link: Link | None
    transport: Transport
    gbps: float
    why: str

    @property
    def where(self) -> str:
        return f"GPU{self.src}↔GPU{self.dst} {'?' if self.link is None else self.link.token}"


@dataclass(frozen=True, slots=True)
class Limit:
    """Something the ring crosses and what it allows: a hop, a shared uplink or socket link, the network."""

    kind: str  # "hop" | "switch-uplink" | "socket-link" | "network"
    gbps: float
    where: str
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self.where, "gbps": self.gbps, "why": self.why}


@dataclass(frozen=True, slots=True)
class NetworkPath:
    """What the set's NICs carry for a rank of a multi-node job (GB/s per GPU, per direction)."""

    gbps: float
    nics: tuple[str, ...]
    gpudirect: tuple[str, ...]  # those of ``nics`` reached with GPUDirect RDMA
    why: str
    #: the unknown facts this figure rests on (NIC rates, the serving GPUs' PCIe links, the CPU); empty:
    #: every fact of the network path was reported (a multi-node rank's network is then known)
    assumed: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"gbps": self.gbps, "nics": list(self.nics), "gpudirect": list(self.gpudirect), "why": self.why,
                "assumed": list(self.assumed)}


@dataclass(frozen=True, slots=True)
class Prediction:
    """The predicted bus bandwidth of a GPU set and everything that explains it."""

    gpus: tuple[int, ...]
    ring: tuple[int, ...]
    hops: tuple[Hop, ...]
    ring_gbps: float | None  # the node-local ring; None for one GPU
    network: NetworkPath | None  # only for a rank of a multi-node job
    gbps: float  # the prediction: min(ring, network)
    bottleneck: Limit
    assumed: tuple[str, ...]  # unknown facts and the conservative values used for them

    def explain(self) -> str:
        """``ring 0→1→3→2, bottleneck GPU3↔GPU2 SYS, 6 GB/s (…)``."""
        ring = "→".join(map(str, self.ring)) if len(self.ring) > 1 else f"GPU{self.ring[0]} alone"
        b = self.bottleneck
        return f"ring {ring}, bottleneck {b.where}, {b.gbps:g} GB/s ({b.why})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "gpus": list(self.gpus),
            "ring": list(self.ring),
            "busbw_gbps": self.gbps,
            "ring_gbps": self.ring_gbps,
            "bottleneck": self.bottleneck.as_dict(),
            "network": None if self.network is None else self.network.as_dict(),
            "hops": [
                {"from": h.src, "to": h.dst, "link": None if h.link is None else h.link.token,
                 "transport": h.transport.value, "gbps": h.gbps}
                for h in self.hops
            ],
            "assumed": list(self.assumed),
            "explain": self.explain(),
        }
