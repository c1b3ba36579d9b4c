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
`nvidia-smi` text, a :class:`~labeler.topology.errors.TopologyParseError`; for an nccl-tests log
a ``NcclLogError``, for a device list a ``DeviceListError``, both ``CodecError``s; for a trace
file a ``TraceError``) that names the limit, never a partial decode. ``docs/reliability.md`` lists them for
operators; tests in ``tests/topology/test_limits.py`` pin each one.
"""

from __future__ import annotations

__all__ = [
    "MAX_AFFINITY_IDS",
    "MAX_ALLOCATION_JSON_CHARS",
    "MAX_CPU_ID",
    "MAX_DEVICE_LIST_CHARS",
    "MAX_DEVICE_LIST_ENTRIES",
    "MAX_ENDPOINTS",
    "MAX_GPUS",
    "MAX_GPU_INDEX",
    "MAX_JSON_DEPTH",
    "MAX_NCCL_HOPS",
    "MAX_NCCL_LINE_CHARS",
    "MAX_NCCL_LOG_CHARS",
    "MAX_NCCL_RANKS",
    "MAX_NCCL_ROWS",
    "MAX_NCCL_SECTIONS",
    "MAX_NICS",
    "MAX_NIC_RATE_MBPS",
    "MAX_NODE_ANNOTATIONS_BYTES",
    "MAX_NUMA_ID",
    "MAX_PCIE_VALUE",
    "MAX_POD_KEY_CHARS",
    "MAX_QUANTITY_CHARS",
    "MAX_SCENARIO_NODES",
    "MAX_SMI_CHARS",
    "MAX_SMI_LINES",
    "MAX_SMI_LINE_CHARS",
    "MAX_STRING_CHARS",
    "MAX_TOPOLOGY_JSON_CHARS",
    "MAX_TRACE_BYTES",
    "MAX_TRACE_CPU_MILLI",
    "MAX_TRACE_MEMORY_MIB",
    "MAX_TRACE_ROWS",
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
#: GPUs + NICs one topology document may list, checked before its n x n matrix is allocated (the
#: GPU and NIC limits above are checked after; this one bounds the allocation itself to 512²).
MAX_ENDPOINTS = 512
#: A NIC's ``rate_mbps`` (facts v2): 100 Tb/s per port, far above any port (400G/800G today).
MAX_NIC_RATE_MBPS = 10**8
#: A PCIe generation or lane width (facts v2): small numbers (Gen 1-6, x1-x32).
MAX_PCIE_VALUE = 64

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
#: All annotations of one Node as read by ``gputopo audit pod`` (the Node's own topology): the API
#: server refuses an object whose annotations exceed 256 KiB together, so more cannot be real.
MAX_NODE_ANNOTATIONS_BYTES = 256 * 1024
#: ``NVIDIA_VISIBLE_DEVICES`` / ``CUDA_VISIBLE_DEVICES`` (``gputopo audit pod``): a 256-GPU UUID
#: list is ~10 KB, real lists are far shorter; entries of one list (or files of the device
#: plugin's volume-mounts directory).
MAX_DEVICE_LIST_CHARS = 16384
MAX_DEVICE_LIST_ENTRIES = 1024  # also the GPUs of one ``gputopo audit nccl --gpus`` list
#: An nccl-tests log (``gputopo audit nccl``): the whole text and one line (longer lines are
#: skipped and counted: NCCL_DEBUG=INFO lines are under 1 KB); then caps on what is kept of it,
#: each far above a real 16k-GPU job (ranks, result rows, ring/tree hops, test sections), past
#: which the rest is ignored with a note rather than held.
MAX_NCCL_LOG_CHARS = 64 * 1024 * 1024
MAX_NCCL_LINE_CHARS = 16 * 1024
MAX_NCCL_RANKS = 1 << 16
MAX_NCCL_ROWS = 1 << 16
MAX_NCCL_HOPS = 1 << 18
MAX_NCCL_SECTIONS = 256
#: A cluster trace for ``gputopo simulate --trace`` (Alibaba openb CSV): file size (the largest
#: openb list is 0.7 MB), rows, and per-pod CPU (10,000 cores) and memory (1 PiB) requests;
#: GPUs per node are :data:`MAX_GPUS`.
MAX_TRACE_BYTES = 64 << 20
MAX_TRACE_ROWS = 1_000_000
MAX_TRACE_CPU_MILLI = 10_000_000
MAX_TRACE_MEMORY_MIB = 1 << 30
#: Nodes one ``gputopo simulate`` scenario file may declare: 20x the 5,000-node clusters the
#: extender is sized for; each is a simulated object, so a typo'd count cannot exhaust memory.
MAX_SCENARIO_NODES = 100_000

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
