"""What one Node says about its GPUs, read back through the project's codecs, with what is wrong with it.

Why a pure module: ``gputopo audit cluster`` reads Nodes, the agents' allocation ConfigMaps and
Pending pods through the Kubernetes API (``gputopo/cluster_reader.py``), but everything it
concludes follows from values. Tests feed it records without a cluster, and the I/O adapter
hands it small records, never API objects.

Every value read from the cluster is hostile. Each node is decoded on its own with the codecs
(:func:`labeler.topology.labels.decode_labels`, :func:`~labeler.topology.labels.decode_topology`,
:func:`labeler.topology.allocation.decode`), and whatever they refuse, or whatever a decoder
raises, becomes a finding on that node ("undecodable …"): one bad object never stops the audit.

Which nodes the extender judges follows :mod:`policy.nodes.state`, the one definition the extender
and the simulator use too ("ours", trusted status, decodable data, stale allocation): the audit
calls :func:`~policy.nodes.state.classify` on the same labels and annotations, so ``usable`` and
"stale" here mean exactly what the extender does with the node. Freshness is the agent's own
heartbeat: the allocation's ``ts`` is re-stamped every ``allocation_refresh_s`` (the agent's
``allocation_refresh``, 600 s) even when nothing changed, and the extender fails open on a node whose
``ts`` is older than ``allocation_max_age_s`` (its ``allocation_max_age_seconds``, 1800 s). The audit
takes both from their owners' settings.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from labeler.topology import allocation, labels
from labeler.topology.allocation import AllocationState
from labeler.topology.errors import CodecError
from labeler.topology.findings import Severity
from labeler.topology.model import Topology
from policy.nodes.state import NodeState, allocation_text, classify, is_ours, is_stale, status_problem

__all__ = [
    "DEFAULT_POOL_KEYS",
    "DEFAULT_TYPE_KEYS",
    "GFD_COUNT",
    "GFD_PRESENT",
    "AuditConfig",
    "ClusterFinding",
    "Decoder",
    "Freshness",
    "NodeInput",
    "NodeView",
    "view_node",
]

#: node-pool labels of the managed Kubernetes offerings and Karpenter, first match wins (a documented setting)
DEFAULT_POOL_KEYS: tuple[str, ...] = (
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
    "kubernetes.azure.com/agentpool",
    "karpenter.sh/nodepool",
)
#: what kind of machine a node is, first match wins: the well-known instance-type label (set by the
#: cloud provider), its deprecated beta spelling, then NVIDIA GPU Feature Discovery's product label
#: (bare metal without a cloud provider)
DEFAULT_TYPE_KEYS: tuple[str, ...] = (
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "nvidia.com/gpu.product",
)
#: NVIDIA GPU Feature Discovery labels that mark a GPU node even when no capacity is advertised
GFD_PRESENT = "nvidia.com/gpu.present"
GFD_COUNT = "nvidia.com/gpu.count"

_Add = Callable[[Severity, str, str], None]  # view_node's local `add`, passed to its helpers


@dataclass(frozen=True, slots=True)
class ClusterFinding:
    """Something about one or more nodes (or one pod on a node), with a stable machine code.

    ``nodes`` is empty only for findings about the audit's own inputs (a list it could not read).
    """

    severity: Severity
    code: str
    message: str
    nodes: tuple[str, ...] = ()
    pod: str | None = None
    topology_class: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"severity": self.severity.value, "code": self.code, "message": self.message,
                                  "nodes": list(self.nodes)}
        if self.pod is not None:
            out["pod"] = self.pod
        if self.topology_class is not None:
            out["class"] = self.topology_class
        return out


@dataclass(frozen=True, slots=True)
class NodeInput:
    """One Node as the adapter read it: only what the audit uses, every value already a ``str``.

    ``labels``: all the node's labels (pool, instance type, GFD and ours); ``annotations``: ours;
    ``gpu_capacity``: ``status.capacity`` of the GPU resource (``None`` absent, ``-1`` unreadable);
    ``allocation_configmap``: the ``data.allocation`` of the node's ``gputopo-alloc-<node>``
    ConfigMap, which wins over the ``{prefix}allocation`` annotation as in the extender.
    """

    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    gpu_capacity: int | None = None
    unschedulable: bool = False
    allocation_configmap: str | None = None


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """The audit's knobs; the two ages come from the agent's and the extender's settings (no defaults here)."""

    now: float
    allocation_max_age_s: float  # ExtenderSettings.allocation_max_age_seconds; 0 = never stale
    allocation_refresh_s: float  # AgentSettings.allocation_refresh (for messages)
    prefix: str = labels.DEFAULT_PREFIX
    pool_keys: tuple[str, ...] = DEFAULT_POOL_KEYS
    type_keys: tuple[str, ...] = DEFAULT_TYPE_KEYS
    sizes: tuple[int, ...] | None = None  # GPU counts to test stranding against; None: pending, else typical


class Freshness(enum.StrEnum):
    """How current the node's published state is (the allocation's ``ts`` against the extender's rule)."""

    FRESH = "fresh"  # ts within allocation_max_age_s
    STALE = "stale"  # older: the extender fails open on the node
    FUTURE = "future"  # more than allocation_max_age_s ahead of now: a skewed clock hides a dead agent
    UNSTAMPED = "unstamped"  # an allocation without ts (agents before the re-stamp); the extender trusts it
    NONE = "none"  # no allocation published (or undecodable)


@dataclass(slots=True)
class NodeView:
    """One node as decoded.

    ``node_state``: the extender's view of it (:func:`policy.nodes.state.classify`). ``usable``: the
    extender judges it on current data (``node_state`` ok) *and* the audit can count its GPUs: an
    allocation is published (without one the extender estimates "all free") and its ``ts`` is not
    from the future (a skewed clock would hide a dead agent).
    """

    name: str
    gpu_node: bool
    labelled: bool
    pool: str | None
    instance_type: str | None
    gpu_capacity: int | None
    unschedulable: bool
    status: str | None = None
    status_reason: str | None = None
    schema: str | None = None
    topology_class: str | None = None
    summary: labels.LabelSummary | None = None
    topo: Topology | None = None
    gpu_name: str | None = None
    allocation_source: str | None = None  # "configmap" | "annotation"
    state: AllocationState | None = None
    freshness: Freshness = Freshness.NONE
    age_s: float | None = None
    node_state: NodeState = NodeState.NOT_OURS
    usable: bool = False

    @property
    def gpu_count(self) -> int | None:
        if self.topo is not None:
            return len(self.topo.gpus)
        return None if self.summary is None else self.summary.gpu_count


class Decoder:
    """The codecs, memoised by value: identical machines publish identical topology strings.

    A decoded topology and its class are computed once per distinct string; a refused string is
    remembered with the codec's message. Anything a decoder raises counts as refused (a decoder bug
    on hostile input must cost one node, not the audit).
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._topo: dict[str, tuple[Topology, str] | str] = {}

    def topology_or_raise(self, text: str) -> Topology:
        """:meth:`topology` as the node-state rules want it: the topology, or a ``CodecError``."""
        hit = self.topology(text)
        if isinstance(hit, str):
            raise CodecError(hit)
        return hit[0]

    def topology(self, text: str) -> tuple[Topology, str] | str:
        """``(topology, class)`` or the reason it was refused."""
        hit = self._topo.get(text)
        if hit is None:
            try:
                topo = labels.decode_topology({self.prefix + labels.ANNOTATION_TOPOLOGY: text}, prefix=self.prefix)
                hit = "empty" if topo is None else (topo, labels.topology_class(topo))
            except CodecError as err:
                hit = _one_line(str(err))
            except Exception as err:  # a decoder bug on hostile input: this node's problem only
                hit = f"decoder failed: {type(err).__name__}: {_one_line(str(err))}"
            self._topo[text] = hit
        return hit

    def __len__(self) -> int:
        return len(self._topo)


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _first(node_labels: Mapping[str, str], keys: tuple[str, ...], *, with_key: bool) -> str | None:
    for key in keys:
        value = node_labels.get(key)
        if value:
            return f"{key}={value}" if with_key else value
    return None


def _gfd_says_gpu(node_labels: Mapping[str, str]) -> bool:
    if node_labels.get(GFD_PRESENT) == "true":
        return True
    count = node_labels.get(GFD_COUNT, "")
    return count.isdigit() and int(count) > 0


def _age_text(seconds: float) -> str:
    s = int(abs(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def view_node(inp: NodeInput, cfg: AuditConfig, decoder: Decoder) -> tuple[NodeView, list[ClusterFinding]]:
    """Decode one node; never raises for any content of ``inp``."""
    p = cfg.prefix
    lab, ann = inp.labels, inp.annotations
    labelled = is_ours(lab, ann, p)
    # capacity -1: the GPU resource is advertised with an unreadable value, which only a device plugin does
    gpu_node = (inp.gpu_capacity is not None and inp.gpu_capacity != 0) or _gfd_says_gpu(lab)
    view = NodeView(
        name=inp.name, gpu_node=gpu_node, labelled=labelled,
        pool=_first(lab, cfg.pool_keys, with_key=True), instance_type=_first(lab, cfg.type_keys, with_key=False),
        gpu_capacity=inp.gpu_capacity, unschedulable=inp.unschedulable,
    )
    view.topology_class = lab.get(p + labels.TOPOLOGY_CLASS) or None
    found: list[ClusterFinding] = []

    def add(severity: Severity, code: str, message: str) -> None:
        found.append(ClusterFinding(severity, code, f"{inp.name}: {message}", (inp.name,),
                                    topology_class=view.topology_class))

    if inp.gpu_capacity == -1:
        add(Severity.WARNING, "undecodable-capacity", "status.capacity of the GPU resource is not a whole number")
    if not labelled:
        if gpu_node:
            what = (f"capacity {inp.gpu_capacity}" if inp.gpu_capacity and inp.gpu_capacity > 0
                    else "GPU resource advertised" if inp.gpu_capacity else "GPU Feature Discovery labels")
            add(Severity.WARNING, "unlabelled",
                f"GPU node ({what}) without gputopo labels: no agent runs there, or it cannot write its Node")
        return view, found
    view.gpu_node = True
    view.schema = lab.get(p + labels.SCHEMA)
    status = lab.get(p + labels.STATUS)
    view.status = status
    reason = ann.get(p + labels.ANNOTATION_STATUS_REASON)
    view.status_reason = _one_line(reason, 300) if reason else None
    trusted = status_problem(status, p) is None
    if status == labels.Status.ERROR:
        add(Severity.ERROR, "status-error",
            f"status=error ({view.status_reason or 'no reason given'}): the agent cannot describe the node now; "
            "its other labels are kept from an earlier probe and the extender fails open")
    elif status == labels.Status.DEGRADED:
        add(Severity.WARNING, "status-degraded", f"status=degraded ({view.status_reason or 'no reason given'})")
    elif status is None:
        add(Severity.WARNING, "undecodable-status", "no status label (a partial write, or not an agent's); "
            "the extender reads the node as ok")
    elif not trusted:
        add(Severity.WARNING, "undecodable-status", f"status label {_one_line(status, 63)!r} is not "
            "ok|degraded|error; the extender fails open")
    try:
        readable = dict(lab)
        if status not in labels.Status.__members__.values():  # flagged above; read the shapes anyway
            readable[p + labels.STATUS] = labels.Status.OK.value
        view.summary = labels.decode_labels(readable, prefix=p)
        if view.summary is None and status != labels.Status.ERROR:
            add(Severity.WARNING, "undecodable-labels",
                f"schema {_one_line(str(view.schema), 63)!r} or gpu-count missing: not a label set this build reads")
    except CodecError as err:
        add(Severity.WARNING, "undecodable-labels", _one_line(str(err)))
    except Exception as err:  # defensive: a codec bug is this node's problem
        add(Severity.WARNING, "undecodable-labels", f"decoder failed: {type(err).__name__}: {_one_line(str(err))}")
    if view.schema == "v1":
        add(Severity.INFO, "schema-v1", "labels are schema v1 (agent not upgraded): numa-shape/island-numa "
            "have the v1 meaning and the allocation is not re-stamped")
    label_class = view.topology_class
    text = ann.get(p + labels.ANNOTATION_TOPOLOGY)
    if text is None:
        if status != labels.Status.ERROR:
            add(Severity.WARNING, "no-topology", f"labelled but no {p}topology annotation: the extender fails open")
    else:
        decoded = decoder.topology(text)
        if isinstance(decoded, str):
            add(Severity.WARNING, "undecodable-topology", f"{p}topology annotation refused: {decoded}")
        else:
            view.topo, computed = decoded
            names = {g.name for g in view.topo.gpus if g.name}
            view.gpu_name = names.pop() if len(names) == 1 else ("mixed" if names else None)
            if label_class is None:
                view.topology_class = computed
            elif label_class != computed and view.schema == labels.SCHEMA_VERSION:
                add(Severity.WARNING, "class-mismatch",
                    f"label topology-class={_one_line(label_class, 63)} but the topology annotation hashes to "
                    f"{computed}: labels and annotation disagree (a partial write, or edited by hand)")
    _check_capacity(view, add)
    refused = _read_allocation(inp, view, cfg, add)
    view.node_state = _node_state(inp, view, cfg, decoder, refused)
    view.usable = (view.node_state is NodeState.OK and view.state is not None
                   and view.freshness is not Freshness.FUTURE)
    return view, found


def _node_state(inp: NodeInput, view: NodeView, cfg: AuditConfig, decoder: Decoder, refused: str | None) -> NodeState:
    """The extender's rules on this node's data, with the values this audit already decoded."""

    def decoded_allocation(_text: str) -> AllocationState:  # the same text _read_allocation read
        if view.state is None:
            raise CodecError(refused or "undecodable")
        return view.state

    try:
        return classify(inp.labels, inp.annotations, prefix=cfg.prefix, topology=decoder.topology_or_raise,
                        allocation_decoder=decoded_allocation, allocation_configmap=inp.allocation_configmap,
                        allocation_max_age_s=cfg.allocation_max_age_s, now=cfg.now).state
    except Exception:  # defensive: the rules failing on hostile data mark this node unjudged, nothing else
        return NodeState.NO_DATA


def _check_capacity(view: NodeView, add: _Add) -> None:
    if view.topo is None or view.status == labels.Status.ERROR:
        return
    n = len(view.topo.gpus)
    cap = view.gpu_capacity
    if n and (cap is None or cap == 0):
        add(Severity.WARNING, "capacity-differs",
            f"the topology lists {n} GPUs but the node advertises no GPU capacity: the device plugin is not running")
    elif cap is not None and cap > 0 and cap != n:
        add(Severity.INFO, "capacity-differs",
            f"capacity {cap} GPUs but the topology lists {n} (GPU sharing or MIG multiply capacity; "
            "a lost GPU shrinks the topology)")


def _read_allocation(inp: NodeInput, view: NodeView, cfg: AuditConfig, add: _Add) -> str | None:
    """Decode the allocation the extender would read; the codec's message when it is refused."""
    text, view.allocation_source = allocation_text(inp.annotations, inp.allocation_configmap, cfg.prefix)
    if text is None:
        if view.status != labels.Status.ERROR:
            add(Severity.WARNING, "no-allocation",
                "no allocation published (no gputopo-alloc ConfigMap, no allocation annotation): freshness unknown, "
                "and the extender counts every GPU free")
        return None
    try:
        state = allocation.decode(text)
    except CodecError as err:
        add(Severity.WARNING, "undecodable-allocation", f"allocation ({view.allocation_source}) refused: "
            f"{_one_line(str(err))}; the extender fails open")
        return _one_line(str(err))
    except Exception as err:  # defensive: a codec bug is this node's problem
        add(Severity.WARNING, "undecodable-allocation",
            f"allocation decoder failed: {type(err).__name__}: {_one_line(str(err))}")
        return "decoder failed"
    view.state = state
    if state.observed_at is None:
        view.freshness = Freshness.UNSTAMPED
    else:
        age = cfg.now - state.observed_at
        view.age_s = age
        limit = cfg.allocation_max_age_s
        if is_stale(age, limit):
            view.freshness = Freshness.STALE
            add(Severity.WARNING, "stale-allocation",
                f"last confirmed {_age_text(age)} ago, more than allocation_max_age_seconds ({limit:g} s; an agent "
                f"re-stamps every {cfg.allocation_refresh_s:g} s): the agent is gone or cannot write, and the "
                "extender fails open")
        elif limit > 0 and -age > limit:
            view.freshness = Freshness.FUTURE
            add(Severity.WARNING, "allocation-from-future",
                f"allocation stamped {_age_text(age)} in the future: a skewed clock; the extender could not tell "
                "if this agent died")
        else:
            view.freshness = Freshness.FRESH
    if view.topo is not None:
        known = set(view.topo.gpu_indices)
        unknown = sorted((state.free | state.used.keys()) - known)
        if unknown:
            add(Severity.WARNING, "allocation-mismatch",
                f"allocation names GPUs {','.join(map(str, unknown[:16]))} that the topology does not have")
    return None


