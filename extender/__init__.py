"""The gputopo kube-scheduler HTTP extender (FastAPI), see ``docs/extender.md``.

A thin adapter over the policy layer: it turns kube-scheduler's bytes into
:mod:`policy` values, asks :class:`policy.decision.decide.Decider`, and turns the
answer back into bytes, with metrics and logs. Nothing here decides where a pod
goes (import-linter's layers contract keeps the simulator and the audits from
reaching this package, so a decision made here would be one they cannot share).

- :mod:`extender.wire`      the extender wire types (Go field names, case-insensitive decode)
- :mod:`extender.service`   filter/prioritize on raw bytes (no HTTP), both modes: bytes ↔ policy
- :mod:`extender.reflector` list+watch of one resource kind (the informer loop, kubernetes client)
- :mod:`extender.cache`     the cached mode's store: Nodes, GPU pods, allocation ConfigMaps → node facts
- :mod:`extender.metrics`   Prometheus metrics
- :mod:`extender.app`       HTTP: routes, body limit, concurrency, health
- :mod:`extender.server`    uvicorn with a request-head deadline, limits and optional (mutual) TLS
- :mod:`extender.cli`       ``gputopo extender`` entry point and settings

The policy it serves: :mod:`policy.workload` (what a Pod asks for), :mod:`policy.nodes`
(what a Node offers, and which nodes are judged), :mod:`policy.decision` (verdicts,
scores, the decision cache), :mod:`policy.scoring` (strategies and the weights table).
No hardware code lives here (import-linter enforces it); the extender only decodes what
the labeler agent published.
"""
