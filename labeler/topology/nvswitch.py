"""Which GPUs reach each other through NVSwitch rather than direct NVLinks: one rule for gputopo.

``nvidia-smi topo -m`` prints ``NV#`` for a pair joined by # direct NVLinks and, on an
NVSwitch board, the bonded width of each GPU to the fabric for every pair (HGX H100: NV18
for all 28 pairs). The matrix never names the switch, so it is inferred: an NVLink island
is switched when it is all-to-all (every pair ``NV#``), has more than two GPUs, and some GPU
would need more links to its peers than any GPU has (:data:`MAX_NVLINKS_PER_GPU`). Eight
H100s at NV18 need 7 × 18 = 126 links per GPU: switched. DGX-1's hybrid cube-mesh is not
all-to-all, NV12 bridge pairs have two GPUs, and four A100s at NV4 need 12 (direct).

The picture and the node findings (:mod:`labeler.topology.drawing`) and the device-plugin
model (:mod:`policy.gpuallocator`, where NVML shows no GPU peer behind a switch) ask this
module, so the three agree by construction.
"""

from __future__ import annotations

from labeler.topology import islands
from labeler.topology.bandwidth import NVLINK
from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology

__all__ = ["MAX_NVLINKS_PER_GPU", "is_switched", "island_links", "switched_islands"]

#: The most NVLink ports one GPU of any generation has, from the bandwidth table's ``max_links``
#: (18: H100/H200 NVLink 4, B200/GB200 NVLink 5; V100 has 6, A100 12).
MAX_NVLINKS_PER_GPU: int = max(r.max_links for r in NVLINK.values() if r.max_links is not None)


def island_links(topo: Topology, island: tuple[int, ...]) -> dict[tuple[int, int], int]:
    """NVLink count per GPU pair (a < b) of ``island`` that is at ``NV#``."""
    return {
        (a, b): lk.nvlinks
        for i, a in enumerate(island)
        for b in island[i + 1:]
        if (lk := topo.gpu_link(a, b)) is not None and lk.level is LinkLevel.NVLINK
    }


def is_switched(island: tuple[int, ...], counts: dict[tuple[int, int], int]) -> bool:
    """The rule (module doc) for one NVLink island and its pair counts from :func:`island_links`."""
    if len(island) < 3 or len(counts) != len(island) * (len(island) - 1) // 2:
        return False
    per_gpu = {g: sum(n for pair, n in counts.items() if g in pair) for g in island}
    return max(per_gpu.values()) > MAX_NVLINKS_PER_GPU


def switched_islands(topo: Topology) -> tuple[tuple[int, ...], ...]:
    """The NVLink islands of ``topo`` whose GPUs reach each other through NVSwitch (GPU indices, sorted).

    >>> from labeler.topology import smi_parser
    >>> row = lambda i: " ".join("X" if j == i else "NV18" for j in range(4))
    >>> t = smi_parser.parse("GPU0 GPU1 GPU2 GPU3\\n" + "".join(f"GPU{i} {row(i)}\\n" for i in range(4)))
    >>> switched_islands(t)
    ((0, 1, 2, 3),)
    >>> chain = smi_parser.parse("GPU0 GPU1 GPU2\\nGPU0 X NV12 PIX\\nGPU1 NV12 X NV12\\nGPU2 PIX NV12 X\\n")
    >>> switched_islands(chain)  # GPU1 shows 24 links, but the island is not all-to-all
    ()
    """
    out = []
    for island in islands.components(topo, LinkLevel.NVLINK):
        group = tuple(island)
        if is_switched(group, island_links(topo, group)):
            out.append(group)
    return tuple(out)
