"""The gputopo kube-scheduler HTTP extender (FastAPI), see ``docs/extender.md``.

Layers, each importable without the ones below it:

- :mod:`extender.wire`      the extender wire types (Go field names, case-insensitive decode)
- :mod:`policy.workload`    (policy layer) what a Pod asks for (GPU count, intent, job identity)
- :mod:`extender.nodes`     what a Node offers (decoded labels/annotations, free GPUs)
- :mod:`extender.evaluate`  per (topology, free set, k) placement facts, memoised
- :mod:`extender.scoring`   the 0..10 scoring strategies and their one weights table
- :mod:`extender.service`   filter/prioritize on raw bytes (no HTTP), both modes
- :mod:`extender.cache`     the cached mode's Node/Pod informers (kubernetes client)
- :mod:`extender.app`       HTTP: routes, body limit, metrics, health
- :mod:`extender.cli`       ``gputopo extender`` entry point and settings

No hardware code lives here (import-linter enforces it); the extender only
decodes what the labeler agent published.
"""
