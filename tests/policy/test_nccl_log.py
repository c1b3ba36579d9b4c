"""The nccl-tests / NCCL INFO reader on real published logs (tests/fixtures/nccl-logs/README.md).

Every expected value below was read off the log text by hand: rank lines, the row where busbw
peaks, the ``# Avg bus bandwidth`` line, the ``via …`` transports. Counts of ring connections
are distinct (host, source rank, destination rank) triples, counted in the excerpt.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pod_machines import corpus

from labeler.topology.errors import CodecError, NcclLogError
from policy.audit import nccl_audit
from policy.audit.nccl_log import Transport, parse

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "nccl-logs"


def _log(name: str) -> str:
    return (LOGS / name).read_text(encoding="utf-8")


def test_autodl_2080ti_all_sections() -> None:
    log = parse(_log("autodl-rtx2080ti-x2-pix-p2p-ns.log"))
    assert [s.test for s in log.sections] == ["all_reduce_perf", "all_gather_perf", "broadcast_perf", "reduce_perf",
                                              "reduce_perf", "alltoall_perf"]
    ar = log.sections[0]
    assert (ar.n_threads, ar.n_gpus) == (1, 2)
    assert [(r.rank, r.device, r.bus, r.host) for r in ar.ranks] == [
        (0, 0, "0000:b4:00", "autodl-container-xxxxx"), (1, 1, "0000:b5:00", "autodl-container-xxxxx")]
    assert ar.ranks[0].name == "NVIDIA GeForce RTX 2080 Ti"
    assert len(ar.rows) == 28  # 8 B .. 1 GiB in steps of 2
    first, last = ar.rows[0], ar.rows[-1]
    assert (first.size, first.count, first.dtype, first.redop, first.root) == (8, 2, "float", "sum", -1)
    assert first.out_of_place.time_us == 12.25 and first.in_place.time_us == 12.00
    assert (last.size, last.out_of_place.busbw, last.in_place.busbw) == (1073741824, 4.00, 4.00)
    assert ar.peak is not None and (ar.peak.size, ar.peak.busbw) == (33554432, 4.00)  # in-place 4.00 first
    assert ar.avg_busbw == 2.05774 and ar.out_of_bounds == 0 and ar.validation_ok is True
    # the one-GPU reduce_perf run: the in-place "bandwidth" of a no-op copy, and its absurd average
    solo = log.sections[4]
    assert solo.n_gpus == 1 and solo.avg_busbw == 202818.0 and solo.rows[-1].in_place.busbw == 5706839.35


def test_gcp_a3mega_two_hosts() -> None:
    log = parse(_log("gcp-a3mega-h100-2x8-allreduce.log"))
    (s,) = log.sections
    assert s.test == "all_reduce_perf"  # from the mpirun command quoted above the output
    assert s.hosts == ("ztan-mig-235z", "ztan-mig-gq73")
    assert [r.rank for r in s.ranks] == list(range(16))
    assert [r.device for r in s.ranks[8:]] == list(range(8)) and s.ranks[8].bus == "0000:04:00"
    assert len(s.rows) == 31 and s.rows[-1].size == 8589934592
    assert s.peak is not None and (s.peak.size, s.peak.busbw) == (8589934592, 338.82)
    assert s.avg_busbw == 70.742


def test_tinygrad_4090_rows_and_cut_row() -> None:
    log = parse(_log("tinygrad-ogkm-36-rtx4090-x4-p2p-cut.log"))
    (s,) = log.sections
    assert [r.bus for r in s.ranks] == ["0000:85:00", "0000:86:00", "0000:89:00", "0000:8d:00"]
    assert [r.size for r in s.rows] == [268435456, 536870912, 1073741824]
    assert s.peak is not None and s.peak.busbw == 25.95
    assert log.damaged_rows == 1  # "2147483648     53"


def test_old_bus_form_and_cut_header() -> None:
    log = parse(_log("nccl-1530-rtx4090-x8-header-cut.log"))
    (s,) = log.sections
    assert [r.bus for r in s.ranks] == ["0x16", "0x27", "0x38", "0x5a", "0x98", "0xa8", "0xb8", "0xd8"]
    assert s.hosts == ("gpu59",) and s.rows == [] and log.damaged_rows == 1


def test_mpirun_tags_and_quotes_are_stripped() -> None:
    log = parse(_log("aws-k8s-tester-503-p5-mpirun-tagged-cut.log"))
    (s,) = log.sections
    assert [r.size for r in s.rows] == [8, 16, 32]
    assert s.rows[2].out_of_place.time_us == 22.25 and s.rows[2].in_place.time_us == 13.34
    assert s.avg_busbw is None  # the quoted Avg line belongs to another run, before this table


def test_rank_tags_inside_rows() -> None:
    log = parse(_log("nccl-1453-h100-3x8-tagged-rows-cut.log"))
    (s,) = log.sections
    assert [r.size for r in s.rows] == [1 << k for k in range(20, 30)]
    assert s.peak is not None and (s.peak.size, s.peak.busbw) == (33554432, 29.50)
    assert log.damaged_rows == 2  # the fragment before and the cut row after


def test_ring_orders() -> None:
    log = parse(_log("nccl-1453-h100-3x8-ring-orders-cut.log"))
    assert [c for c, _ in log.rings] == [5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert log.rings[0][1] == (0, 7, 6, 13, 12, 11, 10, 9, 8, 15, 14, 21, 20, 19, 18, 17, 16, 23, 22, 5)


def test_old_ring_lines_p2p_ipc_and_sockets() -> None:
    log = parse(_log("nccl-398-v100-ec2-2x8-rings-socket.log"))
    assert len(log.hops) == 18
    net = [h for h in log.hops if h.transport is Transport.NET]
    assert [(h.host, h.src, h.dst, h.direction, h.detail) for h in net] == [
        ("ip-172-31-13-129", 15, 0, "send", "NET/Socket/0"), ("ip-172-31-0-112", 7, 8, "send", "NET/Socket/0")]
    first = log.hops[0]
    assert (first.channel, first.src, first.dst, first.src_bus, first.transport) == (0, 3, 2, "3", Transport.P2P)
    assert log.hops[-1].transport is Transport.OTHER  # "via P2" is cut


def test_shm_channels() -> None:
    log = parse(_log("nccl-tests-166-shm-channels.log"))
    assert len(log.hops) == 16 and {h.transport for h in log.hops} == {Transport.SHM}
    assert {h.host for h in log.hops} == {"ubuntu"}


def test_channel_lines_with_bus_ids() -> None:
    log = parse(_log("megatron-516-p2p-ipc-read-busids.log"))
    assert len(log.hops) == 10
    assert (log.hops[0].src_bus, log.hops[0].dst_bus, log.hops[0].detail) == ("201c0", "201d0", "P2P/IPC/read")


def test_env_network_version_and_warnings() -> None:
    log = parse(_log("nccl-tests-131-gtx1050ti-gtx950-p2p-disabled-cut.log"))
    assert log.nccl_version == "2.16.5+cuda11.8"
    assert log.env == {"NCCL_P2P_LEVEL": "LOC"}
    assert log.networks == ["Socket"]
    assert log.nics == {"Socket": {0: "eth0", 1: "virbr0"}}
    assert len(log.warnings) == 2 and log.warnings[0].startswith("Could not find a path for pattern 4")
    (s,) = log.sections
    assert [r.name for r in s.ranks] == ["NVIDIA GeForce GTX 1050 Ti", "NVIDIA GeForce GTX 950"]


def test_gdr_flag() -> None:
    log = parse(_log("nccl-1773-p2p-level-sys-channels-cut.log"))
    assert log.gdr is True and {h.detail for h in log.hops} == {"P2P/direct pointer"}


@pytest.mark.parametrize("text", ["", "hello\nworld\n", "GPU0 X NV4\n", "# just a comment\n"])
def test_not_a_log(text: str) -> None:
    with pytest.raises(NcclLogError):
        parse(text)


def test_limits() -> None:
    with pytest.raises(NcclLogError, match="binary"):
        parse("#  Rank  0 Pid 1 on h device  0 [0x00] X\x00")
    long_line = "8 2 float sum -1 " + "1.0 " * 10000
    log = parse(_log("tinygrad-ogkm-36-rtx4090-x4-p2p-cut.log") + long_line + "\n")
    assert log.long_lines == 1


# -- hostile input: a result or a CodecError, never anything else; and the analysis never crashes -----------------
_FIXTURES = sorted(p.name for p in LOGS.glob("*.log"))
_TOPO = corpus("027")


def _check(text: str) -> None:
    try:
        log = parse(text)
    except CodecError:
        return
    for topo in (None, _TOPO):
        runs, general = nccl_audit.analyse(log, topo)
        nccl_audit.to_dict(runs, general)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=2000))
def test_any_text(text: str) -> None:
    _check(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(_FIXTURES), data=st.data())
def test_damaged_real_logs(name: str, data: st.DataObject) -> None:
    lines = _log(name).splitlines(keepends=True)
    how = data.draw(st.sampled_from(["cut", "drop", "insert", "swap", "digits"]))
    if how == "cut":
        text = "".join(lines)
        text = text[: data.draw(st.integers(0, len(text)))]
    elif how == "drop":
        keep = data.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
        text = "".join(line for line, k in zip(lines, keep, strict=True) if k)
    elif how == "insert":
        at = data.draw(st.integers(0, len(lines)))
        junk = data.draw(st.text(max_size=300))
        text = "".join(lines[:at]) + junk + "".join(lines[at:])
    elif how == "swap":
        text = "".join(data.draw(st.permutations(lines)))
    else:  # long digit runs where numbers are
        text = "".join(lines).replace("0", data.draw(st.sampled_from(["0" * 40, "9" * 400, "-", "nan", "1e999"])))
    _check(text)
