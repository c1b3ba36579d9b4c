"""Inside the node: which GPUs a pod gets once it is bound.

Whole GPUs (``nvidia.com/gpu``) are chosen by kubelet's device manager and the
device plugin, not by the scheduler:

- ``device-plugin``: the stock NVIDIA device plugin (go-gpuallocator's
  best-effort policy over devices offered in kubelet's unordered way),
  modelled by :mod:`policy.device_plugin`;
- ``blind``: a plugin without ``GetPreferredAllocation``: the first devices of
  kubelet's unordered offer (same module, topology-blind);
- ``first-free``: the lowest-index fully free GPUs (FGD's simulator,
  ``AllocateExclusiveGpuId``), deterministic.

A GPU share goes to one GPU with enough milli-GPU left: the tightest fit
(lowest index among equals) or a uniformly random fit, as FGD's
``allocateGpuIdBasedOnBestFit`` / ``...RandomFit`` do.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from labeler.topology.model import Topology
from policy import device_plugin

__all__ = ["WHOLE_CHOICES", "AdmissionError", "ShareChoice", "WholeChoice", "choose_share", "choose_whole"]

WholeChoice = Literal["device-plugin", "blind", "first-free"]
ShareChoice = Literal["best", "random"]
WHOLE_CHOICES: tuple[WholeChoice, ...] = ("device-plugin", "blind", "first-free")


class AdmissionError(Exception):
    """kubelet would refuse the pod on this node (the device plugin failed); the pod fails."""


def choose_whole(
    topo: Topology, free_positions: Sequence[int], k: int, how: WholeChoice, rng: random.Random
) -> tuple[int, ...]:
    """k GPU positions among the fully free ones (positions index ``topo.gpus``)."""
    if len(free_positions) < k:
        raise AdmissionError(f"{k} GPUs requested, {len(free_positions)} free")
    if how == "first-free":
        return tuple(sorted(free_positions)[:k])
    index_of = topo.gpu_indices
    pos_of = {g: p for p, g in enumerate(index_of)}
    policy = device_plugin.BEST_EFFORT if how == "device-plugin" else device_plugin.BLIND
    try:
        chosen = device_plugin.choose(topo, [index_of[p] for p in free_positions], k, policy=policy, rng=rng)
    except device_plugin.DeviceAdmissionError as err:
        raise AdmissionError(str(err)) from err
    return tuple(sorted(pos_of[g] for g in chosen))


def choose_share(milli_left: npt.NDArray[np.int64], need: int, how: ShareChoice, rng: random.Random) -> int:
    """The GPU position for a share of ``need`` milli (``milli_left``: one row, -1 past the node's GPUs)."""
    fits = np.flatnonzero(milli_left >= need)
    if fits.size == 0:
        raise AdmissionError(f"no GPU has {need} milli left")
    if how == "random":
        return int(fits[rng.randrange(fits.size)])
    left = milli_left[fits]
    return int(fits[int(np.argmin(left))])  # argmin takes the first (lowest index) minimum
