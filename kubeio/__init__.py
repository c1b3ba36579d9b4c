"""kubeio: the Kubernetes API plumbing every adapter shares (client, paged LIST, object fields).

Why a package of its own: the extender, the agent and the CLI's audits are sibling adapters
that may not import each other (docs/architecture.md, the "Layers" contract), yet all three talk
to the same API server and must do it the same way: one client builder with one configuration
order (:mod:`kubeio.client`), one paged LIST that survives an expired continue token
(:mod:`kubeio.pager`), one tolerant reading of raw object fields (:mod:`kubeio.fields`) and one
set of Kubernetes name rules for settings (:mod:`kubeio.names`). It sits below the adapters and
beside the policy layer, and imports only the topology core and the ``kubernetes`` client.
"""
