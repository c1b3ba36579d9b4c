"""gputopo's pure policy layer: decisions about GPUs, computed from values, with no I/O.

It sits above the pure topology core (``labeler/topology``) and below every adapter
(the extender's HTTP service, the agent, the CLI, the simulator). Modules here import
the standard library, the topology core and each other only; import-linter enforces
that they import no Kubernetes, NVML, gRPC, HTTP, metrics or settings library and no
adapter package (docs/architecture.md has the diagram and the internal API).

- :mod:`policy.workload` — what a Pod asks for: GPU count (Kubernetes' rules), intent and
  max-level annotations, kind (PyTorchJob / Trainer / JobSet rank, inference, multi-GPU).
- :mod:`policy.nodes` — the node view: which nodes are judged (:mod:`~policy.nodes.state`,
  one definition shared with the cluster audit), what each offers
  (:mod:`~policy.nodes.facts`), decoding its annotations once (:mod:`~policy.nodes.decode`).
- :mod:`policy.decision` — the decision: placement facts and the filter verdict per wiring
  and free set (:mod:`~policy.decision.evaluation`), THE decision cache
  (:mod:`~policy.decision.cache`), verdicts, scores and explanations for many nodes
  (:mod:`~policy.decision.decide`).
- :mod:`policy.scoring` — the scoring strategies (one small function each) and the one
  weights table.
- :mod:`policy.siblings` — where a multi-node job's other ranks run, summarised.
- :mod:`policy.audit` — the audits' analyses (pod, NCCL log, cluster).
- :mod:`policy.gpuallocator`, :mod:`policy.device_plugin` — inside a node once it is chosen:
  NVIDIA go-gpuallocator's best-effort policy and kubelet's allocation with or without it.
"""
