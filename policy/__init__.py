"""gputopo's pure policy layer: decisions about GPUs, computed from values, with no I/O.

It sits above the pure topology core (``labeler/topology``) and below every adapter
(the extender's HTTP service, the agent, the CLI, the simulator). Modules here import
the standard library and the topology core only; import-linter enforces that they
import no Kubernetes, NVML, gRPC, HTTP or metrics library and no adapter package.

Modules:

- :mod:`policy.gpuallocator` — NVIDIA go-gpuallocator's best-effort policy (what the
  NVIDIA device plugin answers to kubelet's ``GetPreferredAllocation``), rebuilt on
  :class:`~labeler.topology.model.Topology`.
- :mod:`policy.device_plugin` — kubelet + device plugin inside a node: which GPUs a pod
  gets once it is bound, with the plugin's preference or without it (topology-blind).
"""
