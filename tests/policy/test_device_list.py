"""NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES: every form, decoded and mapped onto named machines.

Expected values are worked out by hand from the rules cited in policy/audit/device_list.py (the
container toolkit, libnvidia-container, the CUDA Programming Guide and PyTorch's emulation of
the driver), not copied from the code's output.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pod_machines import DGX_A100_MIG, DGX_A100_UUIDS, container_view, dgx_a100

from labeler.topology.errors import CodecError, DeviceListError
from labeler.topology.model import Topology
from policy.audit.device_list import (
    MAX_ENTRIES,
    MAX_VALUE_CHARS,
    VOLUME_MOUNTS_ROOT,
    IdKind,
    ListKind,
    Scope,
    decode_cuda_visible,
    decode_nvidia_visible,
    resolve,
)

U = DGX_A100_UUIDS

# (value, legacy image, kind, entry kinds)
NVIDIA_CASES = [
    (None, False, ListKind.UNSET, []),
    (None, True, ListKind.ALL, []),  # legacy CUDA image: unset means all
    ("", False, ListKind.EMPTY, []),
    (" , ,", False, ListKind.EMPTY, []),  # empty entries are dropped
    ("void", False, ListKind.VOID, []),
    ("0,1,void", False, ListKind.VOID, []),  # void wins over a list
    ("none", False, ListKind.NONE, []),
    ("all,none", False, ListKind.NONE, []),  # void > none > all
    ("all", False, ListKind.ALL, []),
    ("ALL", False, ListKind.ALL, []),  # libnvidia-container compares "all" case-insensitively
    ("0,all", False, ListKind.ALL, []),
    ("nvidia.com/gpu=all", False, ListKind.ALL, []),  # the CDI device "all"
    ("VOID", False, ListKind.LIST, [IdKind.UNKNOWN]),  # only lower-case void is special; the runtime refuses it
    ("0, 3", False, ListKind.LIST, [IdKind.INDEX, IdKind.INDEX]),
    ("+2,-0", False, ListKind.LIST, [IdKind.INDEX, IdKind.INDEX]),  # strtoumax: sign allowed, -0 is 0
    ("-1", False, ListKind.LIST, [IdKind.UNKNOWN]),  # strtoumax("-1") is 2**64-1: no such GPU
    (U[0], False, ListKind.LIST, [IdKind.GPU_UUID]),
    (U[0].lower().replace("gpu-", "gpu-"), False, ListKind.LIST, [IdKind.GPU_UUID]),
    ("0000:07:00.0", False, ListKind.LIST, [IdKind.BUS_ID]),
    ("07:00.0", False, ListKind.LIST, [IdKind.MIG_INDEX]),  # not %x:%02x:%02x, but %lu:%lu matches "07:00"
    (f"MIG-{U[3]}/1/0", False, ListKind.LIST, [IdKind.MIG_LEGACY]),
    ("MIG-1b7e05f1-6f3a-5b6e-9a0c-4c2d1e0f9a01", False, ListKind.LIST, [IdKind.MIG_UUID]),
    ("3:1", False, ListKind.LIST, [IdKind.MIG_INDEX]),
    ("nvidia.com/gpu=0,nvidia.com/gpu=GPU-abc", False, ListKind.LIST, [IdKind.INDEX, IdKind.GPU_UUID]),
    ("mlx5_0", False, ListKind.LIST, [IdKind.UNKNOWN]),
]


@pytest.mark.parametrize(("value", "legacy", "kind", "entries"), NVIDIA_CASES,
                         ids=[repr(c[0]) + ("-legacy" if c[1] else "") for c in NVIDIA_CASES])
def test_nvidia_visible_devices_forms(value: str | None, legacy: bool, kind: ListKind, entries: list[IdKind]) -> None:
    got = decode_nvidia_visible(value, legacy_image=legacy)
    assert got.kind is kind
    assert [i.kind for i in got.ids] == entries


def test_nvidia_entry_details() -> None:
    ids = decode_nvidia_visible(f"+2,0000:b7:00.0,MIG-{U[3]}/1/0,3:1").ids
    assert ids[0].index == 2
    assert ids[1].bus == (0, 0xB7, 0)
    assert ids[2].parent_uuid == U[3] and ids[2].mig == (1, 0)
    assert ids[3].index == 3 and ids[3].mig == (1, -1)


def test_unknown_entry_is_noted_not_raised() -> None:
    got = decode_nvidia_visible("0,mlx5_0")
    assert any("mlx5_0" in n and "refuse" in n for n in got.notes)


@pytest.mark.parametrize("value", ["0," * (MAX_ENTRIES + 1), "x" * (MAX_VALUE_CHARS + 1), "0,1\n2", "0\x00"])
def test_hostile_values_are_refused(value: str) -> None:
    with pytest.raises(DeviceListError):
        decode_nvidia_visible(value)
    with pytest.raises(DeviceListError):
        decode_cuda_visible(value)


def test_volume_mounts_strategy() -> None:
    unread = decode_nvidia_visible(VOLUME_MOUNTS_ROOT)
    assert unread.kind is ListKind.VOLUME_MOUNTS
    listed = decode_nvidia_visible(VOLUME_MOUNTS_ROOT, mounts=[U[2], U[5]])
    assert listed.kind is ListKind.LIST and [i.uuid for i in listed.ids] == [U[2], U[5]]
    cdi = decode_nvidia_visible(VOLUME_MOUNTS_ROOT, mounts=["nvidia.com/gpu=4"])
    assert cdi.ids[0].kind is IdKind.INDEX and cdi.ids[0].index == 4
    assert decode_nvidia_visible(VOLUME_MOUNTS_ROOT, mounts=[]).kind is ListKind.EMPTY


# (value, kind, ordinals, prefixes, stopped_at, duplicate)
CUDA_CASES = [
    (None, ListKind.UNSET, (), (), None, None),
    ("", ListKind.EMPTY, (), (), None, None),
    (" ", ListKind.LIST, (), (), " ", None),  # strtoul("") fails at once: no GPU
    ("0,2,-1,1", ListKind.LIST, (0, 2), (), "-1", None),  # the CUDA guide's example
    ("2,1", ListKind.LIST, (2, 1), (), None, None),
    ("1gpu2,2ampere", ListKind.LIST, (1, 2), (), None, None),  # PyTorch's strtoul example
    ("+1", ListKind.LIST, (1,), (), None, None),
    ("0,1,0", ListKind.LIST, (), (), None, "0"),  # a repeat empties the set
    ("0,,1", ListKind.LIST, (0,), (), "", None),
    ("0,GPU-8932f937", ListKind.LIST, (0,), (), "GPU-8932f937", None),  # index mode stops at the UUID
    ("GPU-8932f937,GPU-1a2b", ListKind.LIST, (), ("GPU-8932f937", "GPU-1a2b"), None, None),
    ("GPU-89,1", ListKind.LIST, (), ("GPU-89",), "1", None),
    ("GPU-a,GPU-a", ListKind.LIST, (), (), None, "GPU-a"),
    (" GPU-8932f937", ListKind.LIST, (), (), " GPU-8932f937", None),  # not starting with GPU-: index mode
    ("MIG-1b7e,MIG-77d0", ListKind.LIST, (), ("MIG-1b7e", "MIG-77d0"), None, None),
]


@pytest.mark.parametrize(("value", "kind", "ordinals", "prefixes", "stopped", "dup"), CUDA_CASES,
                         ids=[repr(c[0]) for c in CUDA_CASES])
def test_cuda_visible_devices_forms(value: str | None, kind: ListKind, ordinals: tuple[int, ...],
                                    prefixes: tuple[str, ...], stopped: str | None, dup: str | None) -> None:
    got = decode_cuda_visible(value)
    assert (got.kind, got.ordinals, got.prefixes, got.stopped_at, got.duplicate) == (
        kind, ordinals, prefixes, stopped, dup)


# -- mapping onto DGX A100 (node scope: the node's annotation or a file saved on the node) ---------------------------
# (NVIDIA_VISIBLE_DEVICES, CUDA_VISIBLE_DEVICES, use MIG map, expected GPUs, known, a word the notes must contain)
NODE_CASES = [
    (f"{U[5]},{U[2]}", None, False, (2, 5), True, None),  # enumeration is PCI order (0x47 < 0x90), not list order
    (f"{U[5]},{U[2]}", "1,0", False, (5, 2), True, None),
    (f"{U[5]},{U[2]}", "1", False, (5,), True, None),
    (f"{U[5]},{U[2]}", "2", False, (), True, "past"),  # only 2 GPUs in the container
    ("0,1", "GPU-8932f93", False, (), True, "ambiguous"),  # GPU0 and GPU1 share that prefix
    ("0,1", "GPU-8932f938", False, (1,), True, None),
    ("0,1", "GPU-8932f938,GPU-8932f937-d72c", False, (1, 0), True, None),
    ("0000:b7:00.0,0000:bd:00.0", None, False, (6, 7), True, None),
    ("all", "7,0", False, (7, 0), True, None),
    ("none", None, False, (), True, None),
    ("1,0", None, False, (0, 1), True, None),
    ("nvidia.com/gpu=4,nvidia.com/gpu=5", None, False, (4, 5), True, None),
    (None, None, False, (), False, "CDI"),  # unset: which GPUs is not in the environment
    (None, "GPU-e7f8a9b0", False, (6,), True, None),  # ...but a CUDA UUID is global
    ("void", "0", False, (), False, "unknown"),
    (f"MIG-{U[3]}/1/0", None, False, (3,), True, "MIG"),
    ("MIG-77d0c2a4-0b1e-5c3f-8d2a-9e4f6a7b8c03", None, True, (6,), True, "MIG"),
    ("MIG-77d0c2a4-0b1e-5c3f-8d2a-9e4f6a7b8c03", None, False, (), False, "NVML"),
    ("3:0", None, False, (3,), True, "MIG"),
    ("9", None, False, (), False, "no GPU9"),
    ("GPU-ffffffff-0000-4000-8000-00000000000f", None, False, (), False, "no GPU with UUID"),
    ("0,1", "0,1,0", False, (), True, "repeats"),
]


@pytest.mark.parametrize(("nv", "cuda", "mig", "gpus", "known", "word"), NODE_CASES,
                         ids=[f"{c[0]}|{c[1]}" for c in NODE_CASES])
def test_resolve_on_dgx_a100_node_scope(nv: str | None, cuda: str | None, mig: bool, gpus: tuple[int, ...],
                                        known: bool, word: str | None) -> None:
    res = resolve(decode_nvidia_visible(nv), decode_cuda_visible(cuda), dgx_a100(), Scope.NODE,
                  mig_parent=DGX_A100_MIG if mig else None)
    assert res.gpus == gpus
    assert res.known is known
    if word is not None:
        assert any(word in n for n in res.notes), res.notes


def test_uuids_need_a_topology_with_uuids() -> None:
    plain = Topology.from_rows([dataclasses.replace(g, uuid=None) for g in dgx_a100().gpus], dgx_a100().nics,
                               dgx_a100().links)
    res = resolve(decode_nvidia_visible(U[2]), decode_cuda_visible(None), plain, Scope.NODE)
    assert res.known is False and res.unresolved == (U[2],)
    assert any("no GPU UUIDs" in n for n in res.notes)


# -- a probe inside the container sees only its GPUs, renumbered -------------------------------------------------------
def test_container_scope_maps_the_probe_as_is() -> None:
    view = container_view(dgx_a100(), [5, 2])  # host GPU2 -> 0, host GPU5 -> 1
    res = resolve(decode_nvidia_visible(f"{U[2]},{U[5]}"), decode_cuda_visible(None), view, Scope.CONTAINER)
    assert res.gpus == (0, 1) and res.known and res.notes == ()
    one = resolve(decode_nvidia_visible(f"{U[2]},{U[5]}"), decode_cuda_visible("1"), view, Scope.CONTAINER)
    assert one.gpus == (1,) and view.gpu(1).uuid == U[5]
    by_uuid = resolve(decode_nvidia_visible("all"), decode_cuda_visible("GPU-a3b4"), view, Scope.CONTAINER)
    assert by_uuid.gpus == (1,)


def test_container_scope_notes_cdi_and_mismatches() -> None:
    view = container_view(dgx_a100(), [2, 5])
    cdi = resolve(decode_nvidia_visible("void"), decode_cuda_visible(None), view, Scope.CONTAINER)
    assert cdi.gpus == (0, 1) and any("CDI" in n for n in cdi.notes)
    other = resolve(decode_nvidia_visible(U[7]), decode_cuda_visible(None), view, Scope.CONTAINER)
    assert any("does not see" in n for n in other.notes)
    count = resolve(decode_nvidia_visible("0,1,2"), decode_cuda_visible(None), view, Scope.CONTAINER)
    assert any("names 3 GPU(s) but this container sees 2" in n for n in count.notes)


def test_index_order_caveat_for_mixed_models() -> None:
    view = container_view(dgx_a100(), [2, 5])
    mixed = Topology.from_rows([view.gpus[0], dataclasses.replace(view.gpus[1], name="NVIDIA A100-PCIE-40GB")],
                               view.nics, view.links)
    noted = resolve(decode_nvidia_visible("all"), decode_cuda_visible("1"), mixed, Scope.CONTAINER)
    assert any("fastest first" in n for n in noted.notes)
    pci = resolve(decode_nvidia_visible("all"), decode_cuda_visible("1"), mixed, Scope.CONTAINER,
                  device_order="PCI_BUS_ID")
    assert not any("fastest first" in n for n in pci.notes)


_PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF), max_size=200)


@settings(max_examples=300, deadline=None)
@given(nv=st.one_of(st.none(), _PRINTABLE, st.lists(st.sampled_from(
    ["0", "7", "9", "all", "none", "void", U[1], "GPU-8932", f"MIG-{U[3]}/1/0", "3:1", "0000:47:00.0", " ", "",
     "nvidia.com/gpu=2", "-0", "x"]), max_size=12).map(",".join)),
       cuda=st.one_of(st.none(), _PRINTABLE, st.lists(st.sampled_from(
           ["0", "1", "-1", "1gpu", "GPU-8932f93", "GPU-1a2b", "MIG-77d0", "", " 2"]), max_size=8).map(",".join)))
def test_any_values_decode_and_resolve_within_the_topology(nv: str | None, cuda: str | None) -> None:
    topo = dgx_a100()
    try:
        res = resolve(decode_nvidia_visible(nv), decode_cuda_visible(cuda), topo, Scope.NODE,
                      mig_parent=DGX_A100_MIG)
    except CodecError:
        return
    assert set(res.gpus) <= set(topo.gpu_indices)
    assert len(res.gpus) == len(set(res.gpus))


def test_privileged_container_sees_the_whole_node() -> None:
    # the probe inside a privileged pod sees all 8 GPUs with their host numbering; the plugin named two
    res = resolve(decode_nvidia_visible(f"{U[6]},{U[1]}"), decode_cuda_visible(None), dgx_a100(), Scope.CONTAINER)
    assert res.gpus == (1, 6) and any("privileged" in n for n in res.notes)
