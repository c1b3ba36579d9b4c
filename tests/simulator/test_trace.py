"""Reading openb-format CSVs (hand-made here: the real trace is research-use only) and FGD's replay."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from simulator import trace
from simulator.errors import TraceError

POD_HEADER = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
              "creation_time,deletion_time,scheduled_time")
PODS = f"""{POD_HEADER}
openb-pod-0002,12000,24576,1,1000,,LS,Running,30,900,30
openb-pod-0000,6000,12288,1,460,,LS,Running,10,500,10
openb-pod-0001,88000,327680,8,1000,V100M32|G3,LS,Running,20,20,20
openb-pod-0003,4000,8192,0,0,,BE,Pending,40,,
"""
NODES = """sn,cpu_milli,memory_mib,gpu,model
openb-node-0000,64000,262144,2,P100
openb-node-0001,96000,393216,8,G2
openb-node-0002,32000,65536,0,
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_pods_are_read_with_kinds_specs_and_times(tmp_path: Path) -> None:
    pods = trace.read_pods(_write(tmp_path, "p.csv", PODS))
    assert [p.name for p in pods] == ["openb-pod-0002", "openb-pod-0000", "openb-pod-0001", "openb-pod-0003"]
    share = pods[1]
    assert (share.num_gpu, share.gpu_milli, share.creation, share.deletion) == (1, 460, 10.0, 500.0)
    assert pods[2].gpu_spec == ("V100M32", "G3")
    assert pods[3].deletion is None
    assert [trace.pod_kind(p.num_gpu, p.gpu_milli) for p in pods] == ["1gpu", "share", "8gpu", "cpu"]


def test_the_five_column_multigpu_format_is_read(tmp_path: Path) -> None:
    text = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\nopenb-pod-0000,12000,16384,4,1000\n"
    (p,) = trace.read_pods(_write(tmp_path, "m.csv", text))
    assert (p.num_gpu, p.gpu_spec, p.creation) == (4, (), None)


def test_nodes_are_read(tmp_path: Path) -> None:
    nodes = trace.read_nodes(_write(tmp_path, "n.csv", NODES))
    assert [(n.name, n.gpus, n.model, n.cpu_milli) for n in nodes] == [
        ("openb-node-0000", 2, "P100", 64000), ("openb-node-0001", 8, "G2", 96000), ("openb-node-0002", 0, "", 32000)]


@pytest.mark.parametrize(("row", "line", "needle"), [
    ("a,1000,1024,2,500", 2, "whole GPUs"),
    ("a,1000,1024,1,0", 2, "num_gpu=1 with gpu_milli=0"),
    ("a,1000,1024,0,300", 2, "num_gpu=0 with gpu_milli=300"),
    ("a,1000,1024,1,1001", 2, "gpu_milli=1001 outside"),
    ("a,-5,1024,0,0", 2, "cpu_milli=-5 outside"),
    ("a,lots,1024,0,0", 2, "not an integer"),
    ("a,1000,1024,0,0,extra", 2, "more cells"),
])
def test_bad_pod_rows_name_the_line(tmp_path: Path, row: str, line: int, needle: str) -> None:
    f = _write(tmp_path, "bad.csv", f"name,cpu_milli,memory_mib,num_gpu,gpu_milli\n{row}\n")
    with pytest.raises(TraceError, match=needle) as err:
        trace.read_pods(f)
    assert err.value.line == line and err.value.path == str(f)


def test_missing_columns_and_repeated_nodes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="missing column"):
        trace.read_pods(_write(tmp_path, "p.csv", "name,cpu_milli\na,1\n"))
    with pytest.raises(TraceError, match="repeated"):
        trace.read_nodes(_write(tmp_path, "n.csv", "sn,cpu_milli,memory_mib,gpu,model\na,1,1,1,T4\na,1,1,1,T4\n"))
    with pytest.raises(TraceError, match="no model"):
        trace.read_nodes(_write(tmp_path, "n2.csv", "sn,cpu_milli,memory_mib,gpu,model\na,1,1,2,\n"))
    with pytest.raises(TraceError, match="cannot read"):
        trace.read_pods(tmp_path / "absent.csv")


def test_oversized_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "_MAX_BYTES", 100)
    with pytest.raises(TraceError, match="more than the 100 allowed"):
        trace.read_pods(_write(tmp_path, "p.csv", PODS))


def test_pod_list_names() -> None:
    assert trace.pod_list_path("/d", "default") == Path("/d/openb_pod_list_default.csv")
    assert trace.pod_list_path("/d", "openb_pod_list_multigpu50.csv") == Path("/d/openb_pod_list_multigpu50.csv")


def test_fgd_replay_shuffles_then_tunes_up(tmp_path: Path) -> None:
    pods = trace.read_pods(_write(tmp_path, "p.csv", PODS))
    # GPU request of the originals: 1000 + 460 + 8000 + 0 = 9460 milli; capacity 10 GPUs, tune 1.3 -> 13000
    out = trace.fgd_workload(pods, 10_000, seed=42)
    originals = out[:4]
    assert sorted(p.name for p in originals) == sorted(p.name for p in pods)
    tuned = out[4:]
    assert all("-tuned-" in p.name for p in tuned)
    assert [p.arrival for p in out] == [float(i) for i in range(len(out))]
    # FGD adds a draw while total + its per-GPU milli <= target, so the total may pass the target by < 8 GPUs
    total = sum(p.total_milli for p in out)
    assert total - max(p.total_milli for p in out) <= 13_000
    assert trace.fgd_workload(pods, 10_000, seed=42) == out  # seeded
    assert trace.fgd_workload(pods, 10_000, seed=43) != out


def test_fgd_stop_rule_uses_the_per_gpu_share_of_the_draw() -> None:
    # One 8-GPU pod (8000 milli), capacity 10 GPUs, target 13000: FGD's test is 8000 + 1000 <= 13000,
    # so a second 8-GPU pod is added (16000), then 16000 + 1000 > 13000 stops. Any seed: one pod to draw.
    p = trace.TracePod("big", 1000, 1024, 8, 1000, (), None, None)
    out = trace.fgd_workload([p], 10_000, seed=1)
    assert [x.name for x in out] == ["big", "big-tuned-0"]


def test_fgd_replay_tunes_down_when_the_list_is_too_big(tmp_path: Path) -> None:
    pods = trace.read_pods(_write(tmp_path, "p.csv", PODS))
    out = trace.fgd_workload(pods, 4_000, seed=7)  # target 5200 < 9460: drop random pods until at or under it
    assert sum(p.total_milli for p in out) <= 5200
    assert all("-tuned-" not in p.name for p in out)


def test_timed_workload_orders_by_creation(tmp_path: Path) -> None:
    pods = trace.read_pods(_write(tmp_path, "p.csv", PODS))
    out = trace.timed_workload(pods)
    assert [(p.name, p.arrival, p.departure) for p in out] == [
        ("openb-pod-0000", 10.0, 500.0),
        ("openb-pod-0001", 20.0, None),  # deleted when created: stays (no zero-length life)
        ("openb-pod-0002", 30.0, 900.0),
        ("openb-pod-0003", 40.0, None),
    ]


def test_whole_gpus_only_rounds_shares_up(tmp_path: Path) -> None:
    pods = trace.whole_gpus_only(trace.read_pods(_write(tmp_path, "p.csv", PODS)))
    assert [(p.num_gpu, p.gpu_milli) for p in pods] == [(1, 1000), (1, 1000), (8, 1000), (0, 0)]


_CELL = st.one_of(st.integers(-5, 2000).map(str), st.sampled_from(["", "x", "1.5", "G2|T4", "1e3", " 7 "]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_CELL, min_size=3, max_size=7), max_size=6), st.binary(max_size=40))
@example([], b"\r\x00")  # a NUL byte: the csv module's own csv.Error must become a TraceError
def test_any_pod_list_is_read_or_refused_with_a_trace_error(rows: list[list[str]], noise: bytes) -> None:
    import tempfile

    text = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n" + "".join(",".join(r) + "\n" for r in rows)
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "p.csv"
        f.write_bytes(text.encode() + noise)
        try:
            pods = trace.read_pods(f)
        except TraceError as err:
            assert err.path == str(f)
            return
    for p in pods:  # what is accepted is consistent
        assert p.cpu_milli >= 0 and p.memory_mib >= 0 and 0 <= p.gpu_milli <= 1000
        assert (p.num_gpu == 0) == (p.gpu_milli == 0) and (p.num_gpu <= 1 or p.gpu_milli == 1000)


def test_the_trace_is_found_by_env_then_next_to_the_repository(tmp_path: Path) -> None:
    """No machine path in the product: $GPUTOPO_TRACE_DIR, else ../shared relative to the repository root."""
    from simulator.trace import NODE_LIST, SHARED_TRACE_DIR, TRACE_DIR_ENV, find_trace_dir

    (tmp_path / NODE_LIST).write_text("sn,cpu_milli,memory_mib,num_gpu,gpu_model\n")
    assert find_trace_dir({TRACE_DIR_ENV: str(tmp_path)}) == tmp_path
    shared = Path(__file__).resolve().parents[2] / SHARED_TRACE_DIR
    expected = shared if (shared / NODE_LIST).is_file() else None
    assert find_trace_dir({TRACE_DIR_ENV: str(tmp_path / "absent")}) == expected
    assert find_trace_dir({}) == expected
    assert not Path(SHARED_TRACE_DIR).is_absolute()
