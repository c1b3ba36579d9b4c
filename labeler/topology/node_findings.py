"""Hardware findings read off one topology: PCIe training, P2P, NVLink links down, MIG mode.

Why apart from :mod:`labeler.topology.report`: these judge the v2 *facts* (PCIe link,
P2P status, MIG mode, NVLink counts) rather than the wiring, and each says when it
cannot judge: a topology read from `nvidia-smi topo -m` text carries none of those
facts, and the published annotation leaves the current PCIe generation out
(:meth:`~labeler.topology.model.Topology.stable`). Grouped per cause like every finding:
one line per GPU set and state, never one per GPU pair.

The probe adds what only it can see (NVML's per-link NVLink state, a pending MIG
change, disagreements between sources) as its own findings, with the same codes where
the cause is the same (:data:`labeler.topology.report.SUPERSEDED_BY_PROBE`).
"""

from __future__ import annotations

from labeler.topology.drawing import analyse
from labeler.topology.findings import Finding, Severity, gpu_set, pairs_text
from labeler.topology.islands import connected
from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology

__all__ = ["findings", "mig_findings", "nvlink_findings", "p2p_findings", "pcie_findings"]

WARN, INFO = Severity.WARNING, Severity.INFO
_SWITCH_LEVELS = (LinkLevel.PIX, LinkLevel.PXB)


def findings(topo: Topology) -> list[Finding]:
    """Every hardware finding of this module, in a stable order."""
    return [*p2p_findings(topo), *pcie_findings(topo), *nvlink_findings(topo), *mig_findings(topo)]


# -- P2P -------------------------------------------------------------------------------------
def _switch_pairs(topo: Topology) -> dict[tuple[int, int], LinkLevel]:
    """GPU pairs under one PCIe switch tree (PIX/PXB), where P2P should work at full PCIe speed."""
    return {
        (a, b): lk.level for a, b, lk in topo.gpu_pairs() if lk is not None and lk.level in _SWITCH_LEVELS
    }


def p2p_findings(topo: Topology) -> list[Finding]:
    """P2P not OK under a PCIe switch (``p2p-unavailable-under-switch``), elsewhere (``p2p-unavailable``),
    or not known where a switch makes it matter (``p2p-unknown``)."""
    under = _switch_pairs(topo)
    if not topo.p2p:
        if not under:
            return []
        shown = ", ".join(f"GPU{a}↔GPU{b}" for a, b in list(under)[:3]) + (", …" if len(under) > 3 else "")
        return [Finding(INFO, "p2p-unknown", (
            f"P2P status of the {pairs_text(len(under))} under a PCIe switch ({shown}) not known: "
            "`nvidia-smi topo -m` does not carry it and PIX/PXB does not guarantee it (`nvidia-smi topo -p2p r` "
            "shows it; the local probe reads it from NVML)"))]
    bad: dict[str, list[tuple[int, int]]] = {}
    pairs = 0
    for i, ga in enumerate(topo.gpus):
        for j in range(i + 1, len(topo.gpus)):
            status = topo.p2p[i][j]
            if status is None:
                continue
            pairs += 1
            if not status.works:
                bad.setdefault(status.value, []).append((ga.index, topo.gpus[j].index))
    out: list[Finding] = []
    for code, bad_pairs in sorted(bad.items()):
        switched = [p for p in bad_pairs if p in under]
        for comp in connected(sorted({g for p in switched for g in p}), switched):
            among = [p for p in switched if p[0] in comp]
            levels = "/".join(sorted({under[p].token for p in among}, key=lambda t: LinkLevel[t]))
            scope = (", ".join(f"GPU{a}↔GPU{b}" for a, b in among) if len(among) <= 2
                     else f"{pairs_text(len(among))} of {gpu_set(comp)}")
            out.append(Finding(WARN, "p2p-unavailable-under-switch", (
                f"P2P unavailable for {scope} although they share a PCIe switch ({levels}; NVML: {code}): their "
                "traffic is staged through host memory. Under a switch this is ACS/IOMMU redirecting peer traffic "
                "to the root complex, a VM without P2P passthrough, or a GPU without P2P support (GeForce: GNS)")))
        rest = [p for p in bad_pairs if p not in under]
        if not rest:
            continue
        if len(rest) == pairs:
            out.append(Finding(WARN, "p2p-unavailable", (
                f"P2P unavailable between every GPU pair (NVML: {code}): GPU↔GPU traffic is staged through host "
                "memory")))
            continue
        out.extend(_p2p_by_island(topo, code, rest))
    return out


def _p2p_by_island(topo: Topology, code: str, bad_pairs: list[tuple[int, int]]) -> list[Finding]:
    """Unavailable pairs named per pair of P2P islands (GPUs with working P2P among them)."""
    ok = [
        (ga.index, topo.gpus[j].index)
        for i, ga in enumerate(topo.gpus)
        for j in range(i + 1, len(topo.gpus))
        if (st := topo.p2p[i][j]) is not None and st.works
    ]
    groups = connected(list(topo.gpu_indices), ok)
    where = {g: k for k, grp in enumerate(groups) for g in grp}
    by_pair: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for a, b in bad_pairs:
        x, y = sorted((where[a], where[b]))
        by_pair.setdefault((x, y), []).append((a, b))
    out = []
    for (x, y), among in sorted(by_pair.items()):
        if len(among) <= 2:
            scope = "for " + ", ".join(f"GPU{a}↔GPU{b}" for a, b in among)
        elif x != y:
            scope = f"between {gpu_set(groups[x])} and {gpu_set(groups[y])} ({pairs_text(len(among))})"
        else:
            scope = f"for {pairs_text(len(among))} inside {gpu_set(groups[x])}"
        out.append(Finding(WARN, "p2p-unavailable", f"P2P unavailable {scope} (NVML: {code})"))
    return out


# -- PCIe ------------------------------------------------------------------------------------
def pcie_findings(topo: Topology) -> list[Finding]:
    """Width below maximum (``pcie-width-downtrained``, a fault), generation below maximum when probed
    (``pcie-gen-below-max``, normal at idle), and what could not be judged (``pcie-not-judged``)."""
    down: dict[tuple[int, int], list[int]] = {}
    slow: dict[tuple[int, int], list[int]] = {}
    no_facts: list[int] = []
    no_gen: list[int] = []
    for g in topo.gpus:
        p = g.pcie
        if p is None or (p.width is None and p.gen is None):
            no_facts.append(g.index)
            continue
        if p.width_downtrained:
            assert p.width is not None and p.max_width is not None
            down.setdefault((p.width, p.max_width), []).append(g.index)
        if p.gen is None:
            no_gen.append(g.index)
        elif p.max_gen is not None and p.gen < p.max_gen:
            slow.setdefault((p.gen, p.max_gen), []).append(g.index)
    out = [
        Finding(WARN, "pcie-width-downtrained", (
            f"{gpu_set(gpus)}: PCIe link trained at x{width} of x{max_width}: reseat the card or check the riser/slot"))
        for (width, max_width), gpus in sorted(down.items())
    ]
    out += [
        Finding(INFO, "pcie-gen-below-max", (
            f"{gpu_set(gpus)}: PCIe Gen{gen} of Gen{max_gen} when probed (normal at idle: the link retrains to "
            "full speed under load; if it stays low under load, check the BIOS link speed and the riser)"))
        for (gen, max_gen), gpus in sorted(slow.items())
    ]
    if no_facts:
        out.append(Finding(INFO, "pcie-not-judged", (
            f"PCIe link training of {gpu_set(no_facts)} not judged: this input has no PCIe link facts "
            "(`nvidia-smi topo -m` text does not carry them; `gputopo audit` without FILE probes them on the node)")))
    elif no_gen:
        out.append(Finding(INFO, "pcie-not-judged", (
            f"PCIe generation of {gpu_set(no_gen)} not judged: the published topology leaves the current "
            "generation out (it follows the power state); widths were judged. `gputopo audit` on the node "
            "judges both")))
    return out


# -- NVLink ----------------------------------------------------------------------------------
def nvlink_findings(topo: Topology) -> list[Finding]:
    """GPUs that reach an NVSwitch fabric with fewer links than their peers (``nvlink-down``).

    On an NVSwitch board every GPU has the same links to the fabric, so a pair count
    below the fabric's common width means links of that GPU are down. Direct NVLink
    meshes (DGX-1, bridges) legitimately mix counts: there only NVML's per-link state,
    read by the local probe, tells a link down.
    """
    out = []
    for sw in analyse(topo).nvswitch:
        low: dict[int, list[int]] = {}
        for g, n in sw.links.items():
            if n < sw.width:
                low.setdefault(n, []).append(g)
        for n, gpus in sorted(low.items()):
            lost = sw.width - n
            out.append(Finding(WARN, "nvlink-down", (
                f"{gpu_set(gpus)} reach{'es' if len(gpus) == 1 else ''} the NVSwitch fabric of {gpu_set(sw.gpus)} "
                f"with NV{n} where the others have "
                f"NV{sw.width}: {lost} NVLink{'s' if lost > 1 else ''} down per GPU (bandwidth of every ring "
                "through them drops; NVML's per-link state on the node names the links)")))
    return out


# -- MIG -------------------------------------------------------------------------------------
def mig_findings(topo: Topology) -> list[Finding]:
    """MIG mode on (``mig-enabled``): such GPUs serve MIG devices, not whole GPUs to multi-GPU pods."""
    on = [g.index for g in topo.gpus if g.mig]
    if not on:
        return []
    if len(on) == len(topo.gpus):
        return [Finding(INFO, "mig-enabled", (
            f"{gpu_set(on)}: MIG enabled on every GPU: the node serves MIG devices; whole-GPU placement and "
            "multi-GPU islands do not apply"))]
    return [Finding(WARN, "mig-enabled", (
        f"{gpu_set(on)}: MIG enabled: these GPUs serve MIG devices, not whole GPUs, and no NCCL ring can include "
        "them; the whole-GPU islands of this node are smaller than its wiring"))]
