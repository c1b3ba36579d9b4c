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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from labeler.topology.links import SELF, Link, LinkLevel

__all__ = ["Gpu", "Nic", "Topology"]


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
    ) -> Topology:
        """Build from any sequence-of-sequences matrix (lists are frozen to tuples)."""
        return cls(tuple(gpus), tuple(nics), tuple(tuple(r) for r in rows), source, tuple(warnings))

    # -- queries --------------------------------------------------------------------
    @property
    def gpu_indices(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.gpus)

    def gpu(self, index: int) -> Gpu:
        return self.gpus[self._pos[index]]

    def gpu_link(self, a: int, b: int) -> Link | None:
        """Link between GPUs by GPU index (not position)."""
        return self.links[self._pos[a]][self._pos[b]]

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
