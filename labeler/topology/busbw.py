"""Predicted NCCL ring bus bandwidth of a GPU set on one node, and why.

What it predicts: the ``busbw`` nccl-tests' ``all_reduce_perf`` reports for large messages
(GB/s per GPU, per direction) when NCCL, with its default settings, runs a ring through
exactly these GPUs. A ring is as fast as its slowest hop (research rule 1, 208 → 20 GB/s in
``NVIDIA/nccl-tests#178``), so the prediction is a minimum over everything the ring crosses,
each value taken from the one table (:mod:`labeler.topology.bandwidth`):

1. **The ring.** A PCIe-only set is ordered so that every socket, host bridge and PCIe switch
   is visited in one stretch (a ring that leaves a switch and comes back loads its uplink
   twice). With NVLink in the set, the placer's ring (the project's one ring search,
   :mod:`labeler.topology.placement`: tightest worst link) and, unless it is all NVLink, that
   PCIe-contiguous order with each NVLink island in the placer's order; the faster one counts.
2. **Each hop.** NVLink: links × NCCL's per-link rate (an NVSwitch board lists the sum over
   switches per pair, i.e. the GPU's whole NVLink bandwidth). PCIe P2P at PIX/PXB when NVML
   says P2P works. Otherwise through host memory (NCCL's SHM): for PHB/NODE/SYS always
   (NCCL uses no P2P beyond PXB by default), for PIX/PXB when P2P is unavailable or unknown.
   A PCIe hop runs at the slower GPU's link; a SYS hop also at most the socket link.
3. **Shared links.** Traffic staged through host memory leaves a PCIe switch by its one
   uplink even when both GPUs sit under that switch, so n GPUs of a switch without P2P share
   it n ways (sjeaugey in ``NVIDIA/nccl#1309``: "a 2x increase in load on the PCI link to the
   CPU" for a GeForce PIX pair). Several ring hops across the same pair of sockets share the
   socket link likewise.
4. **The network, for a rank of a multi-node job:** a cap, never a bonus. The NICs nearest to
   the set's GPUs, each at its rate; with GPUDirect RDMA only at PIX/PXB (NCCL's default
   ``NCCL_NET_GDR_LEVEL``), otherwise staged through host memory, i.e. bounded by the GPU's
   PCIe link and, across sockets, by the socket link. On Grace (GH200, GB200: the GPU reaches
   its CPU by NVLink-C2C) NCCL uses GPUDirect RDMA over C2C for the NICs under that CPU
   (``NCCL_NET_GDR_C2C``, on by default since 2.27.3), bounded by the NIC rates.

Why a per-topology object with a memo: the extender's scoring will ask for the same
(topology, free set) again and again; answers are memoised by the set's position bitmask,
exactly as :class:`~labeler.topology.placement.Placer` does. Everything is deterministic:
sorted iteration only, values rounded to 1 MB/s.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from labeler.topology import bandwidth, islands, limits, nic_locality
from labeler.topology.bandwidth import Resolved
from labeler.topology.busbw_result import Hop, Limit, NetworkPath, Prediction, Transport
from labeler.topology.busbw_result import round_gbps as _r
from labeler.topology.bytecache import MISS, ByteCache, Memo
from labeler.topology.findings import gpu_set
from labeler.topology.links import Link, LinkLevel
from labeler.topology.model import P2P, Topology
from labeler.topology.placement import placer_for

__all__ = [
    "BandwidthModel",
    "Hop",
    "Limit",
    "NetworkPath",
    "Prediction",
    "Transport",
    "busbw_gbps",
    "model_for",
    "predict",
]


@dataclass(frozen=True, slots=True)
class _Pair:
    link: Link | None
    transport: Transport
    gbps: float
    why: str
    assumed: tuple[str, ...]


_SOCKET_LEVELS = frozenset({LinkLevel.PIX, LinkLevel.PXB, LinkLevel.PHB, LinkLevel.NODE})
_SWITCH_TIERS = (frozenset({LinkLevel.PIX}), frozenset({LinkLevel.PIX, LinkLevel.PXB}))
#: PCIe levels a ring should visit in one stretch, loosest first (NVLink islands innermost)
_ORDER_LEVELS = (LinkLevel.NODE, LinkLevel.PHB, LinkLevel.PXB, LinkLevel.PIX)
_P2P_UNKNOWN = "P2P status unknown: PIX/PXB pairs staged through host memory (the worse case)"


class BandwidthModel:
    """Predictions for one topology, memoised by (GPU-set bitmask, multi-node).

    Thread-safe for concurrent readers, like :class:`~labeler.topology.placement.Placer`:
    a race can only compute the same answer twice.
    """

    def __init__(self, topo: Topology, *, cache_size: int = 1 << 12) -> None:
        self.topo = topo
        self._index = topo.gpu_indices
        self._pos = {g: p for p, g in enumerate(self._index)}
        self._pcie = [bandwidth.pcie(g) for g in topo.gpus]
        #: GPUs attached to their CPU by NVLink-C2C (Grace): the GPU memory is its own NUMA node
        self._c2c = [g.gpu_numa_id is not None for g in topo.gpus]
        self._pairs: dict[tuple[int, int], _Pair] = {}
        self._placer = placer_for(topo)  # held: looking it up would hash the topology on every call
        self._locality = nic_locality.compute(topo)
        self._nic_pos: dict[str, list[int]] = {}
        for pos, nic in enumerate(topo.nics):
            self._nic_pos.setdefault(nic.name, []).append(pos)
        # Which GPUs share a PCIe switch, a switch tree, a socket: components of the whole
        # node (sharing a switch is a fact of the tree, not of the set asked about)
        everyone = range(len(self._index))
        by_level = [self._components(everyone, _pcie_at_or_better(lv)) for lv in _ORDER_LEVELS]
        by_level.append(self._components(everyone, _one_of(frozenset({LinkLevel.NVLINK}))))
        self._order = [tuple(c[p] for c in by_level) for p in everyone]
        self._switches = [self._components(everyone, _one_of(tier)) for tier in _SWITCH_TIERS]
        self._sockets = self._components(everyone, _one_of(_SOCKET_LEVELS))
        self._cache: Memo[tuple[int, bool], Prediction | None] = Memo(cache_size)
        self._cache_size = cache_size

    # -- public API ---------------------------------------------------------------
    def cost_bytes(self) -> int:
        """Estimated bytes this model can hold once its memo is full (for byte-bounded caches).

        A memo key is (GPU-set mask, multi-node), so a node of n GPUs has at most 2·2ⁿ of them.
        Per prediction (hops, bottleneck, network path, reasons) tracemalloc measured 0.95–1.35 KB
        on 4–8-GPU corpus boards (with the pair table filled along); counted here as 1.6 KB + 64 B
        per GPU. The placer it holds is counted by its own cache.
        """
        n = len(self._index)
        entries = min(self._cache_size, 2 << n)
        return 4_000 + 200 * n * n + entries * (1_600 + 64 * n)

    def mask(self, gpus: Iterable[int]) -> int:
        """Bitmask (by position) of GPU indices, the placer's; an unknown index raises ``KeyError``."""
        return self._placer.mask(gpus)

    def predict(self, gpus: Iterable[int], *, multi_node: bool = False) -> Prediction | None:
        """The prediction for exactly these GPUs (by index).

        ``None`` when there is nothing to predict: no GPU, or one GPU of a single-node job
        (no ring; nccl-tests reports busbw 0 for one rank). With ``multi_node`` the set is one
        node's share of a larger job, and even one GPU has a prediction: its network path.
        """
        return self.predict_mask(self.mask(gpus), multi_node=multi_node)

    def predict_mask(self, mask: int, *, multi_node: bool = False) -> Prediction | None:
        key = (mask, multi_node)
        hit = self._cache.get(key, MISS)
        if hit is not MISS:
            return hit  # type: ignore[return-value]
        return self._cache.put(key, self._solve(mask, multi_node))

    # -- the model ------------------------------------------------------------------
    def _solve(self, mask: int, multi_node: bool) -> Prediction | None:
        ps = [p for p in range(len(self._index)) if mask >> p & 1]
        if not ps or (len(ps) == 1 and not multi_node):
            return None
        limits: list[Limit] = []
        assumed: list[str] = []
        hops: tuple[Hop, ...] = ()
        ring = [ps[0]]
        ring_gbps: float | None = None
        if len(ps) >= 2:
            best: tuple[float, list[int], tuple[Hop, ...], list[Limit], list[str]] | None = None
            for candidate in self._rings(ps):
                found = self._evaluate(candidate)
                if best is None or found[0] > best[0]:
                    best = found
                if all(h.transport is Transport.NVLINK for h in found[2]):
                    break  # an all-NVLink ring of the tightest links: nothing shared, nothing better
            assert best is not None
            if self._has_nvlink(ps) and not all(h.transport is Transport.NVLINK for h in best[2]):
                best = self._improve(best)  # NVLink and PCIe mixed: the candidates are compositions
            ring_gbps, ring, hops, limits, assumed = best
        network: NetworkPath | None = None
        if multi_node:
            network, net_assumed = self._network(ps)
            assumed.extend(net_assumed)
            limits.append(Limit("network", network.gbps, "network (" + (", ".join(network.nics) or "no NIC") + ")",
                                network.why))
        bottleneck = min(limits, key=lambda lim: lim.gbps)  # the first of equals: hop, shared links, network
        return Prediction(
            gpus=tuple(self._index[p] for p in ps),
            ring=tuple(self._index[p] for p in ring),
            hops=hops,
            ring_gbps=ring_gbps,
            network=network,
            gbps=bottleneck.gbps,
            bottleneck=bottleneck,
            assumed=bandwidth.dedupe(assumed),
        )

    def _rings(self, ps: list[int]) -> list[list[int]]:
        """Candidate ring orders (positions), the first of equal predictions wins.

        Without NVLink in the set: PCIe-contiguous (sorted by the component at each level,
        loosest first, so every socket, host bridge and switch is one stretch of the ring).
        With NVLink: the placer's ring (tightest worst link), then the PCIe-contiguous order
        with each NVLink island in the placer's order cut at its slowest hop: the placer ranks
        links, not shared uplinks, and may leave a socket twice.
        """
        contiguous = sorted(ps, key=lambda p: (*self._order[p], p))
        if not self._has_nvlink(ps):
            return [contiguous]
        out: list[list[int]] = []
        placement = self._placer.best([self._index[p] for p in ps], len(ps))
        if placement is not None:
            out.append([self._pos[g] for g in placement.ring])
        composed: list[int] = []
        for _, block_iter in itertools.groupby(contiguous, key=lambda p: self._order[p][-1]):
            block = list(block_iter)
            island = self._placer.best([self._index[p] for p in block], len(block)) if len(block) > 2 else None
            if island is not None:
                cycle = [self._pos[g] for g in island.ring]
                cut = min(range(len(cycle)), key=lambda i: self._pair(cycle[i], cycle[(i + 1) % len(cycle)]).gbps)
                block = cycle[cut + 1:] + cycle[:cut + 1]
            composed.extend(block)
        if not out or _edges(composed) != _edges(out[0]):
            out.append(composed)
        return out

    def _has_nvlink(self, ps: list[int]) -> bool:
        links = self.topo.links
        return any(
            (lk := links[p][q]) is not None and lk.level is LinkLevel.NVLINK
            for i, p in enumerate(ps)
            for q in ps[i + 1:]
        )

    def _improve(
        self, best: tuple[float, list[int], tuple[Hop, ...], list[Limit], list[str]],
    ) -> tuple[float, list[int], tuple[Hop, ...], list[Limit], list[str]]:
        """Improve a candidate ring by 2-opt moves (reverse one stretch) while that raises its value.

        Only for sets with NVLink whose best candidate is not all NVLink: a PCIe-only set has one candidate, the
        order that visits every socket, host bridge and switch in one stretch, which no move
        improves under these rules; an all-NVLink ring shares nothing.

        Why: the candidates rank hops, but a shared uplink or socket link can make the
        first of two equally slow candidates the worse ring; NCCL's own search tries ring
        orders until it finds the fastest. Without this step a slower link could *raise* a
        prediction (a property test found one: GPU0-GPU1 NODE → SYS took a 6-GPU set from
        6 to 12 GB/s, because only the SYS matrix led to the ring that spares the uplink).
        When every ring of the set fits the budget (up to 6 GPUs: (n-1)!/2 = 60 rings) all of
        them are tried, so the answer is the best ring and a slower link can never raise it;
        beyond, first improvement wins and the search starts again from it, at most
        :data:`~labeler.topology.limits.RING_IMPROVE_BUDGET` rings in all.
        """
        budget = limits.RING_IMPROVE_BUDGET
        ring = best[1]
        n = len(ring)
        if math.factorial(n - 1) // 2 <= budget:
            head, rest = ring[0], ring[1:]
            for order in itertools.permutations(rest):
                if order[0] < order[-1]:  # each ring once, not also backwards
                    found = self._evaluate([head, *order])
                    if found[0] > best[0]:
                        best = found
            return best
        moves = [(i, j) for i in range(1, n - 1) for j in range(i + 1, n) if not (i == 1 and j == n - 1)]
        improved = True
        while improved and budget > 0:
            improved = False
            ring = best[1]
            for i, j in moves:
                if budget <= 0:
                    break
                budget -= 1
                found = self._evaluate(ring[:i] + ring[i:j + 1][::-1] + ring[j + 1:])
                if found[0] > best[0]:
                    best, improved = found, True
                    break
        return best

    def _evaluate(self, ring: list[int]) -> tuple[float, list[int], tuple[Hop, ...], list[Limit], list[str]]:
        """One ring's value: its slowest hop and the shared links it loads."""
        hops: list[Hop] = []
        assumed: list[str] = []
        for i, p in enumerate(ring):
            q = ring[(i + 1) % len(ring)]
            pair = self._pair(p, q)
            hops.append(Hop(self._index[p], self._index[q], pair.link, pair.transport, pair.gbps, pair.why))
            assumed.extend(pair.assumed)
        slowest = min(hops, key=lambda h: h.gbps)  # the first of equals, in ring order
        limits = [Limit("hop", slowest.gbps, slowest.where, slowest.why), *self._shared(ring, tuple(hops))]
        return min(lim.gbps for lim in limits), ring, tuple(hops), limits, assumed

    def _components(self, ps: Sequence[int], edge: Callable[[Link], bool]) -> list[int]:
        """Position -> smallest position of its component, over known links that ``edge`` accepts."""
        links = self.topo.links
        edges = [
            (p, q) for i, p in enumerate(ps) for q in ps[i + 1:] if (lk := links[p][q]) is not None and edge(lk)
        ]
        smallest = {p: group[0] for group in islands.connected(ps, edges) for p in group}
        return [smallest[p] for p in ps]

    def _pair(self, p: int, q: int) -> _Pair:
        key = (p, q) if p < q else (q, p)
        hit = self._pairs.get(key)
        if hit is None:
            hit = self._pairs[key] = self._pair_value(*key)
        return hit

    def _pair_value(self, p: int, q: int) -> _Pair:
        topo = self.topo
        link = topo.links[p][q]
        pa, pb = self._pcie[p], self._pcie[q]
        pci = pa if pa.gbps <= pb.gbps else pb
        pci_assumed = (*pa.assumed, *pb.assumed)
        status: P2P | None = topo.p2p[p][q] if topo.p2p else None
        if link is not None and link.level is LinkLevel.NVLINK and (status is None or status.works):
            na, nb = self._nvlink(p, link.nvlinks), self._nvlink(q, link.nvlinks)
            per = na if na.gbps <= nb.gbps else nb
            gbps = _r(link.nvlinks * per.gbps)
            return _Pair(link, Transport.NVLINK, gbps, f"{link.nvlinks} × {per.text}, {per.cite}",
                         (*na.assumed, *nb.assumed))
        if link is not None and link.level <= bandwidth.P2P_MAX_LEVEL and link.level is not LinkLevel.NVLINK:
            if status is not None and status.works:
                return _Pair(link, Transport.P2P, _r(pci.gbps), f"P2P through the PCIe switch, {pci.text}", pci_assumed)
            if status is None:
                return _Pair(link, Transport.SHM, _r(pci.gbps), f"P2P unknown, via host memory, {pci.text}",
                             (*pci_assumed, _P2P_UNKNOWN))
            return _Pair(link, Transport.SHM, _r(pci.gbps),
                         f"P2P {status.value}: via host memory, {pci.text}", pci_assumed)
        if link is not None and link.level in (LinkLevel.PHB, LinkLevel.NODE):
            return _Pair(link, Transport.SHM, _r(pci.gbps),
                         f"via host memory (NCCL uses no P2P beyond PXB by default), {pci.text}", pci_assumed)
        # SYS, an unknown link, or an NVLink pair whose P2P NVML reports broken: across the host,
        # worst case the socket link (NVLink hides the PCIe path of such a pair)
        sock = bandwidth.socket()
        gbps = _r(min(pci.gbps, sock.gbps))
        extra: tuple[str, ...] = ()
        if link is None:
            lead, extra = "link unknown, valued as SYS", ("GPU pair link unknown: valued as SYS",)
        elif link.level is LinkLevel.NVLINK:
            assert status is not None
            lead = (f"P2P {status.value} on an NVLink pair (NCCL stops unless NCCL_IGNORE_DISABLED_P2P=1), "
                    "via host memory, valued as SYS")
        else:
            lead = "via host memory across sockets"
        binding = sock if sock.gbps <= pci.gbps else pci
        why = f"{lead}: {binding.text}" + (f", {sock.cite}" if binding is sock else "")
        return _Pair(link, Transport.SHM, gbps, why,
                     (*pci_assumed, *(sock.assumed if binding is sock else ()), *extra))

    def _nvlink(self, p: int, links: int) -> Resolved:
        return bandwidth.nvlink_per_link(self.topo.gpus[p], links)

    def _shared(self, ring: list[int], hops: tuple[Hop, ...]) -> list[Limit]:
        """Limits of links several hops cross: PCIe switch uplinks, the socket link."""
        out: list[Limit] = []
        if all(h.transport is Transport.NVLINK for h in hops):
            return out
        steps = [(ring[i], ring[(i + 1) % len(ring)], h) for i, h in enumerate(hops)]
        seen: set[frozenset[int]] = set()
        for comp in self._switches:
            groups: dict[int, list[int]] = {}
            for p in ring:
                groups.setdefault(comp[p], []).append(p)
            for group in groups.values():
                members = frozenset(group)
                if len(members) < 2 or members in seen:
                    continue
                seen.add(members)
                up = down = shm = 0
                for a, b, h in steps:
                    if h.transport is Transport.NVLINK:
                        continue
                    through = h.transport is Transport.SHM
                    shm += through and a in members and b in members
                    up += a in members and (through or b not in members)
                    down += b in members and (through or a not in members)
                load = max(up, down)
                if load < 2:
                    continue
                uplink = min(self._pcie[p].gbps for p in members)
                why = (f"{load} streams share one uplink ({uplink:g} GB/s: as fast as the slowest GPU link below "
                       f"it) = {uplink:g} / {load}")
                if shm:
                    why += "; without P2P the traffic turns at the CPU (NVIDIA/nccl#1309)"
                out.append(Limit("switch-uplink", _r(uplink / load),
                                 f"PCIe switch above {gpu_set(self._index[p] for p in members)}", why))
        sockets = self._sockets
        crossings: dict[tuple[int, int], int] = {}
        for a, b, h in steps:
            if h.link is not None and h.link.level is LinkLevel.SYS:
                crossings[(sockets[a], sockets[b])] = crossings.get((sockets[a], sockets[b]), 0) + 1
        sock = bandwidth.socket()
        for (x, y), n in sorted(crossings.items()):
            if n >= 2:
                out.append(Limit("socket-link", _r(sock.gbps / n), f"socket link (GPU{self._index[x]}'s side to "
                                 f"GPU{self._index[y]}'s)", f"{n} hops share it: {sock.text} / {n}, {sock.cite}"))
        return out

    def _network(self, ps: list[int]) -> tuple[NetworkPath, list[str]]:
        """The NICs nearest the set's GPUs and what they carry; a cap on a multi-node rank.

        Per NIC, how NCCL reaches it from the set GPU that serves it (:data:`_GDR`,
        :data:`_C2C_GDR`, :data:`_HOST`, :data:`_FAR`): GPUDirect RDMA at PIX/PXB and staged
        NICs within the socket share the GPU's PCIe link; GPUDirect RDMA over C2C (Grace) is
        bounded by the NVLink-C2C link; NICs staged across sockets share the socket link.
        """
        topo = self.topo
        used: set[int] = set()
        for p in ps:
            loc = self._locality.get(self._index[p])
            if loc is not None and loc.level is not None:
                for name in loc.nics:
                    used.update(self._nic_pos.get(name, ()))
        assumed: list[str] = []
        if not used:
            pci = min((self._pcie[p] for p in ps), key=lambda r: r.gbps)
            gbps = _r(min(bandwidth.NIC_UNKNOWN.gbps, pci.gbps))
            what = "no NIC listed" if not topo.nics else "links to every NIC unknown"
            assumed.append(f"{what}: one NIC at NCCL's 10 Gb/s fallback assumed, via host memory")
            return NetworkPath(gbps, (), (), f"{what}: one NIC of unknown rate, 10 Gb/s assumed",
                               tuple(assumed)), assumed
        # serve each NIC from the set GPU nearest to it (lowest level, then lowest position)
        whole_grace = len(ps) == len(self._index) and all(self._c2c)
        served: dict[int, list[tuple[int, LinkLevel, Resolved, str]]] = {}
        for n in sorted(used):
            best: tuple[LinkLevel, int] | None = None
            for p in ps:
                link = topo.gpu_nic_link(self._index[p], n)
                if link is not None and (best is None or (link.level, p) < best):
                    best = (link.level, p)
            assert best is not None  # the NIC is nearest to some GPU of the set through a known link
            rate = bandwidth.nic(topo.nics[n])
            assumed.extend(rate.assumed)
            served.setdefault(best[1], []).append((n, best[0], rate, self._route(best[1], best[0], whole_grace)))
        total = far_total = 0.0
        notes: list[str] = []
        kinds: dict[tuple[LinkLevel, str, float, bool], list[str]] = {}
        for p in sorted(served):
            nics = served[p]
            by = {route: sum(r.gbps for _, _, r, rt in nics if rt == route) for route in _ROUTES}
            if by[_GDR] + by[_HOST] + by[_FAR] > 0:
                cap = self._pcie[p]
                assumed.extend(cap.assumed)
                a = min(cap.gbps, by[_GDR] + by[_HOST])
                b = min(cap.gbps - a, by[_FAR])
                if by[_GDR] + by[_HOST] + by[_FAR] > cap.gbps:
                    notes.append(f"GPU{self._index[p]}'s {cap.text} carries its NICs' traffic")
                total += a
                far_total += b
            if by[_C2C_GDR] > 0:
                c2c = bandwidth.c2c()
                total += min(c2c.gbps, by[_C2C_GDR])
                if by[_C2C_GDR] > c2c.gbps:
                    notes.append(f"GPU{self._index[p]}'s {c2c.text} carries its NICs' traffic")
            for n, lv, r, rt in nics:
                kinds.setdefault((lv, rt, r.gbps, bool(r.assumed)), []).append(topo.nics[n].name)
        if far_total > 0:
            sock = bandwidth.socket()
            if far_total > sock.gbps:
                notes.append(f"NICs across sockets share the {sock.text}")
                assumed.extend(sock.assumed)
            total += min(far_total, sock.gbps)
        gbps = _r(total)
        parts = []
        for (lv, route, each_gbps, unknown), nics_at in sorted(
                kinds.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[0][2], kv[0][3])):
            each = " each" if len(nics_at) > 1 else ""
            note = ", rate unknown" if unknown else ""
            parts.append(f"{','.join(nics_at)} {lv.token} ({_ROUTE_WORDS[route]}, {each_gbps:g} GB/s{each}{note})")
        if any(rt == _C2C_GDR for nics in served.values() for *_, rt in nics):
            notes.append(_C2C_CITE)
        names = tuple(topo.nics[n].name for n in sorted(used))
        gdr = tuple(topo.nics[n].name for p in sorted(served) for n, _, _, rt in served[p] if rt in (_GDR, _C2C_GDR))
        why = "; ".join(parts + notes) + f" = {gbps:g} GB/s"
        net_assumed = bandwidth.dedupe(assumed)
        return NetworkPath(gbps, names, tuple(sorted(gdr)), why, net_assumed), list(net_assumed)

    def _route(self, p: int, level: LinkLevel, whole_grace: bool) -> str:
        """How NCCL reaches a NIC ``level`` away from the set GPU at position ``p`` that serves it.

        GPUDirect RDMA at PIX/PXB (``NCCL_NET_GDR_LEVEL``'s default, PXB). On a Grace GPU
        (NVLink-C2C to its CPU, :attr:`Gpu.gpu_numa_id` reported), a NIC under its own CPU
        (PHB/NODE) is reached with GPUDirect RDMA over C2C (NCCL's P2C path). ``nvidia-smi``
        reports SYS for every GPU-NIC pair of a GB200 tray, so SYS does not say which CPU the
        NIC hangs off: when the set holds every GPU of a Grace node, each NIC sits under the
        CPU of one of them and NCCL reaches it over C2C directly or through an NVLink peer
        (PXN over C2C); otherwise the NIC counts as across the socket link (the worse case).
        """
        if level <= nic_locality.GPUDIRECT_MAX_LEVEL:
            return _GDR
        if self._c2c[p] and (level is not LinkLevel.SYS or whole_grace):
            return _C2C_GDR
        return _FAR if level is LinkLevel.SYS else _HOST


_GDR, _C2C_GDR, _HOST, _FAR = "gdr", "gdr-c2c", "host", "far"
_ROUTES = (_GDR, _C2C_GDR, _HOST, _FAR)
_ROUTE_WORDS = {_GDR: "GPUDirect RDMA", _C2C_GDR: "GPUDirect RDMA over C2C", _HOST: "via host memory",
                _FAR: "via host memory"}
#: why a Grace GPU reaches its NICs with GPUDirect RDMA (NCCL >= 2.27.3)
_C2C_CITE = ("GPUDirect RDMA over C2C: NCCL_NET_GDR_C2C=1 by default since NCCL 2.27.3 (a C2C GPU-CPU path merged "
             "with a PHB NIC-CPU path is P2C, within the default GDR level; NVIDIA/nccl src/graph/paths.cc)")


def _edges(ring: list[int]) -> frozenset[frozenset[int]]:
    """A ring's hops as unordered pairs: two orders with the same edges are the same ring."""
    return frozenset(frozenset((p, ring[(i + 1) % len(ring)])) for i, p in enumerate(ring))


def _pcie_at_or_better(level: LinkLevel) -> Callable[[Link], bool]:
    """PCIe links at ``level`` or better (an NVLink cell hides its pair's PCIe path: no edge)."""
    return lambda link: link.level is not LinkLevel.NVLINK and link.level <= level


def _one_of(levels: frozenset[LinkLevel]) -> Callable[[Link], bool]:
    return lambda link: link.level in levels


#: process-wide models by topology, bounded by estimated bytes (see :meth:`BandwidthModel.cost_bytes`), as the
#: placers are (:func:`labeler.topology.placement.placer_for`)
_MODELS: ByteCache[Topology, BandwidthModel] = ByteCache(max_bytes=64 << 20, max_entries=4096)


def model_for(topo: Topology) -> BandwidthModel:
    """A process-wide cached :class:`BandwidthModel` (topologies are hashable values); bounded by bytes."""
    return _MODELS.get_or_build(topo, BandwidthModel, BandwidthModel.cost_bytes)


def predict(topo: Topology, gpus: Iterable[int], *, multi_node: bool = False) -> Prediction | None:
    """The predicted NCCL ring bus bandwidth of exactly ``gpus`` (indices) on ``topo``, with its reasons.

    >>> from labeler.topology import smi_parser
    >>> t = smi_parser.parse("GPU0 GPU1 GPU2\\nGPU0 X NV4 SYS\\nGPU1 NV4 X SYS\\nGPU2 SYS SYS X\\n")
    >>> predict(t, [0, 1]).gbps  # NV4, generation unknown: the slowest with 4 links (GA102, 12 GB/s)
    48.0
    >>> print(predict(t, [0, 1, 2]).explain())  # doctest: +ELLIPSIS
    ring 0→1→2, bottleneck GPU1↔GPU2 SYS, 6 GB/s (via host memory across sockets: socket link 6 GB/s ...)
    """
    return model_for(topo).predict(gpus, multi_node=multi_node)


def busbw_gbps(topo: Topology, gpus: Iterable[int], *, multi_node: bool = False) -> float | None:
    """Just the number: the seam for callers that need no explanation (simulator, pod audit).

    ``None`` where :func:`predict` is ``None`` (fewer than two GPUs of a single-node job).
    """
    found = predict(topo, sorted(set(gpus)), multi_node=multi_node)
    return None if found is None else found.gbps
