"""Island term (multi-GPU pods and ranks): keep whole boards whole, pack into broken ones.

0 when the pod takes the node's last free GPUs, 1 when the node is already partly used, 2
when it is entirely free. At most 2, below one ×2 bandwidth step (3 points), so it orders
nodes only within the model's own error (about ×√2) and never against a real bandwidth
difference; and between an empty and a half-used node of the same bandwidth it always picks
the half-used one (ties never spread).
"""

from __future__ import annotations

from policy.scoring.weights import ISLAND_EMPTY, ISLAND_FILLS, ISLAND_PARTLY_USED

__all__ = ["penalty"]


def penalty(free: int, total: int, k: int) -> int:
    """The island penalty of taking ``k`` of ``free`` free GPUs on a node of ``total``.

    >>> penalty(4, 8, 4), penalty(6, 8, 4), penalty(8, 8, 4), penalty(8, 8, 8)
    (0, 1, 2, 0)
    """
    if free <= k:
        return ISLAND_FILLS
    return ISLAND_EMPTY if free >= total else ISLAND_PARTLY_USED
