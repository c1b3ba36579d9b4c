"""gputopo labeler: node discovery, the topology core and the DaemonSet agent."""
