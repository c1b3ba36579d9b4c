"""The one place the audits and the simulator get the NCCL bus bandwidth of a GPU set.

Why one module: ``gputopo audit pod`` (what will this pod's ring reach?), ``gputopo audit
nccl`` (is this measured run far below what the GPUs allow?) and ``gputopo simulate`` (what
did each placed pod get, and what was the best on offer?) must agree on the expectation.
Every caller goes through :func:`expected_busbw` (and :func:`best_free_busbw` for the best
free k-set of a node).

The model is the project's bandwidth model, :func:`labeler.topology.busbw.busbw_gbps`
(the one table with its sources, ``docs/bandwidth.md``): NVLink rate by generation and
link count, PCIe by generation and width, P2P unavailable, host-memory and socket paths,
unknown facts at conservative values. It predicts all-reduce ``busbw`` as nccl-tests
defines it: "the speed of the hardware bottleneck", per GPU and per direction
(``NVIDIA/nccl-tests`` ``doc/PERFORMANCE.md``). The ring itself still comes from
:mod:`labeler.topology.placement` (never a second ring search).
"""

from __future__ import annotations

from collections.abc import Sequence

from labeler.topology import busbw, set_search
from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology
from labeler.topology.placement import Placement, placer_for

__all__ = ["best_free_busbw", "expected_busbw", "ring"]


def ring(topo: Topology, gpus: Sequence[int]) -> Placement | None:
    """The best NCCL ring through exactly ``gpus`` (by GPU index); ``None`` when none closes.

    ``None`` also for an empty set. A ring may fail to close when the links it would
    need are unknown (damaged input): unknown links are never assumed good.
    Raises ``KeyError`` for an index the topology does not have.
    """
    chosen = sorted(set(gpus))
    if not chosen:
        return None
    return placer_for(topo).best(chosen, len(chosen))


def expected_busbw(topo: Topology, gpus: Sequence[int]) -> float | None:
    """Predicted all-reduce bus bandwidth (GB/s per direction) of a ring through ``gpus``.

    ``None`` when there is nothing to predict: fewer than two GPUs (nccl-tests reports
    busbw 0 on one rank: its factor 2(n-1)/n is 0), or no ring closes over known links.

    >>> from labeler.topology import smi_parser
    >>> t = smi_parser.parse("GPU0 GPU1 GPU2\\nGPU0 X NV4 SYS\\nGPU1 NV4 X SYS\\nGPU2 SYS SYS X\\n")
    >>> expected_busbw(t, [0, 1])  # NV4, generation unknown: the slowest with 4 links, 4 x 12
    48.0
    >>> expected_busbw(t, [0, 1, 2])  # SYS: the socket link of an unknown CPU
    6.0
    >>> expected_busbw(t, [1]) is None
    True
    """
    if len(set(gpus)) < 2:
        return None
    placement = ring(topo, gpus)
    if placement is None or placement.bottleneck.level is LinkLevel.SELF:
        return None
    return busbw.busbw_gbps(topo, placement.gpus)


def best_free_busbw(topo: Topology, free_mask: int, k: int) -> float | None:
    """The highest predicted busbw of any k-set of the free GPUs (positions in ``free_mask``); None if < k free.

    Every k-subset of a node of up to 8 GPUs; beyond, :func:`labeler.topology.set_search.search`'s
    bounded swaps from the Placer's set. A definition for measuring placements (the simulator's
    bandwidth-aligned and device-plugin-gap metrics), not the objective's search.

    >>> from labeler.topology import smi_parser
    >>> t = smi_parser.parse("GPU0 GPU1 GPU2\\nGPU0 X NV4 SYS\\nGPU1 NV4 X SYS\\nGPU2 SYS SYS X\\n")
    >>> best_free_busbw(t, 0b111, 2), best_free_busbw(t, 0b101, 2), best_free_busbw(t, 0b001, 2)
    (48.0, 6.0, None)
    """
    model = busbw.model_for(topo)

    def value(mask: int) -> tuple[float]:
        q = model.predict_mask(mask)
        return (0.0 if q is None else q.gbps,)

    start = None
    if len(topo.gpus) > 8 and free_mask.bit_count() >= k:
        pl = placer_for(topo)
        best = pl.best_mask(free_mask, k)
        start = None if best is None else pl.mask(best.gpus)
    found = set_search.search(free_mask, k, value, start)
    return None if found is None else found.value[0]
