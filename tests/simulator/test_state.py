"""The simulator's accounting: no GPU given twice, capacity conserved, releases give back exactly what was taken."""

from __future__ import annotations

import factories
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.model import NodeSpec, PodSpec
from simulator.state import DEFAULT_MEMORY_MIB, DEFAULT_MILLI_CPU, ClusterState


def _cluster() -> ClusterState:
    return ClusterState([
        NodeSpec("dgx1", factories.dgx1_v100(), 48_000, 512 * 1024, "V100"),
        NodeSpec("pairs", factories.nvlink_bridge_pairs_8x(), 64_000, 256 * 1024, "A100"),
    ])


def test_allocate_and_release_whole_gpus() -> None:
    s = _cluster()
    pod = PodSpec("train-0", "4gpu", 16_000, 65536, num_gpu=4, gpu_milli=1000)
    s.allocate(pod, 0, (0, 1, 2, 3))
    assert s.full_free.tolist() == [4, 8]
    assert s.free_mask[0] == 0b11110000
    assert s.gpu_req.tolist() == [4, 0]
    assert s.allocated_milli == 4000
    assert s.cpu_req.tolist() == [16_000, 0] and s.mem_req.tolist() == [65536, 0]
    s.check()
    s.release("train-0")
    assert s.full_free.tolist() == [8, 8] and s.allocated_milli == 0 and s.free_mask[0] == 0xFF
    s.check()


def test_shares_pack_onto_one_gpu_until_it_is_full() -> None:
    s = _cluster()
    s.allocate(PodSpec("a", "share", 1000, 1024, num_gpu=1, gpu_milli=600), 1, (2,))
    s.allocate(PodSpec("b", "share", 1000, 1024, num_gpu=1, gpu_milli=400), 1, (2,))
    assert s.milli_left[1, 2] == 0 and s.full_free[1] == 7 and s.max_left[1] == 1000
    assert s.milli_total_left[1] == 7000 and s.gpu_req[1] == 0  # shares are not nvidia.com/gpu
    with pytest.raises(ValueError, match="milli left"):
        s.allocate(PodSpec("c", "share", 1000, 1024, num_gpu=1, gpu_milli=1), 1, (2,))
    s.check()


@pytest.mark.parametrize(("pod", "node", "gpus", "msg"), [
    (PodSpec("x", "2gpu", 1000, 1024, num_gpu=2, gpu_milli=1000), 0, (0, 0), "distinct"),
    (PodSpec("x", "2gpu", 1000, 1024, num_gpu=2, gpu_milli=1000), 0, (0,), "distinct"),
    (PodSpec("x", "1gpu", 1000, 1024, num_gpu=1, gpu_milli=1000), 0, (8,), "does not exist"),
    (PodSpec("x", "cpu", 49_000, 1024), 0, (), "CPU"),
    (PodSpec("x", "cpu", 1000, 513 * 1024), 0, (), "memory"),
])
def test_what_does_not_fit_is_refused(pod: PodSpec, node: int, gpus: tuple[int, ...], msg: str) -> None:
    s = _cluster()
    with pytest.raises(ValueError, match=msg):
        s.allocate(pod, node, gpus)
    s.check()
    assert not s.bindings


def test_a_gpu_is_never_given_twice() -> None:
    s = _cluster()
    s.allocate(PodSpec("a", "1gpu", 1000, 1024, num_gpu=1, gpu_milli=1000), 0, (5,))
    with pytest.raises(ValueError, match="milli left"):
        s.allocate(PodSpec("b", "2gpu", 1000, 1024, num_gpu=2, gpu_milli=1000), 0, (4, 5))
    with pytest.raises(ValueError, match="milli left"):  # a share cannot join a whole-GPU pod either
        s.allocate(PodSpec("c", "share", 1000, 1024, num_gpu=1, gpu_milli=100), 0, (5,))
    with pytest.raises(ValueError, match="already bound"):
        s.allocate(PodSpec("a", "1gpu", 1000, 1024, num_gpu=1, gpu_milli=1000), 0, (6,))


def test_check_catches_a_corrupted_aggregate() -> None:
    s = _cluster()
    s.allocate(PodSpec("a", "1gpu", 1000, 1024, num_gpu=1, gpu_milli=1000), 0, (5,))
    s.milli_left[0, 5] = 1000  # as if the GPU had been freed behind the binding's back
    with pytest.raises(AssertionError, match="milli-GPU left"):
        s.check()


def test_non_zero_requests_follow_kube_scheduler_defaults() -> None:
    s = _cluster()
    s.allocate(PodSpec("be", "cpu", 0, 0), 1, ())
    assert s.cpu_req[1] == 0 and s.mem_req[1] == 0
    assert s.cpu_nz[1] == DEFAULT_MILLI_CPU == 100 and s.mem_nz[1] == DEFAULT_MEMORY_MIB == 200


_POD = st.tuples(
    st.integers(0, 4),  # 0 = CPU-only, 1 = share, 2.. = whole GPUs: 1, 2, 4
    st.integers(1, 999),
    st.integers(0, 8_000),
    st.integers(0, 32 * 1024),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_POD, st.integers(0, 1), st.booleans()), max_size=60), st.randoms(use_true_random=False))
def test_random_binds_and_releases_conserve_capacity(ops: list[tuple[tuple[int, int, int, int], int, bool]],
                                                     rnd: object) -> None:
    import random as _random

    assert isinstance(rnd, _random.Random)
    s = _cluster()
    empty = (s.cpu_req.copy(), s.milli_left.copy(), s.full_free.copy(), s.free_mask.copy())
    for n, ((kind, milli, cpu, mem), node, release) in enumerate(ops):
        gpus = {0: 0, 1: 1, 2: 1, 3: 2, 4: 4}[kind]
        share = 0 if kind == 0 else (milli if kind == 1 else 1000)
        pod = PodSpec(f"p{n}", "x", cpu, mem, num_gpu=gpus, gpu_milli=share)
        row = s.milli_left[node]
        if pod.is_share:
            cand = [int(g) for g in np.flatnonzero(row >= pod.gpu_milli)]
            choice = tuple(rnd.sample(cand, 1)) if cand else None
        else:
            free = s.free_positions(node)
            choice = tuple(rnd.sample(free, gpus)) if len(free) >= gpus else None
        fits = (choice is not None and s.cpu_req[node] + cpu <= s.cpu_cap[node]
                and s.mem_req[node] + mem <= s.mem_cap[node])
        if fits:
            assert choice is not None
            s.allocate(pod, node, choice)
        if release and s.bindings:
            s.release(rnd.choice(sorted(s.bindings)))
        s.check()
        assert (s.milli_left[:, :8] >= 0).all() and s.allocated_milli <= s.capacity_milli
    for name in list(s.bindings):
        s.release(name)
    s.check()
    assert np.array_equal(s.cpu_req, empty[0]) and np.array_equal(s.milli_left, empty[1])
    assert np.array_equal(s.full_free, empty[2]) and np.array_equal(s.free_mask, empty[3])
    assert s.allocated_milli == 0
