"""Build a real sysfs-shaped tree (directories, files, relative symlinks) for a modelled machine.

Why real symlinks: the sysfs source resolves ``/sys/bus/pci/devices/<bdf>`` with
``os.path.realpath`` to read the chain of bridges, exactly as on a host, so the fixture
must be what the kernel lays out:

* ``sys/devices/pci0000:15/0000:15:01.0/0000:16:00.0/.../0000:18:00.0/{vendor,device,class,numa_node,local_cpulist}``
  for every device *and* every bridge on the way;
* ``sys/bus/pci/devices/<bdf>`` → ``../../../devices/pci…/<bdf>`` (relative, as the kernel does);
* ``<pci dir>/infiniband/mlx5_0`` with ``device`` → ``../../``, and
  ``sys/class/infiniband/mlx5_0`` → ``../../devices/…/infiniband/mlx5_0``; the same for ``net``;
* ``sys/class/net/lo`` → ``../../devices/virtual/net/lo`` (no ``device`` link);
* ``sys/devices/system/node/nodeN/{cpulist,meminfo}``.
"""

from __future__ import annotations

import os
from pathlib import Path

from machines import Machine, PciFn


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


#: (max_link_speed, max_link_width) the kernel shows per device class: GPUs and ConnectX are Gen4/Gen5 x16
_LINK = {0x0302: ("16.0 GT/s PCIe", "16"), 0x0207: ("16.0 GT/s PCIe", "16"), 0x0604: ("16.0 GT/s PCIe", "16")}


def _ids(d: Path, ids: tuple[int, int, int], numa: int, cpus: str, link: tuple[str, str] | None = None) -> None:
    vendor, device, cls = ids
    _write(d / "vendor", f"0x{vendor:04x}")
    _write(d / "device", f"0x{device:04x}")
    _write(d / "class", f"0x{cls:06x}")
    _write(d / "numa_node", str(numa))
    _write(d / "local_cpulist", cpus)
    speed_width = link or _LINK.get(cls >> 8)
    if speed_width is not None:  # PCIe functions have these; legacy/virtual ones do not
        for prefix in ("current", "max"):
            _write(d / f"{prefix}_link_speed", speed_width[0])
            _write(d / f"{prefix}_link_width", speed_width[1])


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(os.path.relpath(target, link.parent))


def add_pci(root: Path, fn: PciFn, cpus: str, link: tuple[str, str] | None = None) -> Path:
    """Create one function and the bridges above it; return its directory."""
    devices = root / "sys" / "devices"
    parts = fn.path.split("/")
    d = devices / parts[0]
    d.mkdir(parents=True, exist_ok=True)
    for depth, part in enumerate(parts[1:]):
        d = d / part
        is_leaf = depth == len(parts) - 2
        if not (d / "class").exists():
            ids = fn.ids if is_leaf else (fn.bridge_ids[depth] if depth < len(fn.bridge_ids) else (0x8086, 0, 0x060400))
            _ids(d, ids, fn.numa, cpus, link if is_leaf else None)
        _link(root / "sys" / "bus" / "pci" / "devices" / part, d)
    return d


#: PCIe generation -> the kernel's link speed text (drivers/pci/pci-sysfs.c: pci_speed_string)
_SPEED = {1: "2.5 GT/s PCIe", 2: "5.0 GT/s PCIe", 3: "8.0 GT/s PCIe", 4: "16.0 GT/s PCIe", 5: "32.0 GT/s PCIe",
          6: "64.0 GT/s PCIe"}


def build(root: Path, machine: Machine) -> Path:
    """Lay out ``machine`` under ``root`` and return ``root`` (pass it to ``sysfs.probe``)."""
    for node, (cpus, mem) in machine.numa.items():
        _write(root / "sys/devices/system/node" / f"node{node}" / "cpulist", cpus)
        _write(
            root / "sys/devices/system/node" / f"node{node}" / "meminfo",
            f"Node {node} MemTotal:       {mem} kB\nNode {node} MemFree:        {mem // 2} kB",
        )
    dirs: dict[str, Path] = {}
    gpu_links = {g.bdf: g.pcie for g in machine.gpus}
    for fn in machine.pci:
        pcie = gpu_links.get(fn.bdf)  # the GPU's link as NVML reports it: (curr gen, max gen, curr width, max width)
        link = None if pcie is None else (_SPEED[pcie[1]], str(pcie[3]))
        dirs[fn.bdf] = add_pci(root, fn, machine.numa[fn.numa][0], link)
        if pcie is not None:
            _write(dirs[fn.bdf] / "current_link_speed", _SPEED[pcie[0]])
            _write(dirs[fn.bdf] / "current_link_width", str(pcie[2]))
    for nic in machine.nics:
        pci_dir = dirs[nic.bdf]
        if nic.rdma:
            ib = pci_dir / "infiniband" / nic.name
            ib.mkdir(parents=True, exist_ok=True)
            _link(ib / "device", pci_dir)
            _link(root / "sys/class/infiniband" / nic.name, ib)
            active = nic.ib_rate is not None
            _write(ib / "ports/1/state", "4: ACTIVE" if active else "1: DOWN")
            _write(ib / "ports/1/rate", nic.ib_rate or "10 Gb/sec (4X SDR)")  # a down port still shows a rate
        for netdev in nic.netdevs:
            nd = pci_dir / "net" / netdev
            nd.mkdir(parents=True, exist_ok=True)
            _link(nd / "device", pci_dir)
            _link(root / "sys/class/net" / netdev, nd)
            if nic.speed is not None:
                _write(nd / "speed", nic.speed)
    lo = root / "sys/devices/virtual/net/lo"
    lo.mkdir(parents=True, exist_ok=True)
    _link(root / "sys/class/net/lo", lo)
    return root


def move_device(root: Path, bdf: str, new_parent_path: str) -> None:
    """Re-home a device under another bridge chain (a card moved to another slot, a BIOS change).

    ``new_parent_path`` is relative to ``sys/devices`` (e.g. ``pci0000:37/0000:37:01.0``).
    The old directory is renamed and the ``bus/pci/devices`` link re-pointed, like a
    re-enumeration would.
    """
    link = root / "sys/bus/pci/devices" / bdf
    old = Path(os.path.realpath(link))
    new_parent = root / "sys/devices" / new_parent_path
    new_parent.mkdir(parents=True, exist_ok=True)
    new = new_parent / bdf
    old.rename(new)
    link.unlink()
    _link(link, new)
