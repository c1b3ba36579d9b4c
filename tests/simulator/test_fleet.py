"""Fleets from real topologies: bundled boards, the openb mapping, scenario files."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import fleet, trace
from simulator.errors import ScenarioError
from simulator.scenario import DEMO_SCENARIO, load_scenario, parse_memory_mib

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "topo-corpus"


def test_bundled_boards_are_byte_copies_of_the_corpus() -> None:
    boards = sorted(fleet.BOARDS_DIR.glob("*.txt"))
    assert len(boards) >= 7
    for b in boards:
        assert b.read_bytes() == (CORPUS / b.name).read_bytes(), b.name


def test_the_openb_mapping_points_at_boards_with_the_right_gpu_count() -> None:
    for (model, gpus), (file, reason) in fleet.OPENB_TOPOLOGIES.items():
        topo = fleet.load_topology(file, fleet.search_path())
        assert len(topo.gpus) == gpus, (model, file)
        assert reason


def _nodes(tmp_path: Path, rows: str) -> list[trace.TraceNode]:
    f = tmp_path / "n.csv"
    f.write_text("sn,cpu_milli,memory_mib,gpu,model\n" + rows)
    return trace.read_nodes(f)


def test_trace_fleet_keeps_cpu_and_memory_and_skips_cpu_only_nodes(tmp_path: Path) -> None:
    nodes = _nodes(tmp_path, "a,96000,393216,8,G2\nb,104000,524288,2,T4\nc,32000,65536,0,\n")
    out = fleet.trace_fleet(nodes, fleet.search_path())
    assert [(n.name, n.gpus, n.cpu_milli, n.memory_mib, n.model) for n in out] == [
        ("a", 8, 96000, 393216, "G2"), ("b", 2, 104000, 524288, "T4")]
    assert out[0].topo.source.startswith("027_")


def test_unmapped_models_and_wrong_gpu_counts_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no topology for H100 x8"):
        fleet.trace_fleet(_nodes(tmp_path, "a,1,1,8,H100\n"), fleet.search_path())
    with pytest.raises(ScenarioError, match="8 GPUs but topology"):
        fleet.trace_fleet(_nodes(tmp_path, "a,1,1,8,G2\n"), fleet.search_path(),
                          {("G2", 8): "044_della-2gpu-sys-2nics-tabs.txt"})
    with pytest.raises(ScenarioError, match="not found"):
        fleet.load_topology("nope.txt", fleet.search_path())


def test_a_fleet_map_file(tmp_path: Path) -> None:
    f = tmp_path / "map.yaml"
    f.write_text('"G2/8": 032_rtx4090x8-allsys-2nics-tabs.txt\n')
    assert fleet.load_fleet_map(f) == {("G2", 8): "032_rtx4090x8-allsys-2nics-tabs.txt"}
    f.write_text("G2: x.txt\n")
    with pytest.raises(ScenarioError, match="MODEL/GPUS"):
        fleet.load_fleet_map(f)


def test_user_topology_dirs_come_first(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("GPU0\tGPU1\nGPU0\t X \tNV4\nGPU1\tNV4\t X \n")
    topo = fleet.load_topology("mine.txt", fleet.search_path([tmp_path]))
    assert len(topo.gpus) == 2
    (tmp_path / "broken.txt").write_text("GPU0 GPU1\nGPU0 X\n")
    with pytest.raises(ScenarioError, match="not readable"):
        fleet.load_topology("broken.txt", fleet.search_path([tmp_path]))


def test_the_demo_scenario() -> None:
    sc = load_scenario(DEMO_SCENARIO, fleet.search_path())
    assert len(sc.nodes) == 112 and {n.gpus for n in sc.nodes} == {8}
    assert len({n.topo for n in sc.nodes}) == 7 and len({n.name for n in sc.nodes}) == 112
    assert sc.workload.jobs is not None and sc.workload.serve is not None


@pytest.mark.parametrize(("text", "needle"), [
    ("fleet: []\nworkload: {vllm: {}}\n", "fleet must be a non-empty list"),
    ("fleet: [{topology: 005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt, count: 0}]\nworkload: {vllm: {}}\n", "count"),
    ("fleet: [{topology: 005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt, memory: 12Q}]\nworkload: {vllm: {}}\n",
     "memory"),
    ("fleet: [{topology: 005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt}]\nworkload: {}\n", "needs pytorchjob"),
    ("fleet: [{topology: 005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt}]\nworkload: {vllm: {tp: {3: -1}}}\n", "tp"),
    ("fleet: [{topology: 005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt}]\n"
     "workload: {pytorchjob: {workers: [0]}}\n", "workers"),
])
def test_bad_scenarios_name_the_field(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioError, match=needle):
        load_scenario(f, fleet.search_path())


def test_memory_units() -> None:
    assert parse_memory_mib("512Gi", "x") == 524288
    assert parse_memory_mib("2Ti", "x") == 2097152
    assert parse_memory_mib(4096, "x") == 4096
