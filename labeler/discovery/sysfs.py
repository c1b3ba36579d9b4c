"""sysfs source: NUMA nodes, PCI devices, NICs, and PCIe levels from the PCIe tree alone.

Why read the tree ourselves: it is an independent cross-check of what NVML and
`nvidia-smi` claim (a BIOS that hides a switch, a GPU moved to another slot, a VM that
flattens everything), and it is the only source that places *NICs* when
`nvidia-smi` is absent. It needs no driver: the kernel lists the devices.

Everything is read under ``root`` (default ``/``), so tests build real directory
trees with real symlinks in a temporary directory.

How a level is derived (the `nvidia-smi topo -m` legend, and NCCL's ``paths.cc``):

* the resolved path of ``/sys/bus/pci/devices/<bdf>`` is the chain from the root
  complex down: ``/sys/devices/pci0000:17/0000:17:00.0/0000:18:00.0/0000:19:00.0/0000:1a:00.0``
  = host bridge ``pci0000:17`` → root port → switch upstream port → downstream port → device;
* a PCIe *switch* shows as two bridges (upstream port, then one downstream port per
  child). nvidia-smi counts a switch as *one* bridge, and NCCL likewise folds a switch's
  port pair into one node (``xml.cc`` walks up two levels at a time). So bridges are
  grouped into units: the root port alone, then (upstream, downstream) pairs;
* two devices below a common bridge: ``PIX`` when the path between them crosses one
  unit (same switch; or two functions of one card under one port), ``PXB`` when it
  crosses several (hierarchical switches, e.g. the two-level Broadcom PEX88096 of the
  DGX A100);
* no common bridge but the same root complex ``pciDDDD:BB`` → ``PHB``; different root
  complexes on one NUMA node → ``NODE``; on different NUMA nodes → ``SYS``.

Topology facts v2 from sysfs: each GPU's PCIe link (``current_link_speed``/``_width``,
``max_link_speed``/``_width``; the speed text is mapped to a generation by the PCIe
spec's transfer rates: 2.5, 5, 8, 16, 32, 64 GT/s = Gen1-6) and each NIC's link rate
(``/sys/class/infiniband/<dev>/ports/<n>/rate`` of an ACTIVE port, else
``/sys/class/net/<netdev>/speed`` in Mb/s; ``-1`` or no link = unknown).

Limit (documented, not guessed around): the port *type* is not in sysfs without reading
config space, so the (upstream, downstream) pairing assumes the standard layout below
a root port. Intel Xeon (Skylake and later) gives each x16 IIO stack its own root
complex, so two switches on one socket are ``NODE``; AMD EPYC puts several root ports
under one root complex per quadrant, which shows as ``PHB``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from labeler.discovery.facts import Finding, Severity
from labeler.topology.errors import SourceUnavailable
from labeler.topology.links import SELF, Link, LinkLevel
from labeler.topology.model import Gpu, Nic, PcieLink, Topology
from labeler.topology.serialize import parse_cpulist

__all__ = [
    "NVIDIA_VENDOR",
    "SOURCE",
    "NicInfo",
    "NumaNode",
    "PciDevice",
    "SysfsFacts",
    "is_nvidia_gpu",
    "link_generation",
    "pcie_level",
    "probe",
]

SOURCE = "sysfs"
NVIDIA_VENDOR = 0x10DE
_GPU_CLASSES = (0x0300, 0x0302)  # VGA-compatible controller, 3D controller
_BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_ROOT_COMPLEX = re.compile(r"^pci[0-9a-f]{4}:[0-9a-f]{2}$")


@dataclass(frozen=True, slots=True)
class PciDevice:
    bdf: str
    vendor: int | None
    device: int | None
    pci_class: int | None  # 24-bit: 0x030200
    numa_node: int | None  # None where the kernel says -1
    local_cpus: frozenset[int] | None
    root_complex: str | None  # "pci0000:17"
    chain: tuple[str, ...]  # BDFs below the root complex, ending with this device
    link: PcieLink | None = None  # from current_/max_link_speed and _width (None: not a PCIe function)

    @property
    def bridges(self) -> tuple[str, ...]:
        return self.chain[:-1]


@dataclass(frozen=True, slots=True)
class NumaNode:
    id: int
    cpus: frozenset[int]
    mem_total_kb: int | None


@dataclass(frozen=True, slots=True)
class NicInfo:
    name: str  # "mlx5_0" for RDMA devices, else the first netdev name
    bdf: str
    rdma: bool
    netdevs: tuple[str, ...] = ()
    rate_mbps: int | None = None  # active link rate, Mb/s (None: down or not reported)


@dataclass(frozen=True, slots=True)
class SysfsFacts:
    numa: tuple[NumaNode, ...]
    devices: dict[str, PciDevice]
    gpus: tuple[PciDevice, ...]  # NVIDIA GPUs in PCI bus order = default NVML/CUDA index order
    nics: tuple[NicInfo, ...]  # every NIC; the topology holds the RDMA ones
    topology: Topology
    findings: tuple[Finding, ...] = ()


def is_nvidia_gpu(dev: PciDevice) -> bool:
    """Vendor 0x10de, class 0x0300xx or 0x0302xx (NVSwitch 0x0680, HDMI audio 0x0403 are not)."""
    return dev.vendor == NVIDIA_VENDOR and dev.pci_class is not None and (dev.pci_class >> 8) in _GPU_CLASSES


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
        return None


def _hex(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _natural(name: str) -> tuple[object, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _chain(real: Path, sys_devices: Path) -> tuple[str | None, tuple[str, ...]]:
    try:
        parts = real.relative_to(sys_devices).parts
    except ValueError:
        return None, (real.name,)
    rc = next((p for p in parts if _ROOT_COMPLEX.match(p)), None)
    after = parts[parts.index(rc) + 1 :] if rc else parts
    return rc, tuple(p for p in after if _BDF.match(p))


_GT_S = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*GT/s")
#: PCIe transfer rate per lane (GT/s) → generation, from the PCIe base specifications
_GEN_OF_RATE = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6, 128.0: 7}
_WIDTHS = (1, 2, 4, 8, 12, 16, 32)


def link_generation(text: str | None) -> int | None:
    """The PCIe generation of a sysfs link speed (``"32.0 GT/s PCIe"`` → 5; ``"Unknown"`` → ``None``).

    >>> link_generation("16.0 GT/s PCIe"), link_generation("8 GT/s"), link_generation("Unknown")
    (4, 3, None)
    """
    m = _GT_S.match(text or "")
    return _GEN_OF_RATE.get(float(m.group(1))) if m else None


def _width(text: str | None) -> int | None:
    value = _int(text)
    return value if value in _WIDTHS else None  # 0 or 255 when the link is down / unknown


def _pcie_link(dev_dir: Path) -> PcieLink | None:
    link = PcieLink(
        gen=link_generation(_read(dev_dir / "current_link_speed")),
        width=_width(_read(dev_dir / "current_link_width")),
        max_gen=link_generation(_read(dev_dir / "max_link_speed")),
        max_width=_width(_read(dev_dir / "max_link_width")),
    )
    return link if link.known else None


def _read_device(root: Path, link: Path) -> PciDevice:
    real = Path(os.path.realpath(link))
    rc, chain = _chain(real, Path(os.path.realpath(root / "sys" / "devices")))
    numa = _int(_read(link / "numa_node"))
    cpus_text = _read(link / "local_cpulist")
    try:
        cpus = parse_cpulist(cpus_text) if cpus_text else None
    except ValueError:
        cpus = None  # damaged file: unknown rather than a crash of the whole probe
    return PciDevice(
        bdf=link.name,
        vendor=_hex(link / "vendor"),
        device=_hex(link / "device"),
        pci_class=_hex(link / "class"),
        numa_node=numa if numa is not None and numa >= 0 else None,
        local_cpus=cpus or None,
        root_complex=rc,
        chain=chain or (link.name,),
        link=_pcie_link(link),
    )


def _unit(bridges: tuple[str, ...], i: int) -> str:
    """Bridge i of a chain → the switch-like unit it belongs to (see module doc)."""
    if i == 0:
        return f"rp:{bridges[0]}"
    return bridges[i if i % 2 == 1 else i - 1]


def pcie_level(a: PciDevice, b: PciDevice, *, numa_nodes: int) -> LinkLevel | None:
    """The `nvidia-smi` level between two PCI devices from the tree alone (``None``: cannot tell)."""
    if a.bdf == b.bdf:
        return LinkLevel.SELF
    if a.root_complex is not None and a.root_complex == b.root_complex:
        ba, bb = a.bridges, b.bridges
        k = 0
        while k < min(len(ba), len(bb)) and ba[k] == bb[k]:
            k += 1
        if k == 0:
            return LinkLevel.PHB
        units = {_unit(ba, i) for i in range(k - 1, len(ba))} | {_unit(bb, i) for i in range(k - 1, len(bb))}
        return LinkLevel.PIX if len(units) <= 1 else LinkLevel.PXB
    if a.numa_node is not None and b.numa_node is not None:
        return LinkLevel.NODE if a.numa_node == b.numa_node else LinkLevel.SYS
    return LinkLevel.NODE if numa_nodes <= 1 else None


def _numa(root: Path) -> list[NumaNode]:
    base = root / "sys" / "devices" / "system" / "node"
    out: list[NumaNode] = []
    if not base.is_dir():
        return out
    for d in sorted(base.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        cpus = _read(d / "cpulist")
        mem = None
        for line in (_read(d / "meminfo") or "").splitlines():
            # "Node 0 MemTotal:       263842384 kB"
            if "MemTotal:" in line:
                mem = int(line.split("MemTotal:")[1].split()[0])
        out.append(NumaNode(int(d.name[4:]), parse_cpulist(cpus) if cpus else frozenset(), mem))
    return out


def _bdf_of(device_link: Path) -> str | None:
    name = Path(os.path.realpath(device_link)).name
    return name if _BDF.match(name) else None


_IB_RATE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*Gb/sec")


def _ib_rate_mbps(ib_dev: Path) -> int | None:
    """Rate of the first ACTIVE port of an RDMA device (``"400 Gb/sec (4X NDR)"`` → 400000)."""
    ports = ib_dev / "ports"
    for port in sorted(ports.iterdir(), key=lambda p: _natural(p.name)) if ports.is_dir() else []:
        state = _read(port / "state")
        if state is not None and "ACTIVE" not in state:
            continue  # a down port still reports a (default) rate
        m = _IB_RATE.match(_read(port / "rate") or "")
        if m:
            return round(float(m.group(1)) * 1000)
    return None


def _net_speed_mbps(root: Path, netdevs: tuple[str, ...]) -> int | None:
    """``/sys/class/net/<dev>/speed`` of the first netdev with a link (the kernel says -1 or fails otherwise)."""
    for name in netdevs:
        speed = _int(_read(root / "sys" / "class" / "net" / name / "speed"))
        if speed is not None and speed > 0:
            return speed
    return None


def _nics(root: Path) -> list[NicInfo]:
    netdevs: dict[str, list[str]] = {}
    net = root / "sys" / "class" / "net"
    for d in sorted(net.iterdir(), key=lambda p: _natural(p.name)) if net.is_dir() else []:
        bdf = _bdf_of(d / "device") if (d / "device").exists() else None
        if bdf:  # virtual interfaces (lo, bridges, veth) have no device link
            netdevs.setdefault(bdf, []).append(d.name)
    out: list[NicInfo] = []
    seen: set[str] = set()
    ib = root / "sys" / "class" / "infiniband"
    for d in sorted(ib.iterdir(), key=lambda p: _natural(p.name)) if ib.is_dir() else []:
        bdf = _bdf_of(d / "device")
        if bdf:
            nds = tuple(netdevs.get(bdf, ()))
            rate = _ib_rate_mbps(d)
            out.append(NicInfo(d.name, bdf, True, nds, rate if rate is not None else _net_speed_mbps(root, nds)))
            seen.add(bdf)
    for bdf, names in sorted(netdevs.items()):
        if bdf not in seen:
            out.append(NicInfo(names[0], bdf, False, tuple(names), _net_speed_mbps(root, tuple(names))))
    return out


def probe(root: str | os.PathLike[str] = "/") -> SysfsFacts:
    """Read the PCI tree, NUMA nodes and NICs under ``root``.

    Raises :class:`SourceUnavailable` when there is no ``sys/bus/pci/devices`` (not
    Linux, or sysfs not mounted into the container).
    """
    base = Path(root)
    pci = base / "sys" / "bus" / "pci" / "devices"
    if not pci.is_dir():
        raise SourceUnavailable(f"sysfs: {pci} is missing (is /sys mounted?)")
    devices = {p.name: _read_device(base, p) for p in sorted(pci.iterdir()) if _BDF.match(p.name)}
    numa = _numa(base)
    gpus = tuple(d for _, d in sorted(devices.items()) if is_nvidia_gpu(d))
    nics = _nics(base)
    rdma = [n for n in nics if n.rdma and n.bdf in devices]
    findings: list[Finding] = []
    if len(numa) > 1:
        for i, g in enumerate(gpus):
            if g.numa_node is None:
                findings.append(
                    Finding(Severity.INFO, "numa-unknown", f"GPU{i} ({g.bdf}): firmware reports NUMA node -1", i)
                )
    endpoints = list(gpus) + [devices[n.bdf] for n in rdma]
    rows: list[list[Link | None]] = []
    for a in endpoints:
        row: list[Link | None] = []
        for b in endpoints:
            if a is b:
                row.append(SELF)
                continue
            lvl = pcie_level(a, b, numa_nodes=len(numa))
            # Two ports of one NIC share a bdf prefix but are distinct functions; an
            # identical bdf can only come from a broken tree: leave it unknown.
            row.append(None if lvl is None or lvl is LinkLevel.SELF else Link(lvl))
        rows.append(row)
    topo = Topology.from_rows(
        [
            Gpu(
                index=i,
                bus_id=g.bdf,
                cpu_affinity=g.local_cpus,
                numa_affinity=frozenset({g.numa_node}) if g.numa_node is not None else None,
                pcie=g.link,
            )
            for i, g in enumerate(gpus)
        ],
        [Nic(column=f"NIC{i}", device=n.name, rate_mbps=n.rate_mbps) for i, n in enumerate(rdma)],
        rows,
        source=SOURCE,
    )
    return SysfsFacts(tuple(numa), devices, gpus, tuple(nics), topo, tuple(findings))
