"""The audits' analyses (pure): a pod's GPUs (:mod:`.pod_audit`, :mod:`.device_list`), an NCCL log
(:mod:`.nccl_log`, :mod:`.nccl_audit`), a whole cluster (:mod:`.cluster_nodes`, :mod:`.cluster_gpus`,
:mod:`.cluster_audit`), with one bandwidth expectation (:mod:`.bandwidth`). The ``gputopo audit``
commands (``gputopo/audit_*.py``) read files, the environment and the Kubernetes API and hand these
modules values."""
