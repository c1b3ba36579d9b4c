"""Network term (ranks of a multi-node job): the ring's value with the node's network path as a cap, never a bonus.

``V = √(N' · B)``: the geometric mean of the ring capped by the network path (``N``,
:func:`labeler.topology.busbw.predict` with ``multi_node=True``, never above ``B``) and the
node's own ring (``B``). A ×2 in either moves the score 1.5 points, so a node's fast ring
still counts where every candidate's network is the same, and a NIC never lifts a node above
what its ring gives (``N ≤ B`` so ``V ≤ B``). ``N' = N`` only when every fact of the network
path was reported (NIC rates, the serving GPUs' links, the CPU for NICs across sockets);
otherwise :data:`~policy.scoring.weights.UNKNOWN_NETWORK_GBPS` for every such node, so an
unknown network never ranks high and unknown NIC counts invent no differences.
"""

from __future__ import annotations

import math

from policy.scoring.weights import UNKNOWN_NETWORK_GBPS

__all__ = ["counted", "rank_value"]


def counted(network_gbps: float, known: bool) -> float:
    """``N'``: the network figure when it rests on reported facts only, else the unknown network's."""
    return network_gbps if known else UNKNOWN_NETWORK_GBPS


def rank_value(ring_gbps: float, network_gbps: float, known: bool) -> float:
    """``√(N' · B)``.

    >>> round(rank_value(370.8, 48.0, True), 2), round(rank_value(370.8, 48.0, False), 2)
    (133.41, 21.53)
    """
    return math.sqrt(counted(network_gbps, known) * ring_gbps)
