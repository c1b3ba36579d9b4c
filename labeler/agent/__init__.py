"""The node agent (``gputopo agent``): probe the hardware, publish labels, annotations and allocations.

I/O edge around the pure core: :mod:`.patch` plans (pure), :mod:`.publish` talks to the
API server, :mod:`.loop` schedules, :mod:`.health` serves /healthz and /metrics,
:mod:`.factory` wires the real discovery sources, :mod:`.cli` is the entry point.
"""
