"""Where a multi-node job's other ranks run: the job roster and its one summary.

Why a pure module: the affinity strategy (:mod:`policy.scoring.affinity`) scores a
node by how well it matches the job's already-placed ranks, and both the
extender's cached mode (fed by its pod informer) and the simulator (fed by its
bindings) must summarise those ranks the same way. :class:`JobRoster` holds who
runs where; :func:`summarize` turns it into :class:`Siblings`.

The summary per configured locality label (zone, rack, ``nvidia.com/gpu.clique``)
and for the topology class is the **most common value** among the sibling nodes.
Ties go to the value of the first node in name order (deterministic: the
extender once iterated a set here, so a tie depended on the process's string
hash seed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from policy.nodes.facts import NodeFacts
from policy.workload import JobKey, Workload

__all__ = ["DEFAULT_LOCALITY_KEYS", "JobRoster", "Siblings", "summarize"]

#: the node labels the affinity strategy compares by default: the well-known zone label, a rack
#: label of ours, and GPU Feature Discovery's NVLink clique (GB200 NVL72 domains)
DEFAULT_LOCALITY_KEYS: tuple[str, ...] = (
    "topology.kubernetes.io/zone",
    "topology.gputopo.io/rack",
    "nvidia.com/gpu.clique",
)


@dataclass(frozen=True, slots=True)
class Siblings:
    """Where the already-placed pods of the same job run.

    ``locality``: for each configured locality label key, the most common
    value among the sibling pods' nodes (``None`` when none of them has it).
    """

    nodes: frozenset[str]
    locality: tuple[str | None, ...]
    topology_class: str | None


def summarize(nodes: frozenset[str] | set[str], facts: Callable[[str], NodeFacts | None],
              n_keys: int) -> Siblings | None:
    """The majority locality and topology class of ``nodes`` (unknown nodes count for nothing); None if empty."""
    if not nodes:
        return None
    known = [f for n in sorted(nodes) if (f := facts(n)) is not None]
    values: list[str | None] = []
    for i in range(n_keys):
        seen = Counter(v for f in known if i < len(f.locality) and (v := f.locality[i]) is not None)
        values.append(seen.most_common(1)[0][0] if seen else None)
    classes = Counter(f.topology_class for f in known if f.topology_class)
    return Siblings(frozenset(nodes), tuple(values), classes.most_common(1)[0][0] if classes else None)


class JobRoster:
    """Bound pods of multi-node jobs: job → {pod uid: node}.

    Written by one thread (the informer, or the simulator); read by request
    threads without a lock: a member map is copied in one C-level call before
    it is read.
    """

    def __init__(self) -> None:
        self._jobs: dict[JobKey, dict[str, str]] = {}

    def bind(self, job: JobKey, uid: str, node: str) -> None:
        self._jobs.setdefault(job, {})[uid] = node

    def unbind(self, job: JobKey, uid: str) -> None:
        members = self._jobs.get(job)
        if members is not None:
            members.pop(uid, None)
            if not members:
                del self._jobs[job]

    def members(self, job: JobKey) -> Mapping[str, str]:
        return dict(self._jobs.get(job) or {})

    def siblings(self, workload: Workload, facts: Callable[[str], NodeFacts | None], n_keys: int) -> Siblings | None:
        """Where ``workload``'s job's *other* bound pods run, summarised (None: no job, or no other rank placed)."""
        if workload.job is None:
            return None
        members = self._jobs.get(workload.job)
        if not members:
            return None
        nodes = {n for uid, n in list(members.items()) if uid != workload.uid}
        return summarize(nodes, facts, n_keys)

    def __len__(self) -> int:
        return len(self._jobs)
