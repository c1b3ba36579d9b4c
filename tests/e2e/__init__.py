"""End-to-end scenarios against a real control plane (kube-apiserver, etcd, kube-scheduler).

See docs/e2e.md. ``python -m tests.e2e.cluster up|down|env`` starts the same cluster by hand.
"""
