"""The servers the discovery tests model: one description feeds the fake NVML, the sysfs tree.

Why one description per machine, written out by hand: the fake NVML table (what the
driver would answer), the sysfs tree (what the kernel would show) and the
`nvidia-smi topo -m` text (a fixture file) must describe the *same* box, yet be
independent enough that comparing them tests something. So the NVML pair levels are
literal matrices here, the PCIe tree is a list of literal sysfs paths, and the smi text
is a separate file; nothing derives one from another.

**8x L40S, 2 sockets (Intel Xeon Sapphire Rapids), 4 PCIe switches.** Decision, the
common real layout (Supermicro SYS-421GE / Dell XE-class 8-GPU PCIe servers): each
Broadcom PEX89104 switch hangs off its *own* x16 root port, and on Xeon every x16 IIO
stack is its own PCIe root complex (``pci0000:15``, ``pci0000:37`` on socket 0). Each
switch holds 2 GPUs + 1 ConnectX-7. Hence GPU pairs in one switch are ``PIX``, GPUs in
the other switch of the same socket are ``NODE`` (not ``PHB``: no shared host bridge),
across sockets ``SYS``. An on-board Intel X710 (plain Ethernet, no RDMA) and the BMC's
ASPEED VGA are present and must not show up as NIC column or GPU.

**DGX A100** (the real corpus file ``010_dgx-a100x8-nv12-10nics-pxb-nps4.txt``): 2x EPYC
7742 in NPS4 (8 NUMA nodes, GPUs on nodes 3,1,7,5), 4 PCIe complexes, each a two-level
Broadcom PEX88096 hierarchy (a top switch whose downstream ports each lead to a sub-switch
with one device): 2 GPUs + 2 ConnectX-6 per complex, so every GPU↔NIC and NIC↔NIC path in
a complex crosses several bridges: ``PXB`` as in the corpus. A dual-port storage ConnectX-6
(``mlx5_8``/``mlx5_9``, two functions of one card) sits on NUMA node 6 with no GPU: ``PIX``
between its ports, ``SYS`` to every GPU. 6 NVSwitches (class 0x0680, not GPUs); each GPU
has 12 NVLinks, 2 to each switch: ``NV12`` all-to-all. Bus ids of GPUs are the real
DGX A100 ones; bridge bus numbers are plausible, not copied. The GPU↔GPU *PCIe* level
(hidden behind NV12 in the corpus) is modelled as PXB inside a complex, SYS across.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

__all__ = ["DGX_A100", "L40S_8X", "MACHINES", "GpuRow", "Machine", "NicRow", "PciFn", "with_gpu"]

_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")

# (vendor, device, class) of the parts used below
INTEL_RP = (0x8086, 0x352A, 0x060400)
AMD_RP = (0x1022, 0x1483, 0x060400)
PEX89104 = (0x1000, 0xC030, 0x060400)
PEX88096 = (0x1000, 0xC010, 0x060400)
L40S = (0x10DE, 0x26B9, 0x030200)
A100_SXM4 = (0x10DE, 0x20B2, 0x030200)
NVSWITCH = (0x10DE, 0x1AF1, 0x068000)
CX7 = (0x15B3, 0x1021, 0x020700)
CX6 = (0x15B3, 0x101B, 0x020700)
X710 = (0x8086, 0x1572, 0x020000)
ASPEED = (0x1A03, 0x2000, 0x030000)


@dataclass(frozen=True)
class PciFn:
    """One PCI function: its full sysfs path below ``/sys/devices`` and its ids."""

    path: str
    ids: tuple[int, int, int]
    numa: int
    bridge_ids: tuple[tuple[int, int, int], ...] = ()  # ids of the bridges on the path, top down

    @property
    def bdf(self) -> str:
        return self.path.rsplit("/", 1)[1]


@dataclass(frozen=True)
class GpuRow:
    """What NVML says about one GPU."""

    bdf: str
    name: str
    numa: int
    cpus: str
    pcie: tuple[int, int, int, int] = (4, 4, 16, 16)  # curr gen, max gen, curr width, max width
    nvlinks: tuple[str, ...] = ()  # remote bdf per NVLink, "sw:" prefix for an NVSwitch
    nvlinks_down: tuple[int, ...] = ()  # link numbers the GPU has but that are inactive (state DISABLED)
    mig: tuple[int, int] | None = None  # (current, pending); None: not MIG-capable
    mig_uuids: tuple[str, ...] = ()
    arch: str | None = None  # pynvml constant name suffix: "AMPERE" -> NVML_DEVICE_ARCH_AMPERE; None: not supported
    cc: tuple[int, int] | None = None  # CUDA compute capability; None: not supported
    nvlink_version: str | None = None  # "3_0" -> NVML_NVLINK_VERSION_3_0 for every active link

    @property
    def uuid(self) -> str:
        return f"GPU-{uuid.uuid5(_NS, self.name + self.bdf)}"


@dataclass(frozen=True)
class NicRow:
    name: str
    bdf: str
    netdevs: tuple[str, ...]
    rdma: bool = True
    ib_rate: str | None = None  # /sys/class/infiniband/<name>/ports/1/rate, e.g. "200 Gb/sec (4X HDR)"
    speed: str | None = None  # /sys/class/net/<netdev>/speed in Mb/s ("-1" when the link is down)


@dataclass(frozen=True)
class Machine:
    name: str
    gpus: tuple[GpuRow, ...]
    nics: tuple[NicRow, ...]
    numa: dict[int, tuple[str, int]]  # node -> (cpulist, MemTotal kB)
    pci: tuple[PciFn, ...]  # every endpoint function; bridges are implied by the paths
    gpu_levels: tuple[str, ...]  # NVML common-ancestor level per GPU pair, rows of tokens
    smi_fixture: str
    p2p: dict[tuple[int, int], str] = field(default_factory=dict)  # overrides; default OK
    nvlink_p2p: str = "NS"

    def level(self, a: int, b: int) -> str:
        return self.gpu_levels[a].split()[b]


def _path(rc: str, *bdfs: str) -> str:
    return "/".join((rc, *bdfs))


# --------------------------------------------------------------------------- 8x L40S
_S0 = "0-47,96-143"
_S1 = "48-95,144-191"


def _l40s_switch(rc: str, rp: str, us: str, ds_bus: str, devs: tuple[str, str, str], numa: int) -> list[PciFn]:
    """Root port -> PEX89104 (upstream port, 3 downstream ports) -> GPU, GPU, ConnectX-7."""
    out = []
    for port, (dev, ids) in enumerate(zip(devs, (L40S, L40S, CX7), strict=True)):
        ds = f"0000:{ds_bus}:{port:02x}.0"
        out.append(PciFn(_path(rc, rp, us, ds, dev), ids, numa, (INTEL_RP, PEX89104, PEX89104)))
    return out


_L40S_PCI = (
    *_l40s_switch(
        "pci0000:15", "0000:15:01.0", "0000:16:00.0", "17", ("0000:18:00.0", "0000:19:00.0", "0000:1a:00.0"), 0
    ),
    *_l40s_switch(
        "pci0000:37", "0000:37:01.0", "0000:38:00.0", "39", ("0000:3a:00.0", "0000:3b:00.0", "0000:3c:00.0"), 0
    ),
    *_l40s_switch(
        "pci0000:97", "0000:97:01.0", "0000:98:00.0", "99", ("0000:9a:00.0", "0000:9b:00.0", "0000:9c:00.0"), 1
    ),
    *_l40s_switch(
        "pci0000:b7", "0000:b7:01.0", "0000:b8:00.0", "b9", ("0000:ba:00.0", "0000:bb:00.0", "0000:bc:00.0"), 1
    ),
    PciFn(_path("pci0000:00", "0000:00:1c.0", "0000:01:00.0"), X710, 0, (INTEL_RP,)),
    PciFn(
        _path("pci0000:00", "0000:00:1c.5", "0000:02:00.0", "0000:03:00.0"),
        ASPEED,
        0,
        (INTEL_RP, (0x1A03, 0x1150, 0x060400)),
    ),
)

L40S_8X = Machine(
    name="l40s-8x-2socket-4switch",
    gpus=tuple(
        GpuRow(bdf, "NVIDIA L40S", 0 if i < 4 else 1, _S0 if i < 4 else _S1, arch="ADA", cc=(8, 9))
        for i, bdf in enumerate(
            (
                "0000:18:00.0",
                "0000:19:00.0",
                "0000:3a:00.0",
                "0000:3b:00.0",
                "0000:9a:00.0",
                "0000:9b:00.0",
                "0000:ba:00.0",
                "0000:bb:00.0",
            )
        )
    ),
    nics=(
        # ConnectX-7 in Ethernet (RoCE) mode: an RDMA device whose port rate is the 400GbE link
        NicRow("mlx5_0", "0000:1a:00.0", ("ens1np0",), ib_rate="400 Gb/sec (4X NDR)", speed="400000"),
        NicRow("mlx5_1", "0000:3c:00.0", ("ens2np0",), ib_rate="400 Gb/sec (4X NDR)", speed="400000"),
        NicRow("mlx5_2", "0000:9c:00.0", ("ens3np0",), ib_rate="400 Gb/sec (4X NDR)", speed="400000"),
        NicRow("mlx5_3", "0000:bc:00.0", ("ens4np0",), ib_rate="400 Gb/sec (4X NDR)", speed="400000"),
        NicRow("eno1", "0000:01:00.0", ("eno1",), rdma=False, speed="10000"),
    ),
    numa={0: (_S0, 527939620), 1: (_S1, 528333968)},
    pci=_L40S_PCI,
    gpu_levels=(
        "X    PIX  NODE NODE SYS  SYS  SYS  SYS",
        "PIX  X    NODE NODE SYS  SYS  SYS  SYS",
        "NODE NODE X    PIX  SYS  SYS  SYS  SYS",
        "NODE NODE PIX  X    SYS  SYS  SYS  SYS",
        "SYS  SYS  SYS  SYS  X    PIX  NODE NODE",
        "SYS  SYS  SYS  SYS  PIX  X    NODE NODE",
        "SYS  SYS  SYS  SYS  NODE NODE X    PIX",
        "SYS  SYS  SYS  SYS  NODE NODE PIX  X",
    ),
    smi_fixture="l40s-8x-2socket-4switch.txt",
)


# --------------------------------------------------------------------------- DGX A100
def _numa_cpus(n: int) -> str:
    return f"{16 * n}-{16 * n + 15},{128 + 16 * n}-{128 + 16 * n + 15}"


_DGX_NUMA_OF_COMPLEX = {"00": 3, "40": 1, "80": 7, "b0": 5}
# complex base bus -> devices in top-switch port order: (bdf, ids)
_DGX_COMPLEX = {
    "00": (("0000:07:00.0", A100_SXM4), ("0000:0c:00.0", CX6), ("0000:0f:00.0", A100_SXM4), ("0000:12:00.0", CX6)),
    "40": (("0000:47:00.0", A100_SXM4), ("0000:4b:00.0", CX6), ("0000:4e:00.0", A100_SXM4), ("0000:54:00.0", CX6)),
    "80": (("0000:87:00.0", A100_SXM4), ("0000:8d:00.0", CX6), ("0000:90:00.0", A100_SXM4), ("0000:94:00.0", CX6)),
    "b0": (("0000:b7:00.0", A100_SXM4), ("0000:ba:00.0", CX6), ("0000:bd:00.0", A100_SXM4), ("0000:c0:00.0", CX6)),
}


def _dgx_complex(base: str) -> list[PciFn]:
    """Root port -> PEX88096 top level -> 4 sub-switches, one device each (the two-level PEX)."""
    b = int(base, 16)
    rc, rp, top_us = f"pci0000:{base}", f"0000:{base}:01.1", f"0000:{b + 1:02x}:00.0"
    out = []
    for port, (dev, ids) in enumerate(_DGX_COMPLEX[base]):
        bus = int(dev[5:7], 16)
        top_ds = f"0000:{b + 2:02x}:{4 * port:02x}.0"
        sub_us, sub_ds = f"0000:{bus - 2:02x}:00.0", f"0000:{bus - 1:02x}:00.0"
        out.append(
            PciFn(
                _path(rc, rp, top_us, top_ds, sub_us, sub_ds, dev),
                ids,
                _DGX_NUMA_OF_COMPLEX[base],
                (AMD_RP, PEX88096, PEX88096, PEX88096, PEX88096),
            )
        )
    return out


_SWITCHES = tuple(f"0000:{0xCB + k:02x}:00.0" for k in range(6))
_DGX_PCI = (
    *(fn for base in _DGX_COMPLEX for fn in _dgx_complex(base)),
    # storage NIC: one dual-port ConnectX-6 card, two functions under one root port
    PciFn(_path("pci0000:e0", "0000:e0:03.1", "0000:e1:00.0"), CX6, 6, (AMD_RP,)),
    PciFn(_path("pci0000:e0", "0000:e0:03.1", "0000:e1:00.1"), CX6, 6, (AMD_RP,)),
    # NVSwitches: NVIDIA, but class 0x0680 (bridge, other) -- never GPUs
    *(
        PciFn(
            _path("pci0000:c8", "0000:c8:01.1", "0000:c9:00.0", f"0000:ca:{k:02x}.0", sw),
            NVSWITCH,
            4,
            (AMD_RP, PEX88096, PEX88096),
        )
        for k, sw in enumerate(_SWITCHES)
    ),
)
_DGX_GPU_BDFS = tuple(dev for base in _DGX_COMPLEX for dev, ids in _DGX_COMPLEX[base] if ids == A100_SXM4)
_DGX_NUMA_OF = {dev: _DGX_NUMA_OF_COMPLEX[base] for base in _DGX_COMPLEX for dev, _ in _DGX_COMPLEX[base]}
_DGX_NIC_BDFS = tuple(dev for base in _DGX_COMPLEX for dev, ids in _DGX_COMPLEX[base] if ids == CX6)


def _dgx_gpu_levels() -> tuple[str, ...]:
    rows = []
    for a in range(8):
        rows.append(" ".join("X" if a == b else ("PXB" if a // 2 == b // 2 else "SYS") for b in range(8)))
    return tuple(rows)


DGX_A100 = Machine(
    name="dgx-a100",
    gpus=tuple(
        GpuRow(
            bdf,
            "NVIDIA A100-SXM4-80GB",
            _DGX_NUMA_OF[bdf],
            _numa_cpus(_DGX_NUMA_OF[bdf]),
            pcie=(4, 4, 16, 16),
            nvlinks=tuple(f"sw:{_SWITCHES[link // 2]}" for link in range(12)),
            mig=(0, 0),
            arch="AMPERE",
            cc=(8, 0),
            nvlink_version="3_0",
        )
        for bdf in _DGX_GPU_BDFS
    ),
    nics=(
        # compute fabric: HDR InfiniBand; mlx5_7's port is down (no rate is taken from a down port)
        *(
            NicRow(f"mlx5_{i}", bdf, (f"ibp{int(bdf[5:7], 16)}s0",),
                   ib_rate="200 Gb/sec (4X HDR)" if i != 7 else None)
            for i, bdf in enumerate(_DGX_NIC_BDFS)
        ),
        # storage: dual-port 100GbE ConnectX-6 (RoCE); port 2 has no link (speed -1)
        NicRow("mlx5_8", "0000:e1:00.0", ("enp225s0f0",), speed="100000"),
        NicRow("mlx5_9", "0000:e1:00.1", ("enp225s0f1",), speed="-1"),
    ),
    numa={n: (_numa_cpus(n), 131899148) for n in range(8)},
    pci=_DGX_PCI,
    gpu_levels=_dgx_gpu_levels(),
    smi_fixture="010_dgx-a100x8-nv12-10nics-pxb-nps4.txt",
    nvlink_p2p="OK",
)

MACHINES = {m.name: m for m in (L40S_8X, DGX_A100)}


def with_gpu(machine: Machine, index: int, **changes: object) -> Machine:
    """A variant of ``machine`` with one GPU row changed (downtrained link, MIG on...)."""
    gpus = list(machine.gpus)
    gpus[index] = replace(gpus[index], **changes)  # type: ignore[arg-type]
    return replace(machine, gpus=tuple(gpus))
