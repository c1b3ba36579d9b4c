"""gputopo: GPU-topology-aware placement for Kubernetes (command-line entry point)."""

__version__ = "0.1.0"
