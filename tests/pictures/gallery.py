"""One picture per machine class of the corpus, committed under docs/pictures/ (SVG and PNG).

Why a table here: the README and docs/audit.md show these files, and the tests check that
the committed SVGs are exactly what the code draws today (so a layout change shows up as a
diff a reviewer looks at) and that each PNG decodes at the size of its scene.

Two entries are probed rather than read from text, so the picture shows what only a probe
knows (GPU model, PCIe link, NIC rates): the modelled 8x L40S server (tests/discovery/
machines.py, through the fake NVML, its sysfs tree and its `nvidia-smi` text) and the live
H200 capture (tests/fixtures/real-captures/h200-1gpu-vm, replayed).

Regenerate after a deliberate change, then look at every PNG::

    .venv/bin/python tests/pictures/gallery.py
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "topo-corpus"
OUT = ROOT / "docs" / "pictures"

if __name__ == "__main__":  # as a script: the test folders are not on sys.path (conftest puts them there)
    sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "discovery")]

from labeler.topology import report, smi_parser  # noqa: E402
from labeler.topology.findings import Finding  # noqa: E402
from labeler.topology.model import Topology  # noqa: E402


@dataclass(frozen=True)
class Entry:
    slug: str  # file stem under docs/pictures/
    title: str
    load: Callable[[], tuple[Topology, list[Finding]]]  # topology and the probe's own findings


def corpus(name: str) -> Callable[[], tuple[Topology, list[Finding]]]:
    def load() -> tuple[Topology, list[Finding]]:
        path = CORPUS / name
        return smi_parser.parse(path.read_text(), source=f"corpus {path.name}"), []

    return load


def l40s_probe() -> tuple[Topology, list[Finding]]:
    from discovery_support import lay_out, smi_text
    from fake_nvml import FakeNvml
    from machines import L40S_8X

    from labeler.discovery import local
    from labeler.discovery.smi import RunOutput

    def run(argv: Sequence[str], *, timeout: float) -> RunOutput:
        return RunOutput(0, smi_text(L40S_8X), "")

    with tempfile.TemporaryDirectory() as tmp:
        facts = local.probe_local(nvml_module=FakeNvml(L40S_8X), runner=run, sysfs_root=lay_out(Path(tmp), L40S_8X))
    topo = facts.topology
    return Topology(topo.gpus, topo.nics, topo.links, "probe of the modelled 8x L40S (fake NVML, sysfs, smi)",
                    topo.warnings, topo.p2p), local.render_report(facts)


def h200_probe() -> tuple[Topology, list[Finding]]:
    from recorded_nvml import RecordedNvml
    from sysfs_json import build

    from labeler.discovery import local
    from labeler.discovery.smi import RunOutput

    capture = ROOT / "tests" / "fixtures" / "real-captures" / "h200-1gpu-vm"
    text = (capture / "nvidia-smi-topo-m.txt").read_bytes().decode()

    def run(argv: Sequence[str], *, timeout: float) -> RunOutput:
        return RunOutput(0, text, "")

    nvml = RecordedNvml(capture / "nvml-raw.json", cpus=frozenset(range(16)), numa_nodes=frozenset({0}))
    with tempfile.TemporaryDirectory() as tmp:
        facts = local.probe_local(nvml_module=nvml, runner=run, sysfs_root=build(Path(tmp) / "root",
                                                                                  capture / "sysfs.json"))
    topo = facts.topology
    return Topology(topo.gpus, topo.nics, topo.links, "probe replayed from the live H200 capture",
                    topo.warnings, topo.p2p), local.render_report(facts)


GALLERY: tuple[Entry, ...] = (
    Entry("dgx1-v100", "DGX-1: 8× V100 SXM2, NVLink hybrid cube-mesh",
          corpus("005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt")),
    Entry("dgx-a100", "DGX A100: 8× A100 SXM4 on NVSwitch, 2× EPYC in NPS4",
          corpus("010_dgx-a100x8-nv12-10nics-pxb-nps4.txt")),
    Entry("hgx-h100", "HGX H100: 8× H100 SXM5 on NVSwitch, 4 dual-port NICs",
          corpus("051_h100x8-nv18-8nics-dualport-pix-pairs.txt")),
    Entry("hgx-h800", "HGX H800: 8× H800 on NVSwitch (NV8)",
          corpus("019_h800x8-nv8-2nics-fused-cpu-numa-affinity.txt")),
    Entry("gb200-tray", "GB200 compute tray: 4 GPUs on NVLink switches, 2 Grace CPUs",
          corpus("038_gb200-tray-4gpu-nv18-8nics-gpunumaid-numeric.txt")),
    Entry("gh200", "GH200 Grace Hopper: 1 GPU, BlueField-3 NICs",
          corpus("055_gh200-480gb-x1-4nics-bf3-gpunumaid-1.txt")),
    Entry("l40s-pcie-2socket", "8× L40S PCIe, 2 sockets, 4 PCIe switches (probed)", l40s_probe),
    Entry("rtx4090-allsys", "8× RTX 4090, every GPU pair SYS", corpus("032_rtx4090x8-allsys-2nics-tabs.txt")),
    Entry("vm-a10-flat", "VM: 4× A10, PCIe tree flattened to SYS on one NUMA node",
          corpus("048_a10x4-allsys-2nics-single-numa-vm.txt")),
    Entry("h200-capture", "H200 capture: 1 GPU in a Firecracker VM (probed)", h200_probe),
)


def picture_of(entry: Entry) -> tuple[Topology, list[Finding]]:
    """The entry's topology and every finding the audit would print for it."""
    topo, extra = entry.load()
    return topo, report.all_findings(topo, extra)


def main() -> int:
    from gputopo.png import render_png
    from labeler.topology import picture
    from labeler.topology.scene import to_svg

    OUT.mkdir(parents=True, exist_ok=True)
    for entry in GALLERY:
        topo, found = picture_of(entry)
        scene = picture.machine_scene(topo, title=entry.title, findings=found)
        (OUT / f"{entry.slug}.svg").write_text(to_svg(scene), encoding="utf-8")
        (OUT / f"{entry.slug}.png").write_bytes(render_png(scene))
        print(f"{entry.slug}: {scene.width:.0f}x{scene.height:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
