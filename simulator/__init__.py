"""gputopo's discrete-event placement simulator (`gputopo simulate`).

Why a simulator: the claim "topology-aware placement keeps NCCL rings on
islands without wasting GPUs" has to be measured on a real workload, side by
side with what users would otherwise run. The simulator replays a pod list
(the Alibaba openb trace, or a synthetic PyTorchJob + vLLM mix) on a fleet of
real topologies under four policies in one run:

- ``gputopo``: kube-scheduler configured from a KubeSchedulerConfiguration
  file (by default the one gputopo ships) *with* the gputopo extender;
- ``default``: the same scheduler configuration without extenders;
- ``bestfit`` and ``random``: the FGD paper's topology-blind baselines.

Layers: the simulator is pure (no Kubernetes client, HTTP server, NVML,
sockets or subprocesses; import-linter enforces it) and never imports the
extender. It gets the extender's decisions from the policy layer the extender
serves, through one module, :mod:`simulator.gputopo_policy`, and the device
plugin's in-node GPU choice through :mod:`simulator.gpu_choice`.
"""
