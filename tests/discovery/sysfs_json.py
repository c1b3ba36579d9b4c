"""Lay out a real sysfs tree from a capture's ``sysfs.json`` (what a live host's /sys held).

Why a builder and not a hand-made tree: the capture is the ground truth of a VM guest
(every device right on ``pci0000:00``, NUMA node ``-1``, a virtio NIC whose netdev hangs
off a ``virtio2`` child rather than a PCI function). Each PCI device becomes the directory
its recorded ``realpath`` names, with the recorded files (a file recorded as
``!FileNotFoundError…`` is not created, as on the host), and ``sys/bus/pci/devices/<bdf>``
is a relative symlink to it, as the kernel lays it out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_FILES = ("class", "vendor", "device", "subsystem_vendor", "subsystem_device", "numa_node", "local_cpulist",
          "current_link_speed", "current_link_width", "max_link_speed", "max_link_width")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _symlink(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _under(root: Path, sys_path: str) -> Path:
    return root / sys_path.lstrip("/")


def build(root: Path, capture: Path) -> Path:
    """Lay out ``capture`` (a ``sysfs.json``) under ``root``; return ``root`` for ``sysfs.probe``."""
    doc: dict[str, Any] = json.loads(capture.read_text())
    for bdf, dev in doc["pci"].items():
        d = _under(root, dev["realpath"])
        d.mkdir(parents=True, exist_ok=True)
        for name in _FILES:
            value = dev.get(name)
            if isinstance(value, str) and not value.startswith("!"):
                _write(d / name, value)
        _symlink(root / "sys/bus/pci/devices" / bdf, d)
    for node, info in doc["numa"].items():
        base = root / "sys/devices/system/node" / node
        _write(base / "cpulist", info["cpulist"])
        _write(base / "distance", info["distance"])
        _write(base / "meminfo", info["meminfo_head"])
    for name, info in doc.get("infiniband", {}).items():  # the capture has none; kept for other captures
        ib = _under(root, info["device"]) / "infiniband" / name
        ib.mkdir(parents=True, exist_ok=True)
        _symlink(root / "sys/class/infiniband" / name, ib)
    for name, info in doc["net"].items():
        device = info.get("device")
        if device is None:  # lo, ifb0: virtual, no device link
            nd = root / "sys/devices/virtual/net" / name
            nd.mkdir(parents=True, exist_ok=True)
        else:
            parent = _under(root, device)
            nd = parent / "net" / name
            nd.mkdir(parents=True, exist_ok=True)
            _symlink(nd / "device", parent)
        _symlink(root / "sys/class/net" / name, nd)
    return root
