"""Every limit a decoder enforces, in one place.

Why limits at all: everything gputopo decodes comes from somewhere it does not
control (a Node annotation any agent or admin can write, an allocation
ConfigMap, a pasted `nvidia-smi` output, a scheduler request). Without limits a
few kilobytes buy gigabytes: ``"cpu_affinity": "0-1000000"`` is 18 characters
and a million-element set; a JSON value nested 100,000 deep is 200 KB and a
``RecursionError``; a 24-GPU NVLink mesh turns the exact placement search into
minutes. Each limit below is far above anything real hardware produces (the
reason is given next to it) and low enough that the worst accepted input costs
milliseconds and kilobytes to megabytes, not seconds and gigabytes.

A value over a limit is a :class:`~labeler.topology.errors.CodecError` (or, for
`nvidia-smi` text, a :class:`~labeler.topology.errors.TopologyParseError`) that
names the limit, never a partial decode. ``docs/reliability.md`` lists them for
operators; tests in ``tests/topology/test_limits.py`` pin each one.
"""

from __future__ import annotations

__all__ = [
    "MAX_AFFINITY_IDS",
    "MAX_ALLOCATION_JSON_CHARS",
    "MAX_CPU_ID",
    "MAX_GPUS",
    "MAX_GPU_INDEX",
    "MAX_JSON_DEPTH",
    "MAX_NICS",
    "MAX_NUMA_ID",
    "MAX_POD_KEY_CHARS",
    "MAX_QUANTITY_CHARS",
    "MAX_SMI_CHARS",
    "MAX_SMI_LINES",
    "MAX_SMI_LINE_CHARS",
    "MAX_STRING_CHARS",
    "MAX_TOPOLOGY_JSON_CHARS",
    "PLACEMENT_EXACT_GPUS",
    "PLACEMENT_STEP_BUDGET",
    "RING_IMPROVE_BUDGET",
]

# -- hardware ---------------------------------------------------------------------------------
#: GPUs in one node. The largest NVIDIA single-OS systems (DGX-2 / HGX-2) carry 16; composable
#: PCIe fabrics attach more to one host, so 4x that headroom. More is damage or an attack.
MAX_GPUS = 64
#: NICs in one node's matrix. The corpus's largest has 36 (file 001, 8 GPUs); 128 leaves room.
MAX_NICS = 128
#: A GPU index (``nvidia-smi``'s ``GPU<n>``, the allocation's GPU keys). Indices are dense from
#: 0 on real nodes; the head-room allows gaps (GPUs hidden by CUDA_VISIBLE_DEVICES or lost).
MAX_GPU_INDEX = 1023
#: A CPU id in a cpulist. Linux's NR_CPUS is at most 8192 (x86 ``MAXSMP``; arm64 allows 4096),
#: so 8191 is the largest id any kernel prints. ``0-1000000`` is refused instead of building a
#: million-element set (+530 MiB in the extender before this limit).
MAX_CPU_ID = 8191
#: A NUMA node id (``NUMA Affinity``, ``GPU NUMA ID``). Linux allows 1024 nodes (NODES_SHIFT 10);
#: GH200/GB200 number GPU memory nodes above the CPU ones, so 4x head-room.
MAX_NUMA_ID = 4095
#: CPU and NUMA ids summed over the *distinct* cpulists of one topology document. GPUs on one
#: NUMA node share one list, so a real node sums to at most its CPU count (≤ 8192); twice that
#: allows overlapping lists (a VM that gives every GPU all CPUs next to per-node ones). Bounds
#: the memory one decoded topology can hold to about 1 MB of sets.
MAX_AFFINITY_IDS = 16384

# -- text and JSON ------------------------------------------------------------------------------
#: The ``{prefix}topology`` annotation. The API server caps *all* annotations of one object at
#: 256 KiB together, so a longer value cannot be real. A 64-GPU + 128-NIC matrix fits.
MAX_TOPOLOGY_JSON_CHARS = 256 * 1024
#: The allocation value (annotation or ConfigMap data): 64 GPUs × a 317-character pod key is
#: ~21 KB; three times that.
MAX_ALLOCATION_JSON_CHARS = 64 * 1024
#: Nesting of any JSON document we decode (v1 documents are 3 deep; the budget leaves room for
#: later versions). Checked *before* parsing, so deep input never reaches a recursive decoder.
MAX_JSON_DEPTH = 16
#: Free-text fields of the topology document (GPU name, bus id, UUID, NIC column and device).
#: Real ones are under 64 characters.
MAX_STRING_CHARS = 256
#: ``namespace/name`` of a pod in the allocation's ``used`` map: 63 + 1 + 253.
MAX_POD_KEY_CHARS = 317
#: A resource quantity string (``"8"``, ``"1e3"``, ``"2k"``); Kubernetes' own canonical forms are
#: a few characters. Longer strings (``"9" * 400``) are unreadable, not huge.
MAX_QUANTITY_CHARS = 64
#: `nvidia-smi topo -m` text: the whole output, one line, and the number of lines. A 64-GPU +
#: 128-NIC matrix is 187 KB (parsed in 0.2 s); the corpus's largest file is 17 KB.
MAX_SMI_CHARS = 1024 * 1024
MAX_SMI_LINE_CHARS = 512 * 1024
MAX_SMI_LINES = 5_000

# -- work -------------------------------------------------------------------------------------
#: Components of up to this many GPUs get the exact placement search with no budget: its state
#: count is bounded by the subsets of 16 GPUs (see :mod:`labeler.topology.placement`).
PLACEMENT_EXACT_GPUS = 16
#: Larger components get this many search steps per query (about the exact search's worst case
#: at 16 GPUs); past it the search falls back to a bounded greedy ring (``Placement.exact`` is
#: then ``False``). See ``docs/reliability.md`` for the measured cost.
PLACEMENT_STEP_BUDGET = 400_000
#: Ring orders the bandwidth model tries when it improves a candidate ring by 2-opt moves
#: (:mod:`labeler.topology.busbw`): every move of an 8-GPU ring is 20, so this allows several
#: passes there and stops large sets from costing more than a few milliseconds.
RING_IMPROVE_BUDGET = 200
