"""Measured vs expected on real logs, and the causes the log or the topology shows.

Expected values come from the bandwidth model (docs/bandwidth.md); the corpus text carries no
GPU facts, so they are its values for unknown facts.

- AutoDL 2x RTX 2080 Ti (corpus 049 is the same machine, from the same post): PIX, but the
  text does not say whether P2P works, so the model takes the worse case: through host memory,
  PCIe Gen3 x16 assumed (12 GB/s), both GPUs' streams on the switch's one uplink: 6 GB/s. The
  log peaks at 4.00 GB/s (67 %): below. The post's own `nvidia-smi topo -p2p p` says NS (P2P not
  supported), which the topology does not carry and the log (no NCCL INFO lines) does not show.
- GCP A3 Mega 2x8 H100: two hosts, so no expectation (network not modelled), but the intra-node
  bound over one host's 8 GPUs on an NV18 board (corpus 123, HGX H100 SXM5) is 18 links x 20.6
  (the slowest generation with 18 links, NVLink 4) = 370.8.
"""

from __future__ import annotations

from pathlib import Path

from pod_machines import corpus

from policy.audit.nccl_audit import Verdict, analyse, to_dict
from policy.audit.nccl_log import parse

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "nccl-logs"


def _parse(name: str):  # type: ignore[no-untyped-def]
    return parse((LOGS / name).read_text(encoding="utf-8"), source=name)


def _codes(findings: list) -> set[str]:  # type: ignore[type-arg]
    return {f.code for f in findings}


def test_autodl_below_with_its_topology() -> None:
    runs, general = analyse(_parse("autodl-rtx2080ti-x2-pix-p2p-ns.log"), corpus("049"))
    (run,) = runs  # only the all_reduce section
    assert run.test == "all_reduce_perf" and run.ranks == 2 and run.gpus == (0, 1)
    assert run.placement is not None and run.placement.bottleneck.token == "PIX"
    assert run.expected == 6.0 and run.peak_busbw == 4.00
    assert run.verdict is Verdict.BELOW and run.ratio is not None and abs(run.ratio - 4.0 / 6.0) < 1e-9
    assert "no-transport-lines" not in _codes(run.findings)  # asked for only when a run is far below
    assert "other-tests" in _codes(general)


def test_autodl_gpus_given_explicitly() -> None:
    runs, _ = analyse(_parse("autodl-rtx2080ti-x2-pix-p2p-ns.log"), corpus("049"), [1, 0])
    assert runs[0].gpus == (1, 0) and runs[0].mapping == "given with --gpus"


def test_without_topology_no_expectation() -> None:
    runs, _ = analyse(_parse("autodl-rtx2080ti-x2-pix-p2p-ns.log"))
    assert runs[0].verdict is Verdict.NO_EXPECTATION and runs[0].expected is None


def test_multi_host_gives_only_an_intra_node_bound() -> None:
    runs, _ = analyse(_parse("gcp-a3mega-h100-2x8-allreduce.log"), corpus("123"))
    (run,) = runs
    assert run.ranks == 16 and run.hosts == ("ztan-mig-235z", "ztan-mig-gq73") and run.gpus == tuple(range(8))
    assert run.expected is None and run.verdict is Verdict.NO_EXPECTATION
    assert "370.8 GB/s" in run.expected_note
    assert run.peak_busbw == 338.82


def test_cut_rank_list_is_recognised() -> None:
    runs, _ = analyse(_parse("nccl-tests-119-a100-3x8-ib-head-and-tail.log"))
    (run,) = runs
    # 95.75 / 49.96 = 1.9165 = 2(n-1)/n for n = 24 (the mpirun -np 24 above the output)
    assert run.ranks == 24 and run.peak_busbw == 96.69 and run.avg_busbw == 84.8558
    assert "ranks-cut" in _codes(run.findings) and "ratio-mismatch" not in _codes(run.findings)


def test_ranks_inferred_from_busbw_over_algbw() -> None:
    runs, _ = analyse(_parse("nccl-1453-h100-3x8-tagged-rows-cut.log"))
    assert runs[0].ranks == 24 and runs[0].peak_busbw == 29.5


def test_shm_means_no_p2p() -> None:
    runs, _ = analyse(_parse("nccl-tests-166-shm-channels.log"))
    (run,) = runs
    assert run.transports == {"SHM": 12}
    (shm,) = [f for f in run.findings if f.code == "no-p2p-shm"]
    assert shm.message.startswith("12 of 12 intra-node ring connections")


def test_p2p_disabled_by_environment() -> None:
    runs, _ = analyse(_parse("nccl-tests-131-gtx1050ti-gtx950-p2p-disabled-cut.log"))
    (run,) = runs
    assert "p2p-disabled-env" in _codes(run.findings) and run.verdict is Verdict.NO_RESULTS
    assert "net-socket" not in _codes(run.findings)  # one host: the socket transport is never used


def test_sockets_between_hosts_and_nic_locality() -> None:
    # With DGX-1 V100's matrix (corpus 005): GPU7, which the first host's log shows sending over the
    # network, has mlx5_0 only at SYS, so it has no NIC within its PCIe switch.
    runs, _ = analyse(_parse("nccl-398-v100-ec2-2x8-rings-socket.log"), corpus("005"))
    (run,) = runs
    assert run.hosts == ("ip-172-31-0-112", "ip-172-31-13-129")
    assert run.transports == {"NET": 2, "P2P": 11, "other": 1}
    assert {"net-socket", "nic-not-local"} <= _codes(run.findings)
    (nic,) = [f for f in run.findings if f.code == "nic-not-local"]
    assert nic.message.startswith("GPU7: ")


def test_socket_crossing_and_a_tighter_set() -> None:
    # the tinygrad 4x RTX 4090 log on 027's matrix with --gpus 0,1,4,5: two NV12 pairs joined across sockets
    runs, _ = analyse(_parse("tinygrad-ogkm-36-rtx4090-x4-p2p-cut.log"), corpus("027"), [0, 1, 4, 5])
    (run,) = runs
    assert run.placement is not None and run.placement.bottleneck.token == "SYS" and run.expected == 6.0
    assert {"socket-crossing", "tighter-set-exists"} <= _codes(run.findings)
    # the tighter set: two NV12 pairs joined at NODE, through host memory at Gen3 x16 (unknown PCIe): 12
    assert run.best is not None and run.best.gpus == (0, 1, 2, 3) and run.best_expected == 12.0
    assert run.verdict is Verdict.ABOVE  # 25.95 measured vs 6.0 modelled


def test_json_contract() -> None:
    runs, general = analyse(_parse("autodl-rtx2080ti-x2-pix-p2p-ns.log"), corpus("049"))
    doc = to_dict(runs, general)
    (r,) = doc["runs"]
    assert {"test", "ranks", "hosts", "gpu_names", "peak_busbw_gbps", "peak_size_bytes", "avg_busbw_gbps", "gpus",
            "gpu_mapping", "ring", "expected_busbw_gbps", "expected_note", "tightest_on_node", "verdict",
            "measured_over_expected", "transports", "findings"} <= r.keys()
    assert r["verdict"] == "below" and r["ring"] == {"gpus": [0, 1], "ring": [0, 1], "bottleneck": "PIX"}


def test_sys_within_one_numa_node_is_not_a_socket_crossing() -> None:
    # the same log on 032 with --gpus 0,1,2,3: every pair SYS, but all four have NUMA affinity 0
    runs, _ = analyse(_parse("tinygrad-ogkm-36-rtx4090-x4-p2p-cut.log"), corpus("032"), [0, 1, 2, 3])
    (run,) = runs
    assert run.placement is not None and run.placement.bottleneck.token == "SYS"
    assert "sys-within-numa" in _codes(run.findings) and "socket-crossing" not in _codes(run.findings)
