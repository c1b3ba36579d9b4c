"""The topology model: GPUs, NICs and the pairwise link matrix of one node.

Why one model for every source: `nvidia-smi topo -m`, NVML and sysfs each see
part of the truth; the labeler merges them into this one value, the extender
decodes it back from an annotation, the audit CLI prints it. Everything above
the I/O edge speaks :class:`Topology`.

The matrix is square over *endpoints* (GPUs first, then NICs, in the order the
source listed them). A cell is a :class:`~labeler.topology.links.Link` or
``None`` when the source did not say (e.g. NIC↔NIC when NIC columns were cut
off). The constructor enforces the invariants every consumer relies on: the
diagonal is ``X``, nothing else is ``X``, and the matrix is symmetric.

Topology facts v2 (what the bandwidth model reads, each ``None`` = unknown):
per GPU the architecture, CUDA compute capability, NVLink version, PCIe link
(:class:`PcieLink`) and MIG mode; per GPU pair the NVLink count (the ``NV#`` cell) and the
P2P status (:attr:`Topology.p2p`, :class:`P2P`); per NIC the link rate. They
are filled only from what a source reported (NVML, sysfs), never derived from a
model name, so a topology read from `nvidia-smi topo -m` text leaves them unknown.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from labeler.topology.links import SELF, Link, LinkLevel

__all__ = ["P2P", "Gpu", "Nic", "PcieLink", "Topology"]


class P2P(enum.StrEnum):
    """Peer-to-peer status of a GPU pair, NVML's ``nvmlGpuP2PStatus_t`` in `nvidia-smi topo -p2p` spelling.

    ``OK`` supported; ``CNS`` chipset not supported; ``GNS`` GPU not supported
    (e.g. GeForce boards); ``TNS`` topology not supported; ``DIS`` disabled by
    the driver's registry key; ``NS`` not supported. NVML's ``U`` (unknown) is
    ``None`` in the model, like every other unknown fact.
    """

    OK = "OK"
    CNS = "CNS"
    GNS = "GNS"
    TNS = "TNS"
    DIS = "DIS"
    NS = "NS"

    @property
    def works(self) -> bool:
        return self is P2P.OK


@dataclass(frozen=True, slots=True)
class PcieLink:
    """One GPU's PCIe link: generation (1-6) and lanes, as trained now and at most.

    ``max_gen``/``max_width`` are what the GPU *and* its slot support (NVML's
    ``nvmlDeviceGetMaxPcieLink*``, sysfs ``max_link_*``). ``gen``/``width`` are the
    link as trained when probed: the generation drops at idle (power management)
    and retrains under load, so the agent publishes :meth:`stable` (current
    generation left out); a current width below the maximum is a training fault
    and persists.
    """

    gen: int | None = None
    width: int | None = None
    max_gen: int | None = None
    max_width: int | None = None

    def __post_init__(self) -> None:
        for name in ("gen", "max_gen"):
            v = getattr(self, name)
            if v is not None and not 1 <= v <= 7:
                raise ValueError(f"PCIe {name} {v} is not a PCIe generation")
        for name in ("width", "max_width"):
            v = getattr(self, name)
            if v is not None and v not in (1, 2, 4, 8, 12, 16, 32):
                raise ValueError(f"PCIe {name} x{v} is not a link width")

    @property
    def known(self) -> bool:
        return any(v is not None for v in (self.gen, self.width, self.max_gen, self.max_width))

    @property
    def width_downtrained(self) -> bool:
        """Trained at fewer lanes than the GPU and slot support (a reseat/riser problem)."""
        return self.width is not None and self.max_width is not None and self.width < self.max_width

    def stable(self) -> PcieLink:
        """Without the current generation, which changes with power state (see class doc)."""
        return self if self.gen is None else replace(self, gen=None)


@dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU. Only ``index`` is always known; the rest depends on the source."""

    index: int
    name: str | None = None
    bus_id: str | None = None
    uuid: str | None = None
    cpu_affinity: frozenset[int] | None = None
    numa_affinity: frozenset[int] | None = None
    gpu_numa_id: int | None = None  # GH200/GB200: the GPU memory's own NUMA node
    arch: str | None = None  # NVML architecture, lower case: "volta", "ampere", "hopper", "blackwell"...
    cc: str | None = None  # CUDA compute capability "9.0" (tells GA100 "8.0" from GA102 "8.6")
    nvlink_version: str | None = None  # NVLink version of its active links, "4.0" (NVML); None without NVLink
    pcie: PcieLink | None = None
    mig: bool | None = None  # MIG mode enabled now (NVML current mode); None: unknown or not MIG-capable

    def __post_init__(self) -> None:
        if self.pcie is not None and not self.pcie.known:
            object.__setattr__(self, "pcie", None)  # all unknown is stored as "not reported"

    @property
    def numa_node(self) -> int | None:
        """The single NUMA node this GPU is attached to, when it is unambiguous."""
        if self.numa_affinity is not None and len(self.numa_affinity) == 1:
            return next(iter(self.numa_affinity))
        return None


@dataclass(frozen=True, slots=True)
class Nic:
    """One NIC as `nvidia-smi` lists it: the column name and, from the legend, the device."""

    column: str  # "NIC0", or "mlx5_0" for old outputs that name columns by device
    device: str | None = None  # "mlx5_0", "mlx5_bond_0" from the NIC Legend
    rate_mbps: int | None = None  # link rate (sysfs: InfiniBand port rate or netdev speed), Mb/s

    @property
    def name(self) -> str:
        """The device name when known (what NCCL_IB_HCA uses), else the column name."""
        return self.device or self.column


@dataclass(frozen=True, slots=True)
class Topology:
    """A node's GPUs, NICs and links. Immutable and hashable, so it can key caches."""

    gpus: tuple[Gpu, ...]
    nics: tuple[Nic, ...]
    links: tuple[tuple[Link | None, ...], ...]
    source: str = ""
    warnings: tuple[str, ...] = ()
    #: P2P status per GPU pair by *position* in ``gpus`` (diagonal ``None``); ``()`` when no source said
    p2p: tuple[tuple[P2P | None, ...], ...] = ()
    _pos: dict[int, int] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        n = len(self.gpus) + len(self.nics)
        if len(self.links) != n or any(len(row) != n for row in self.links):
            raise ValueError(f"link matrix must be {n}x{n} for {len(self.gpus)} GPUs + {len(self.nics)} NICs")
        for i in range(n):
            if self.links[i][i] != SELF:
                raise ValueError(f"endpoint {i}: diagonal must be X")
            for j in range(i + 1, n):
                a, b = self.links[i][j], self.links[j][i]
                if a != b:
                    raise ValueError(f"matrix not symmetric at ({i},{j}): {a} vs {b}")
                if a is not None and a.level is LinkLevel.SELF:
                    raise ValueError(f"X off the diagonal at ({i},{j})")
                if a is not None and a.level is LinkLevel.NVLINK and (i >= len(self.gpus) or j >= len(self.gpus)):
                    raise ValueError("NVLink between a GPU and a NIC is not a thing nvidia-smi reports")
        g = len(self.gpus)
        if self.p2p:
            if len(self.p2p) != g or any(len(row) != g for row in self.p2p):
                raise ValueError(f"P2P matrix must be {g}x{g}")
            for i in range(g):
                if self.p2p[i][i] is not None:
                    raise ValueError(f"GPU position {i}: P2P with itself must be None")
                for j in range(i + 1, g):
                    if self.p2p[i][j] != self.p2p[j][i]:
                        raise ValueError(f"P2P matrix not symmetric at ({i},{j})")
        indices = [g.index for g in self.gpus]
        if len(set(indices)) != len(indices):
            raise ValueError(f"duplicate GPU index in {indices}")
        self._pos.update({g.index: p for p, g in enumerate(self.gpus)})

    # -- construction helpers -------------------------------------------------------
    @classmethod
    def from_rows(
        cls,
        gpus: Sequence[Gpu],
        nics: Sequence[Nic],
        rows: Sequence[Sequence[Link | None]],
        *,
        source: str = "",
        warnings: Sequence[str] = (),
        p2p: Sequence[Sequence[P2P | None]] = (),
    ) -> Topology:
        """Build from any sequence-of-sequences matrix (lists are frozen to tuples)."""
        frozen_p2p = tuple(tuple(r) for r in p2p)
        if frozen_p2p and all(c is None for r in frozen_p2p for c in r):
            frozen_p2p = ()  # all unknown is stored as "not reported"
        return cls(
            tuple(gpus), tuple(nics), tuple(tuple(r) for r in rows), source, tuple(warnings), frozen_p2p
        )

    def stable(self) -> Topology:
        """This topology without facts that change with load (the current PCIe generation).

        What the agent publishes: an annotation that changed with every idle/busy
        transition would rewrite the Node object on every probe.
        """
        if not any(g.pcie is not None and g.pcie.gen is not None for g in self.gpus):
            return self
        gpus = tuple(replace(g, pcie=g.pcie.stable()) if g.pcie is not None else g for g in self.gpus)
        return replace(self, gpus=gpus)

    # -- queries --------------------------------------------------------------------
    @property
    def gpu_indices(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.gpus)

    def gpu(self, index: int) -> Gpu:
        return self.gpus[self._pos[index]]

    def gpu_link(self, a: int, b: int) -> Link | None:
        """Link between GPUs by GPU index (not position)."""
        return self.links[self._pos[a]][self._pos[b]]

    def gpu_p2p(self, a: int, b: int) -> P2P | None:
        """P2P status between GPUs by index; ``None`` when unknown (or a == b)."""
        if not self.p2p:
            return None
        return self.p2p[self._pos[a]][self._pos[b]]

    def gpu_nic_link(self, gpu_index: int, nic_pos: int) -> Link | None:
        """Link between a GPU (by index) and the NIC at position ``nic_pos``."""
        return self.links[self._pos[gpu_index]][len(self.gpus) + nic_pos]

    def nic_link(self, a: int, b: int) -> Link | None:
        g = len(self.gpus)
        return self.links[g + a][g + b]

    def gpu_pairs(self) -> Iterator[tuple[int, int, Link | None]]:
        """Every unordered GPU pair once, as (index_a, index_b, link)."""
        for i, ga in enumerate(self.gpus):
            for j in range(i + 1, len(self.gpus)):
                yield ga.index, self.gpus[j].index, self.links[i][j]

    @property
    def has_nvlink(self) -> bool:
        return any(link is not None and link.level is LinkLevel.NVLINK for _, _, link in self.gpu_pairs())
