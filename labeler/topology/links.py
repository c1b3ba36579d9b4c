"""Link levels: the closed, ordered vocabulary of `nvidia-smi topo -m`.

Why an ordered enum: every decision gputopo makes ("is this ring inside a PCIe
switch?", "which node keeps the tighter island?") is a comparison of link
levels. Encoding the order once (near → far, NVLink best, SYS worst) removes
string comparisons and scattered magic numbers. The NVLink *count* (the ``12``
in ``NV12``) is a separate field of :class:`Link`, because it refines the level
rather than forming new levels.

``SOC`` is the pre-2017 spelling of ``SYS`` and reads as SYS.

What a link is worth in GB/s is not a property of its level alone (NVLink
generation, PCIe generation and width, P2P support, the CPU all enter): the one
bandwidth table is :mod:`labeler.topology.bandwidth`, and the prediction for a
GPU set is :mod:`labeler.topology.busbw`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = [
    "ISLAND_LEVELS",
    "LEVEL_MEANING",
    "SELF",
    "Link",
    "LinkLevel",
    "parse_link_token",
]


class LinkLevel(enum.IntEnum):
    """Path class between two devices, ordered from nearest to farthest."""

    SELF = 0  # "X": the device itself
    NVLINK = 1  # "NV#": a bonded set of # NVLinks (bridge, mesh or NVSwitch)
    PIX = 2  # at most one PCIe bridge (same PCIe switch)
    PXB = 3  # several PCIe bridges, no host bridge
    PHB = 4  # through a PCIe host bridge (the CPU root complex)
    NODE = 5  # between host bridges inside one NUMA node
    SYS = 6  # across the SMP interconnect between NUMA nodes (QPI/UPI/xGMI)

    @property
    def token(self) -> str:
        """The `nvidia-smi` spelling (``NV`` for NVLink, without a count)."""
        return _TOKENS[self]

    @property
    def slug(self) -> str:
        """Lower-case name used in labels, JSON and annotations (``nvlink``, ``pix``...)."""
        return self.name.lower()

    @classmethod
    def from_slug(cls, slug: str) -> LinkLevel:
        """Inverse of :attr:`slug`; also accepts the `nvidia-smi` token (``NV``, ``SOC``)."""
        s = slug.strip().lower()
        if s in ("nv", "nvlink"):
            return cls.NVLINK
        if s == "soc":
            return cls.SYS
        try:
            return cls[s.upper()]
        except KeyError:
            raise ValueError(f"unknown link level {slug!r}") from None


_TOKENS = {
    LinkLevel.SELF: "X",
    LinkLevel.NVLINK: "NV",
    LinkLevel.PIX: "PIX",
    LinkLevel.PXB: "PXB",
    LinkLevel.PHB: "PHB",
    LinkLevel.NODE: "NODE",
    LinkLevel.SYS: "SYS",
}

#: What a path at each level traverses, in the words of `nvidia-smi topo -m`'s legend ("Connection
#: traversing …"; PHB, NODE and SYS traverse PCIe as well). The one table: filter messages
#: ("needs 4 GPUs joined through at most a single PCIe bridge (pix)"), the pod audit ("traffic
#: traverses …") and the picture's legend read it.
LEVEL_MEANING: dict[LinkLevel, str] = {
    LinkLevel.NVLINK: "a bonded set of NVLinks",
    LinkLevel.PIX: "at most a single PCIe bridge",
    LinkLevel.PXB: "multiple PCIe bridges, without the PCIe host bridge",
    LinkLevel.PHB: "a PCIe host bridge (typically the CPU)",
    LinkLevel.NODE: "the interconnect between PCIe host bridges within a NUMA node",
    LinkLevel.SYS: "the SMP interconnect between NUMA nodes (e.g. QPI/UPI)",
}

#: Levels at which islands are computed, nearest first.
ISLAND_LEVELS: tuple[LinkLevel, ...] = (
    LinkLevel.NVLINK,
    LinkLevel.PIX,
    LinkLevel.PXB,
    LinkLevel.PHB,
    LinkLevel.NODE,
    LinkLevel.SYS,
)

@dataclass(frozen=True, slots=True, order=False)
class Link:
    """One cell of the matrix: a level, plus the NVLink count for NVLink cells."""

    level: LinkLevel
    nvlinks: int = 0

    def __post_init__(self) -> None:
        if self.level is LinkLevel.NVLINK:
            if self.nvlinks < 1:
                raise ValueError("an NVLink cell needs a link count >= 1")
        elif self.nvlinks != 0:
            raise ValueError(f"{self.level.token} cannot carry an NVLink count")

    @property
    def token(self) -> str:
        """The `nvidia-smi` spelling: ``X``, ``NV12``, ``PIX``..."""
        if self.level is LinkLevel.NVLINK:
            return f"NV{self.nvlinks}"
        return self.level.token

    @property
    def rank(self) -> tuple[int, int]:
        """Sort key, smaller is better: level first, then *more* NVLinks first."""
        return (int(self.level), -self.nvlinks)

    def __str__(self) -> str:
        return self.token


SELF = Link(LinkLevel.SELF)

_NV = re.compile(r"NV(\d{1,3})")
_PLAIN = {
    "X": LinkLevel.SELF,
    "PIX": LinkLevel.PIX,
    "PXB": LinkLevel.PXB,
    "PHB": LinkLevel.PHB,
    "NODE": LinkLevel.NODE,
    "SYS": LinkLevel.SYS,
    "SOC": LinkLevel.SYS,
}


def parse_link_token(token: str) -> Link | None:
    """Read one matrix cell; ``None`` when the token is not a link token.

    >>> parse_link_token("NV12")
    Link(level=<LinkLevel.NVLINK: 1>, nvlinks=12)
    >>> parse_link_token("SOC").token
    'SYS'
    >>> parse_link_token("0-23") is None
    True
    """
    level = _PLAIN.get(token)
    if level is not None:
        return SELF if level is LinkLevel.SELF else Link(level)
    m = _NV.fullmatch(token)
    if m and int(m.group(1)) >= 1:
        return Link(LinkLevel.NVLINK, int(m.group(1)))
    return None
