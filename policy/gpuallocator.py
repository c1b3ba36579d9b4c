"""NVIDIA go-gpuallocator's best-effort policy, rebuilt on gputopo's :class:`Topology`.

Why a model and not our own placer: the stock NVIDIA device plugin answers kubelet's
``GetPreferredAllocation`` with this policy, so it decides which GPUs a pod gets once the
scheduler has picked the node. A simulator that compares placements, and an end-to-end
test that stands in for kubelet + device plugin, need *its* answer, ties and blind spots
included, not ours.

Sources (read, not copied; the Python below is written from their behaviour):

- NVIDIA/go-gpuallocator @ 876e7b7609bb839919e4eb06ce00607db76e907e. The policy files are
  identical at tag v0.6.0 (76743f817851), the version NVIDIA/k8s-device-plugin pins
  (``go.mod`` @ 1b826acc6af3).

  - ``gpuallocator/besteffort_policy.go``: ``Allocate``, ``iterateGPUPartitions``,
    ``iterateGPUSets``, ``calculateGPUPairScore``.
  - ``gpuallocator/device.go``: ``NewDevices`` gives each ordered GPU pair a list of link
    types: the PCIe common-ancestor type, plus an NVLink type when NVML reports one.
  - ``internal/links/device.go``: ``GetP2PLink`` and ``GetNVLink``.
  - ``gpuallocator/besteffort_test.go`` and ``common_test.go``: the test tables that
    ``tests/policy`` ports.

What the policy does (``Allocate(available, required, size)``):

1. It returns nothing when ``size <= 0``, when fewer than ``size`` devices are available,
   or when ``required`` is longer than ``size`` or than ``available``.
2. It pads ``available`` with empty slots (Go ``nil``) up to a multiple of ``size``. Then it
   walks every partition of the padded list into sets of ``size``. All padding goes into one
   set. A partition counts only if one *unpadded* set holds every required device. It keeps
   the first partition, in walk order, with the highest sum of set scores.
3. Within that partition it keeps the sets that hold every required device. With nothing
   required, that includes the padded set. It returns the first of them with the highest set
   score.

The walk order decides ties, so the answer depends on the order of ``available``.
kubelet sends that list from a Go map, in no defined order.

The walk is lexicographic. The first set holds the first device, plus every choice of
``size - 1`` others in list order; then it recurses on the rest. So "the first best
partition in walk order" is the lexicographically first best partition. We find it
without walking every partition. The best total for each remaining device set comes from
a dynamic programme over bitmasks, memoised per :class:`DeviceLinks`. Memoising by set is
exact, because the total does not depend on order. Then we pick, set by set, the first
choice in walk order that still reaches the best total. A 16-GPU node stays tractable,
where the Go walk over every partition is not.

Scores (``calculateGPUPairScore``): each link type between two GPUs adds points. NVLink adds
100 per link. PCIe adds 10 (cross-CPU) up to 60 (same board). A set scores the sum over its
pairs. A partition scores the sum over its sets.

Two known gaps in go-gpuallocator, which we model rather than fix:

- **NVSwitch.** ``GetNVLink`` counts a GPU's NVLinks whose remote PCI bus ID is the other
  GPU. Through an NVSwitch the remote end is the switch, so no NVLink is counted. The source
  says so: ``// TODO(klueska): Handle NVSwitch semantics``. On HGX/DGX boards the policy
  sees only the PCIe tree.
- **Padded sets.** Step 3 can return the padded set when it outscores every full set, for
  example an NVLink pair against a weak triple. The result then holds ``nil``. The device
  plugin (``internal/rm/nvml_manager.go alignedAlloc`` reads ``device.UUID``) would panic.
  go-gpuallocator PR #80 (open) proposes the fix. :func:`best_effort` returns ``None`` in
  those slots. :mod:`policy.device_plugin` turns that into a refused pod.
"""

from __future__ import annotations

import enum
import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology
from labeler.topology.nvswitch import switched_islands

__all__ = [
    "LEVEL_TO_P2P",
    "MAX_COUNTED_NVLINKS",
    "NVLINK_SCORE_PER_LINK",
    "P2P_SCORE",
    "DeviceLinks",
    "P2PLinkType",
    "best_effort",
    "links_for",
]


class P2PLinkType(enum.IntEnum):
    """PCIe peer-to-peer link types as go-gpuallocator names them (``internal/links/device.go``).

    NVLink types (``SingleNVLINKLink`` … ``EighteenNVLINKLinks``) are not listed: they are a
    link count, kept in :attr:`DeviceLinks.nvlinks`.
    """

    UNKNOWN = 0  # P2PLinkUnknown: no entry in Device.Links
    CROSS_CPU = 1  # NVML TOPOLOGY_SYSTEM      (nvidia-smi SYS)
    SAME_CPU = 2  # NVML TOPOLOGY_NODE        (nvidia-smi NODE)
    HOST_BRIDGE = 3  # NVML TOPOLOGY_HOSTBRIDGE (nvidia-smi PHB)
    MULTI_SWITCH = 4  # NVML TOPOLOGY_MULTIPLE  (nvidia-smi PXB)
    SINGLE_SWITCH = 5  # NVML TOPOLOGY_SINGLE   (nvidia-smi PIX)
    SAME_BOARD = 6  # NVML TOPOLOGY_INTERNAL    (no nvidia-smi level; never built from a Topology)


#: Points per PCIe link type, ``calculateGPUPairScore`` (besteffort_policy.go @876e7b7).
P2P_SCORE: dict[P2PLinkType, int] = {
    P2PLinkType.UNKNOWN: 0,
    P2PLinkType.CROSS_CPU: 10,
    P2PLinkType.SAME_CPU: 20,
    P2PLinkType.HOST_BRIDGE: 30,
    P2PLinkType.MULTI_SWITCH: 40,
    P2PLinkType.SINGLE_SWITCH: 50,
    P2PLinkType.SAME_BOARD: 60,
}

#: Points per NVLink between two GPUs, ``calculateGPUPairScore`` (100 for one … 1800 for 18).
NVLINK_SCORE_PER_LINK = 100

#: ``GetNVLink`` stops counting at ``EighteenNVLINKLinks`` (internal/links/device.go @876e7b7).
MAX_COUNTED_NVLINKS = 18

#: nvidia-smi levels and NVML common-ancestor types are the same scale (nvidia-smi prints
#: ``nvmlDeviceGetTopologyCommonAncestor``), mapped as ``GetP2PLink`` maps NVML to link types.
LEVEL_TO_P2P: dict[LinkLevel, P2PLinkType] = {
    LinkLevel.PIX: P2PLinkType.SINGLE_SWITCH,
    LinkLevel.PXB: P2PLinkType.MULTI_SWITCH,
    LinkLevel.PHB: P2PLinkType.HOST_BRIDGE,
    LinkLevel.NODE: P2PLinkType.SAME_CPU,
    LinkLevel.SYS: P2PLinkType.CROSS_CPU,
}

Pair = tuple[int, int]
_PCIE_LEVELS = (LinkLevel.PIX, LinkLevel.PXB, LinkLevel.PHB, LinkLevel.NODE, LinkLevel.SYS)


@dataclass(frozen=True, eq=False)
class DeviceLinks:
    """What go-gpuallocator's ``NewDevices`` learns from NVML about every GPU pair.

    ``p2p[i][j]`` is the PCIe link type and ``nvlinks[i][j]`` the NVLink count NVML reports
    between the GPUs at positions ``i`` and ``j`` of ``gpus``. The count is 0 when the GPUs
    reach each other only through NVSwitch. Build one with :func:`links_for`. Instances
    compare by identity and carry the policy's memo, so keep the cached one.
    """

    gpus: tuple[int, ...]
    p2p: tuple[tuple[P2PLinkType, ...], ...]
    nvlinks: tuple[tuple[int, ...], ...]
    nvswitch: bool
    _pos: dict[int, int] = field(default_factory=dict, init=False, repr=False)
    _score: list[list[int]] = field(default_factory=list, init=False, repr=False)
    _memo: dict[tuple[int, int, int, bool, bool], int | None] = field(default_factory=dict, init=False, repr=False)
    _set_scores: dict[int, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.gpus)
        if len(set(self.gpus)) != n:
            raise ValueError(f"duplicate GPU index in {self.gpus}")
        for name, m in (("p2p", self.p2p), ("nvlinks", self.nvlinks)):
            if len(m) != n or any(len(row) != n for row in m):
                raise ValueError(f"{name} must be {n}x{n}")
        self._pos.update({g: p for p, g in enumerate(self.gpus)})
        for i in range(n):
            row = []
            for j in range(n):
                if (self.p2p[i][j], self.nvlinks[i][j]) != (self.p2p[j][i], self.nvlinks[j][i]):
                    # Go panics here ("all P2PLinks between 2 GPUs should be bidirectional").
                    raise ValueError(f"links between GPUs {self.gpus[i]} and {self.gpus[j]} are not symmetric")
                row.append(0 if i == j else _pair_score(self.p2p[i][j], self.nvlinks[i][j]))
            self._score.append(row)

    def pair_score(self, a: int, b: int) -> int:
        """``calculateGPUPairScore`` for two GPUs, by GPU index."""
        return self._score[self._pos[a]][self._pos[b]]

    def set_score(self, gpus: Sequence[int]) -> int:
        """``calculateGPUSetScore``: the sum of the pair scores inside the set."""
        return self._mask_score(self._mask(gpus))

    # -- internals -----------------------------------------------------------------------
    def _mask(self, gpus: Sequence[int]) -> int:
        m = 0
        for g in gpus:
            m |= 1 << self._pos[g]
        return m

    def _mask_score(self, mask: int) -> int:
        hit = self._set_scores.get(mask)
        if hit is None:
            bits = _bits(mask)
            hit = sum(self._score[a][b] for i, a in enumerate(bits) for b in bits[i + 1 :])
            self._set_scores[mask] = hit
        return hit

    def _best(self, size: int, req: int, mask: int, pad: bool, pending: bool) -> int | None:
        """Best partition total of the devices in ``mask`` (plus the padding when ``pad``).

        ``pending``: the required devices (``req``, all inside ``mask``) still need their
        unpadded set. ``None`` when no partition qualifies. Independent of device order, so
        memoised by set: this is the exact memo the policy allows.
        """
        key = (size, req, mask, pad, pending)
        if key in self._memo:
            return self._memo[key]
        n = mask.bit_count()
        padding = (-n) % size if pad else 0
        best: int | None = None
        if n + padding == size:
            if not pending or (not pad and mask & req == req):
                best = self._mask_score(mask)
        else:
            low = mask & -mask
            rest = _bits(mask ^ low)
            for with_pad in (False, True) if pad else (False,):
                for combo in itertools.combinations(rest, size - 1 - (padding if with_pad else 0)):
                    s = low
                    for p in combo:
                        s |= 1 << p
                    still = _still_pending(s, with_pad, req, pending)
                    if still is None:
                        continue
                    tail = self._best(size, req, mask & ~s, pad and not with_pad, still)
                    if tail is not None:
                        total = self._mask_score(s) + tail
                        if best is None or total > best:
                            best = total
        self._memo[key] = best
        return best


def _still_pending(s: int, padded: bool, req: int, pending: bool) -> bool | None:
    """After choosing set ``s``: is the required set still to come (None: partition invalid)?"""
    if not pending:
        return False
    inter = s & req
    if inter == 0:
        return True
    if inter == req and not padded:
        return False
    return None  # the required devices would be split, or sit in the padded set


def _pair_score(p2p: P2PLinkType, nvlinks: int) -> int:
    return P2P_SCORE[p2p] + NVLINK_SCORE_PER_LINK * min(nvlinks, MAX_COUNTED_NVLINKS)


def _bits(mask: int) -> list[int]:
    """Positions of the set bits, lowest first."""
    return [p for p in range(mask.bit_length()) if mask >> p & 1]


def best_effort(
    links: DeviceLinks, available: Sequence[int], required: Sequence[int], size: int
) -> tuple[int | None, ...]:
    """go-gpuallocator's ``bestEffortPolicy.Allocate``, the same answer for the same input order.

    ``available`` is in the order the device plugin got it (kubelet's map order). The order
    of ``required`` does not matter. The result lists the chosen set in the policy's own
    order. It is ``()`` where Go returns an empty slice. It holds ``None`` where Go would
    return a padding ``nil`` (see the module docstring). Unknown or repeated GPU indices
    raise ``ValueError``: the device plugin's ``DeviceList.Filter`` errors on them first.

    >>> from labeler.topology.smi_parser import parse
    >>> topo = parse("GPU0 GPU1 GPU2\\nGPU0 X NV2 SYS\\nGPU1 NV2 X SYS\\nGPU2 SYS SYS X\\n")
    >>> best_effort(links_for(topo), [2, 1, 0], [], 2)
    (1, 0)
    """
    if len(set(available)) != len(available) or len(set(required)) != len(required):
        raise ValueError("available and required must not repeat a GPU")
    unknown = [g for g in (*available, *required) if g not in links._pos]
    if unknown:
        raise ValueError(f"GPUs {unknown} are not in this topology")
    if size <= 0 or len(available) < size or len(required) > size or len(required) > len(available):
        return ()
    req = links._mask(required)
    avail = links._mask(available)
    if req & ~avail:
        return ()  # no partition can hold a required device that is not available
    if size == 1:  # Go's fast path: one single-device partition per device, all scoring 0
        return (required[0],) if required else (available[0],)

    # The padded, ordered device list as the Go walk sees it: positions, then -1 per pad.
    padding = (-len(available)) % size
    order = [links._pos[g] for g in available] + [-1] * padding
    pending = req != 0
    pad = padding > 0
    target = links._best(size, req, avail, pad, pending)
    if target is None:
        return ()
    partition: list[tuple[int, ...]] = []
    remaining = order
    while len(remaining) > size:
        first, rest = remaining[0], remaining[1:]
        left = _mask_of(remaining)
        for combo in itertools.combinations(rest, size - 1):
            pads = combo.count(-1)
            if pads not in (0, padding):
                continue  # Go skips sets holding part of the padding
            s = 1 << first
            for p in combo:
                if p >= 0:
                    s |= 1 << p
            with_pad = pads > 0
            still = _still_pending(s, with_pad, req, pending)
            if still is None:
                continue
            tail = links._best(size, req, left & ~s, pad and not with_pad, still)
            if tail is not None and links._mask_score(s) + tail == target:
                partition.append((first, *combo))
                target, pending, pad = tail, still, pad and not with_pad
                chosen = set(combo)
                remaining = [p for p in rest if p not in chosen]
                break
        else:  # pragma: no cover - the DP guarantees a continuation
            raise AssertionError("best-effort reconstruction lost the optimum")
    partition.append(tuple(remaining))

    best_set: tuple[int, ...] | None = None
    best_score = 0
    for s_pos in partition:
        s_mask = _mask_of(s_pos)
        if s_mask & req != req:
            continue
        score = links._mask_score(s_mask)
        if best_set is None or score > best_score:
            best_set, best_score = s_pos, score
    if best_set is None:  # pragma: no cover - the valid partition holds the required set
        return ()
    return tuple(None if p < 0 else links.gpus[p] for p in best_set)


def _mask_of(positions: Sequence[int]) -> int:
    m = 0
    for p in positions:
        if p >= 0:
            m |= 1 << p
    return m


# -- from a Topology ----------------------------------------------------------------------


def links_for(
    topo: Topology,
    *,
    pcie: Mapping[Pair, LinkLevel | None] | None = None,
    nvswitch: bool | None = None,
) -> DeviceLinks:
    """The links go-gpuallocator would read from NVML on the machine ``topo`` describes.

    Cached per (topology, ``pcie``, ``nvswitch``), so its memo is shared by every call.

    Our topology and NVML do not hold the same facts:

    - **PCIe under NVLink.** An ``NV#`` cell hides the PCIe level of that pair. NVML still
      reports it, and go-gpuallocator adds its points to the NVLink points. ``pcie`` gives it
      per GPU pair (either order; ``None`` means NVML gave no PCIe type). Pairs not given are
      inferred: a PCIe tree is an ultrametric, so ``d(a,b) <= max(d(a,c), d(b,c))`` for any
      other endpoint ``c`` (GPU or NIC) with PCIe cells to both. We take the smallest such
      bound. It is exact whenever some ``c`` sits at different levels from ``a`` and ``b``.
      GPUs on different NUMA nodes are SYS; on the same one, at most NODE. With no evidence
      we take SYS, the weakest claim.
    - **NVSwitch.** ``nvidia-smi`` prints ``NV#`` for GPUs joined through NVSwitch, but
      go-gpuallocator counts no NVLink there (NVML names the switch, not the peer). When
      ``nvswitch`` is ``None``, the pairs inside the islands gputopo's one rule calls
      switched (:func:`labeler.topology.nvswitch.switched_islands`: all-to-all, more than
      two GPUs, more links per GPU than any GPU has; 8x H100: 7 x NV18) count none, and
      direct NVLink pairs keep their count. ``True`` drops every NVLink, ``False`` none.
      This is our reading of the matrix, not Go's code: Go reads whatever NVML says, so
      the model stays faithful to Go whichever rule infers the NVML view.
    - **Same board** (``P2PLinkSameBoard``, NVML TOPOLOGY_INTERNAL: dual-GPU boards such as
      K80) has no nvidia-smi level, so it never comes out of a Topology.
    - An unknown cell (``None``) becomes no PCIe link type (0 points). Real NVML always
      answers for this.
    """
    if pcie is None:
        # Hashing a Topology walks its whole matrix; per-pod callers pass the same object
        # again and again, so look it up by identity first (the entry keeps it alive).
        hit = _by_identity.get((id(topo), nvswitch))
        if hit is not None and hit[0] is topo:
            return hit[1]
        links = _links_cached(topo, None, nvswitch)
        if len(_by_identity) >= _IDENTITY_CACHE_SIZE:
            _by_identity.clear()
        _by_identity[(id(topo), nvswitch)] = (topo, links)
        return links
    frozen = frozenset((tuple(sorted(k)), v) for k, v in pcie.items())
    return _links_cached(topo, frozen, nvswitch)


_IDENTITY_CACHE_SIZE = 4096
_by_identity: dict[tuple[int, bool | None], tuple[Topology, DeviceLinks]] = {}


@functools.lru_cache(maxsize=1024)
def _links_cached(
    topo: Topology, pcie: frozenset[tuple[tuple[int, ...], LinkLevel | None]] | None, nvswitch: bool | None
) -> DeviceLinks:
    gpus = topo.gpu_indices
    n = len(gpus)
    given: dict[Pair, LinkLevel | None] = {}
    for (a, b), override in pcie or ():
        if a not in gpus or b not in gpus or a == b:
            raise ValueError(f"pcie override names unknown GPU pair ({a}, {b})")
        if override is not None and override not in _PCIE_LEVELS:
            raise ValueError(f"pcie override for ({a}, {b}) must be a PCIe level, not {override.name}")
        given[(a, b)] = override
    switched: set[Pair] | None = None  # GPU pairs behind NVSwitch; None: as ``nvswitch`` says for all
    if nvswitch is None:
        switched = {(a, b) for island in switched_islands(topo) for a in island for b in island if a < b}
        nvswitch = bool(switched)
    p2p = [[P2PLinkType.UNKNOWN] * n for _ in range(n)]
    nvl = [[0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            a, b = gpus[i], gpus[j]
            link = topo.links[i][j]
            level: LinkLevel | None
            if (a, b) in given:
                level = given[(a, b)]
            elif link is None:
                level = None
            elif link.level is LinkLevel.NVLINK:
                level = _infer_pcie(topo, i, j)
            else:
                level = link.level
            behind_switch = nvswitch if switched is None else (a, b) in switched
            if link is not None and link.level is LinkLevel.NVLINK and not behind_switch:
                nvl[i][j] = nvl[j][i] = link.nvlinks
            p2p[i][j] = p2p[j][i] = P2PLinkType.UNKNOWN if level is None else LEVEL_TO_P2P[level]
    return DeviceLinks(gpus, tuple(map(tuple, p2p)), tuple(map(tuple, nvl)), nvswitch)


def _infer_pcie(topo: Topology, i: int, j: int) -> LinkLevel:
    """The PCIe level hidden under the NVLink cell (i, j): the tightest ultrametric bound."""
    bound = LinkLevel.SYS
    for c in range(len(topo.links)):
        if c in (i, j):
            continue
        la, lb = topo.links[i][c], topo.links[j][c]
        if la is None or lb is None or la.level not in _PCIE_LEVELS or lb.level not in _PCIE_LEVELS:
            continue
        bound = min(bound, max(la.level, lb.level))
    na, nb = topo.gpus[i].numa_node, topo.gpus[j].numa_node
    if na is not None and nb is not None:
        bound = LinkLevel.SYS if na != nb else min(bound, LinkLevel.NODE)
    return bound
