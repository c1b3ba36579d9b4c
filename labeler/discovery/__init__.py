"""Node discovery: the I/O edge that turns hardware into a :class:`~labeler.topology.model.Topology`.

Each source (NVML, ``nvidia-smi topo -m``, sysfs, the kubelet pod-resources API) sits
in its own module behind a small :class:`typing.Protocol` that is passed in as an
argument, never reached through a global, so tests drive the same code with fakes
that behave like the real thing. :mod:`labeler.discovery.merge` joins whatever sources
answered into one topology with provenance and explicit conflicts;
:mod:`labeler.discovery.local` is the one-call entry point used by ``gputopo audit``.
"""
