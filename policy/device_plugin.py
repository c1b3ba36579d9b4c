"""Inside the node: which GPUs kubelet gives a pod, with or without the NVIDIA device plugin's preference.

After kube-scheduler binds a pod that asks for ``nvidia.com/gpu: k``, kubelet's device manager
picks *which* k GPUs. gputopo's extender can only choose the node and predict that pick. The
simulator (``gputopo simulate``) and the end-to-end harness's stand-in for kubelet + device
plugin call :func:`choose` to make it.

Sources (read, not copied):

- kubernetes/kubernetes ``pkg/kubelet/cm/devicemanager/manager.go`` @ 7510f32987feb7efbaced9aec1ca15303dea252b,
  ``devicesToAllocate`` and ``callGetPreferredAllocationIfAvailable``:

  1. Devices reused from init containers are taken first. They reach the plugin as
     ``MustIncludeDeviceIDs``.
  2. ``available`` is the healthy set minus the devices in use. Fewer than needed is an
     admission error.
  3. With the Topology Manager's default policy ``none`` there is no NUMA hint. Every device
     is "no affinity", and kubelet asks the plugin once, if it advertises
     ``GetPreferredAllocationAvailable``. It sends ``available ∪ reused`` as
     ``UnsortedList()`` of a Go set, so the order is unspecified.
  4. kubelet takes the preferred devices. If they are missing or too few, it fills up from
     ``available``, again in set iteration order. A plugin without ``GetPreferredAllocation``
     therefore gets the first devices of an unordered set: the **topology-blind** policy.
  5. A plugin RPC error fails the pod's admission (``UnexpectedAdmissionError``).

- NVIDIA/k8s-device-plugin @ 1b826acc6af3079d8923bac395c3124b8861a9a6: ``internal/plugin/server.go``
  advertises ``GetPreferredAllocationAvailable: true``. For whole GPUs,
  ``internal/rm/nvml_manager.go`` ``alignedAlloc`` filters the NVML device list *in the order
  kubelet sent* and calls go-gpuallocator's ``NewBestEffortPolicy().Allocate``
  (:func:`policy.gpuallocator.best_effort`). It then reads ``device.UUID`` of each result, so
  a padding ``nil`` from the policy panics the handler. The gRPC server has no recovery
  interceptor (``grpc.NewServer`` with no options), so the plugin process dies and kubelet
  sees an RPC error. :func:`choose` raises :class:`DeviceAdmissionError` for it.

The offered order. Go promises nothing about map iteration order, and it is randomised at
run time. The model takes the order as an input. Either pass ``available`` in the order you
mean (``rng=None``), or pass a seeded :class:`random.Random`. That shuffles
``sorted(available ∪ required)`` with ``rng.shuffle``, so the same seed gives the same
answer whatever order the caller listed the GPUs in. The model uses that one order for the
plugin and for kubelet's fallback. Real kubelet iterates a fresh set for the fallback.
That makes no difference to the best-effort policy, which only falls back when it returns
nothing.

Not modelled: Topology Manager NUMA hints (``single-numa-node``, ``restricted``,
``best-effort``: aligned devices first); MIG and shared (replicated) GPUs, where the device
plugin uses its greedy ``distributed``/``packed`` policies instead of go-gpuallocator;
unhealthy devices.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence

from labeler.topology.errors import GputopoError
from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology
from policy.gpuallocator import Pair, best_effort, links_for

__all__ = [
    "BEST_EFFORT",
    "BLIND",
    "DeviceAdmissionError",
    "Policy",
    "choose",
    "offer_order",
]


class Policy(enum.Enum):
    """How the GPUs inside a node are picked once the pod is bound there."""

    #: The stock NVIDIA device plugin: kubelet asks ``GetPreferredAllocation``, which answers
    #: with go-gpuallocator's best-effort policy.
    BEST_EFFORT = "best-effort"
    #: kubelet without a preference (a plugin that does not implement
    #: ``GetPreferredAllocation``): the first devices of the offered order.
    BLIND = "blind"


BEST_EFFORT = Policy.BEST_EFFORT
BLIND = Policy.BLIND


class DeviceAdmissionError(GputopoError):
    """kubelet would refuse the pod at admission (``UnexpectedAdmissionError``).

    Raised when the node has too few free GPUs, or when the device plugin's
    ``GetPreferredAllocation`` fails: go-gpuallocator returned a padded set and the plugin
    panicked. In a cluster the pod fails on that node, and a controller may recreate it.
    ``offered`` is the device order that led there and ``size`` the request.
    """

    def __init__(self, message: str, *, offered: tuple[int, ...], size: int) -> None:
        self.offered = offered
        self.size = size
        super().__init__(message)


def offer_order(
    available: Sequence[int], required: Sequence[int] = (), rng: random.Random | None = None
) -> tuple[int, ...]:
    """The device list as the plugin receives it: ``available ∪ required``, in kubelet's order.

    Without ``rng`` it is ``available`` as given, then any required GPU not in it. With
    ``rng`` it is ``sorted(available ∪ required)`` shuffled by ``rng.shuffle`` (one draw).

    >>> offer_order([3, 1], [0])
    (3, 1, 0)
    >>> offer_order([3, 1, 0], rng=random.Random(7)) == offer_order([0, 1, 3], rng=random.Random(7))
    True
    """
    if len(set(available)) != len(available) or len(set(required)) != len(required):
        raise ValueError("available and required must not repeat a GPU")
    seen = set(available)
    union = [*available, *(g for g in required if g not in seen)]
    if rng is None:
        return tuple(union)
    shuffled = sorted(union)
    rng.shuffle(shuffled)
    return tuple(shuffled)


def choose(
    topo: Topology,
    available: Sequence[int],
    size: int,
    *,
    required: Sequence[int] = (),
    policy: Policy = BEST_EFFORT,
    rng: random.Random | None = None,
    pcie: Mapping[Pair, LinkLevel | None] | None = None,
    nvswitch: bool | None = None,
) -> tuple[int, ...]:
    """The GPU indices kubelet allocates to a container asking for ``size`` GPUs, sorted.

    ``available``: the node's free GPUs, by GPU index (the ``Gpu.index`` of ``topo``).
    ``required``: GPUs already held by the container (reused from init containers), sent as
    ``MustIncludeDeviceIDs``. They may or may not be listed in ``available``. ``policy``:
    :data:`BEST_EFFORT` (stock NVIDIA device plugin) or :data:`BLIND`. ``rng``: see
    :func:`offer_order`. ``pcie``, ``nvswitch``: what NVML knows beyond the topology, see
    :func:`policy.gpuallocator.links_for`.

    Raises :class:`DeviceAdmissionError` when kubelet would refuse the pod, and
    ``ValueError`` for malformed input: unknown or repeated GPUs, a negative ``size``, or
    more required GPUs than ``size``. ``size == 0`` gives ``()``.

    >>> from labeler.topology.smi_parser import parse
    >>> topo = parse("GPU0 GPU1 GPU2\\nGPU0 X SYS NV4\\nGPU1 SYS X SYS\\nGPU2 NV4 SYS X\\n")
    >>> choose(topo, [1, 0, 2], 2)
    (0, 2)
    >>> choose(topo, [1, 0, 2], 2, policy=BLIND)
    (0, 1)
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    if len(required) > size:
        raise ValueError(f"{len(required)} required GPUs do not fit a request of {size}")
    known = set(topo.gpu_indices)
    unknown = [g for g in (*available, *required) if g not in known]
    if unknown:
        raise ValueError(f"GPUs {unknown} are not in this topology")
    offered = offer_order(available, required, rng)
    needed = size - len(required)
    if needed == 0:
        return tuple(sorted(required))
    held = set(required)
    free = [g for g in offered if g not in held]
    if len(free) < needed:
        raise DeviceAdmissionError(
            f"requested number of devices unavailable: requested {needed}, available {len(free)}",
            offered=offered,
            size=size,
        )
    picked: list[int] = []
    if policy is Policy.BEST_EFFORT:
        preferred = best_effort(links_for(topo, pcie=pcie, nvswitch=nvswitch), offered, list(required), size)
        if None in preferred:
            raise DeviceAdmissionError(
                "device plugin GetPreferredAllocation failed: go-gpuallocator returned a padded set "
                f"{list(preferred)} and the plugin panicked on the nil device",
                offered=offered,
                size=size,
            )
        chosen = set(preferred)
        picked = [g for g in free if g in chosen][:needed]
    # kubelet's fallback (and the whole of BLIND): fill up from the offered order.
    if len(picked) < needed:
        taken = set(picked)
        picked += [g for g in free if g not in taken][: needed - len(picked)]
    return tuple(sorted((*required, *picked)))
