"""The placement decision: what a node can do (:mod:`.evaluation`), decided once per group and cached
(:mod:`.cache`), answered per node with its reasons (:mod:`.decide`)."""
