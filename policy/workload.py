"""What a Pod asks for: GPU count, placement intent, workload kind and job identity.

Why a separate, pure module in the policy layer: the same reading is needed by
the extender's filter and prioritize, its cached mode's pod informer (to account
for bound pods and find job siblings), the simulator (which builds the Pod a
controller would create and reads it back here) and the cluster audit; and it
must never raise on a strange Pod — a kube-scheduler request is never answered
with an error because of a pod we do not understand.

GPU count (Kubernetes' effective request, ``resourcehelper.PodRequests``):
``max(sum over containers, max over init containers)`` of ``nvidia.com/gpu``,
reading ``limits`` and falling back to ``requests`` (for extended resources
the API server requires requests == limits, so either is the request).
Restartable init containers (sidecars, ``restartPolicy: Always``) run next to
the app containers, so they are added to the sum as Kubernetes does.

Intent annotations (documented in ``docs/extender.md``):

- ``gputopo.io/placement: required|preferred|ignore`` (default ``preferred``);
- ``gputopo.io/max-level: nvlink|pix|pxb|phb|node|sys``: the worst link allowed
  inside the pod's GPU set when ``required``;
- ``gputopo.io/workload: training|inference|batch`` overrides the kind guessed
  from labels and container arguments.

An invalid value never fails the request: the pod falls back to ``preferred``
and the problem is returned in :attr:`Workload.problems` (the extender logs
and counts it).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labeler.topology import limits
from labeler.topology.labels import POD_MAX_LEVEL, POD_PLACEMENT, POD_WORKLOAD
from labeler.topology.links import LinkLevel

__all__ = [
    "GPU_RESOURCE",
    "Intent",
    "JobKey",
    "Kind",
    "Workload",
    "gpu_request",
    "job_key",
    "parse",
    "parse_quantity_int",
    "unreadable",
]

GPU_RESOURCE = "nvidia.com/gpu"

# Kubeflow Training Operator v1 (kubeflow/common pkg/apis/common/v1/constants.go)
KF_JOB_NAME = "training.kubeflow.org/job-name"
KF_REPLICA_TYPE = "training.kubeflow.org/replica-type"
KF_REPLICA_INDEX = "training.kubeflow.org/replica-index"
KF_JOB_ROLE = "training.kubeflow.org/job-role"
# Trainer v2 runs on JobSet; JobSet labels every pod, Trainer adds its own keys.
JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
JOBSET_REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
TRAINJOB_NAME = "trainer.kubeflow.org/trainjob-name"


class Intent(enum.Enum):
    """How hard the topology constraint is."""

    REQUIRED = "required"  # filter drops nodes that cannot meet the level
    PREFERRED = "preferred"  # scoring only (the default)
    IGNORE = "ignore"  # every node passes and scores neutrally (0)


class Kind(enum.Enum):
    """What the pod's GPUs will do, which picks the column of the weights table."""

    SINGLE = "single"  # one GPU: pack into broken islands
    INFERENCE = "inference"  # tensor-parallel serving, TP = GPUs per pod
    MULTI = "multi"  # one pod, several GPUs, NCCL inside the pod
    DISTRIBUTED = "distributed"  # one rank of a multi-node training job


@dataclass(frozen=True, slots=True)
class JobKey:
    """Identity of a multi-pod training job: siblings share it."""

    namespace: str
    framework: str  # "pytorchjob" (training-operator v1) or "jobset" (Trainer v2 / JobSet)
    name: str


@dataclass(frozen=True, slots=True)
class Workload:
    """Everything a placement decision needs to know about one pod."""

    namespace: str
    name: str
    uid: str
    gpus: int
    intent: Intent
    max_level: LinkLevel | None
    kind: Kind
    job: JobKey | None
    replica: str | None  # "worker-1", "node-0"... for logs
    tensor_parallel: int | None
    problems: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


_DECIMAL_SUFFIX = {"k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}  # powers of ten
_BINARY_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}  # powers of two
# Kubernetes' quantity grammar (apimachinery resource.Quantity): signed number, optional suffix
_QUANTITY = re.compile(
    r"\s*([+-]?)(\d*)(?:\.(\d*))?(?:([eE][+-]?\d{1,4})|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?\s*"
)
#: the largest GPU count we read; Kubernetes stores quantities as int64 milli-units
MAX_GPU_QUANTITY = (1 << 63) // 1000


def parse_quantity_int(value: Any) -> int | None:
    """A Kubernetes quantity as a whole count (``"4"``, ``4``, ``"2k"``); ``None`` if unreadable.

    GPUs are whole devices; a fractional quantity (``"500m"``) is rejected by
    the API server for extended resources, so we round it up here rather than fail.
    Exact integer arithmetic (no floats): ``"1e400"``, 400 nines, ``NaN`` and
    infinities are unreadable (``None``), never an ``OverflowError``; so is
    anything above :data:`MAX_GPU_QUANTITY` or longer than ``MAX_QUANTITY_CHARS``.

    >>> [parse_quantity_int(v) for v in ("4", "500m", "1e1", "2Ki", "1e400", "9" * 400, float("nan"), 2.5)]
    [4, 1, 10, 2048, None, None, None, 3]
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) <= MAX_GPU_QUANTITY else None
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_GPU_QUANTITY:
            return None
        return math.ceil(value)
    if not isinstance(value, str) or len(value) > limits.MAX_QUANTITY_CHARS:
        return None
    m = _QUANTITY.fullmatch(value)
    if not m or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac, exponent, suffix = (g or "" for g in m.groups())
    numerator = int((whole or "0") + frac)
    denominator = 10 ** len(frac)
    if exponent:
        power = int(exponent[1:])
        if power > 30:  # 10**31 GPUs: unreadable, not huge
            return None
        if power >= 0:
            numerator *= 10**power
        else:
            denominator *= 10**-power
    elif suffix == "m":
        denominator *= 1000
    elif suffix in _DECIMAL_SUFFIX:
        numerator *= 10 ** _DECIMAL_SUFFIX[suffix]
    elif suffix in _BINARY_SUFFIX:
        numerator <<= _BINARY_SUFFIX[suffix]
    count: int = -(-numerator // denominator)  # round up: a fraction of a GPU is a whole one
    if count > MAX_GPU_QUANTITY:
        return None
    return -count if sign == "-" and count else count


def _container_gpus(container: Any, resource: str, problems: list[str] | None = None) -> int:
    if not isinstance(container, dict):
        return 0
    res = container.get("resources")
    if not isinstance(res, dict):
        return 0
    for section in ("limits", "requests"):
        values = res.get(section)
        if isinstance(values, dict) and resource in values:
            n = parse_quantity_int(values[resource])
            if n is None and problems is not None:
                shown = repr(values[resource])
                problems.append(f"{resource} {section} {shown[:40]}{'...' if len(shown) > 40 else ''} "
                                "is not a readable quantity; counted as 0")
            return max(n, 0) if n is not None else 0
    return 0


def gpu_request(pod: Mapping[str, Any], resource: str = GPU_RESOURCE, problems: list[str] | None = None) -> int:
    """The pod's effective GPU request, per Kubernetes' rules (see module docstring).

    Unreadable quantities count as 0 and, when ``problems`` is given, are reported there.

    >>> gpu_request({"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}},
    ...     {"resources": {"requests": {"nvidia.com/gpu": 1}}}],
    ...     "initContainers": [{"resources": {"limits": {"nvidia.com/gpu": "4"}}}]}})
    4
    """
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return 0
    containers = spec.get("containers") or []
    inits = spec.get("initContainers") or []
    total = sum(_container_gpus(c, resource, problems) for c in containers) if isinstance(containers, list) else 0
    init_max = 0
    if isinstance(inits, list):
        sidecars = 0
        for c in inits:
            n = _container_gpus(c, resource, problems)
            if isinstance(c, dict) and c.get("restartPolicy") == "Always":
                sidecars += n  # a sidecar keeps running next to the app containers
                init_max = max(init_max, sidecars)
            else:
                init_max = max(init_max, sidecars + n)
        total += sidecars
    return max(total, init_max)


def _labels(meta: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = meta.get(field)
    return value if isinstance(value, dict) else {}


def job_key(namespace: str, labels: Mapping[str, Any]) -> tuple[JobKey | None, str | None]:
    """The training job a pod belongs to (and its replica, for logs), from well-known labels."""
    name = _label(labels, KF_JOB_NAME)
    if name:
        rtype = _label(labels, KF_REPLICA_TYPE) or _label(labels, KF_JOB_ROLE) or "replica"
        idx = _label(labels, KF_REPLICA_INDEX)
        return JobKey(namespace, "pytorchjob", name), f"{rtype}-{idx}" if idx else rtype
    js = _label(labels, TRAINJOB_NAME) or _label(labels, JOBSET_NAME)
    if js:
        rjob = _label(labels, JOBSET_REPLICATED_JOB) or "job"
        idx = _label(labels, JOB_COMPLETION_INDEX)
        return JobKey(namespace, "jobset", js), f"{rjob}-{idx}" if idx else rjob
    return None, None


def _label(labels: Mapping[str, Any], key: str) -> str:
    """A label value as Kubernetes allows it (a string of at most 63 characters), else ``""``."""
    value = labels.get(key)
    return value if isinstance(value, str) and len(value) <= 63 else ""


_TP_FLAGS = ("--tensor-parallel-size", "--tp-size", "--tp", "-tp", "--num-shard")
_INFERENCE_HINTS = ("vllm", "sglang", "text-generation-launcher", "tritonserver", "trtllm-serve", "lmdeploy")


def _scan_args(spec: Mapping[str, Any]) -> tuple[bool, int | None]:
    """Inference hints in container command/args, and a declared tensor-parallel size."""
    inference, tp = False, None
    containers = spec.get("containers")
    for c in containers if isinstance(containers, list) else []:
        if not isinstance(c, dict):
            continue
        words: list[str] = []
        for field in ("command", "args"):
            value = c.get(field)
            if isinstance(value, list):
                words.extend(w for w in value if isinstance(w, str))
        for i, word in enumerate(words):
            low = word.lower()
            if any(h in low for h in _INFERENCE_HINTS):
                inference = True
            flag, _, inline = word.partition("=")
            if flag in _TP_FLAGS:
                inference = True
                text = inline if inline else (words[i + 1] if i + 1 < len(words) else "")
                if text.isascii() and text.isdigit() and len(text) <= 6:
                    tp = int(text)
    return inference, tp


def parse(pod: Mapping[str, Any] | None, *, prefix: str = "gputopo.io/", resource: str = GPU_RESOURCE) -> Workload:
    """Read a Pod object (as JSON-decoded dict). Never raises; oddities go to ``problems``."""
    problems: list[str] = []
    pod = pod if isinstance(pod, dict) else {}
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(meta, dict) and isinstance(spec, dict)
    labels = _labels(meta, "labels")
    annotations = _labels(meta, "annotations")
    namespace = _name(meta.get("namespace")) or "default"
    name = _name(meta.get("name")) or _name(meta.get("generateName"))
    gpus = gpu_request(pod, resource, problems)

    raw_intent = _short(annotations.get(f"{prefix}{POD_PLACEMENT}"))
    intent = Intent.PREFERRED
    if raw_intent is not None:
        try:
            intent = Intent(raw_intent.strip().lower())
        except ValueError:
            problems.append(f"{prefix}{POD_PLACEMENT}={raw_intent!r} is not required|preferred|ignore; using preferred")

    max_level: LinkLevel | None = None
    raw_level = _short(annotations.get(f"{prefix}{POD_MAX_LEVEL}"))
    if raw_level is not None:
        try:
            max_level = LinkLevel.from_slug(raw_level)
            if max_level is LinkLevel.SELF:
                raise ValueError("self")
        except ValueError:
            problems.append(f"{prefix}{POD_MAX_LEVEL}={raw_level!r} is not nvlink|pix|pxb|phb|node|sys; ignoring it")
            max_level = None
            if intent is Intent.REQUIRED:
                intent = Intent.PREFERRED
                problems.append("placement falls back to preferred because max-level is invalid")

    job, replica = job_key(namespace, labels)
    inference, tp = _scan_args(spec)
    kind_override = _short(annotations.get(f"{prefix}{POD_WORKLOAD}"))
    if kind_override is not None and kind_override.lower() not in ("training", "inference", "batch"):
        problems.append(f"{prefix}{POD_WORKLOAD}={kind_override!r} is not training|inference|batch; guessing")
        kind_override = None
    if kind_override is not None:
        override = kind_override.lower()
        inference = override == "inference"
        if override != "training":
            job = None  # inference and batch pods have no cross-node siblings to follow
    if gpus <= 1:
        kind = Kind.SINGLE  # TP=1 serving packs like any single-GPU pod
    elif inference:
        kind = Kind.INFERENCE
    elif job is not None and not _single_node_job(spec):
        kind = Kind.DISTRIBUTED
    else:
        kind = Kind.MULTI
    if inference and tp is not None and gpus > 0 and tp != gpus:
        problems.append(f"tensor-parallel size {tp} in the container args differs from {gpus} GPUs requested")
    return Workload(
        namespace=namespace,
        name=name,
        uid=_name(meta.get("uid")),
        gpus=gpus,
        intent=intent,
        max_level=max_level,
        kind=kind,
        job=job,
        replica=replica,
        tensor_parallel=(gpus if inference and gpus > 0 else None),
        problems=tuple(problems),
    )


def unreadable(problem: str) -> Workload:
    """The workload of a pod we could not read at all: no GPUs counted, topology ignored, one problem."""
    return Workload(namespace="default", name="", uid="", gpus=0, intent=Intent.IGNORE, max_level=None,
                    kind=Kind.SINGLE, job=None, replica=None, tensor_parallel=None, problems=(problem,))


def _single_node_job(spec: Mapping[str, Any]) -> bool:
    """A training job declared single-node (``PET_NNODES=1``): no cross-node traffic to optimise."""
    containers = spec.get("containers")
    for c in containers if isinstance(containers, list) else []:
        env_list = c.get("env") if isinstance(c, dict) else None
        for env in env_list if isinstance(env_list, list) else []:  # `env: 5` is not a list of vars
            if isinstance(env, dict) and env.get("name") == "PET_NNODES" and env.get("value") in ("1", "1:1"):
                return True
    return False


def _name(value: Any) -> str:
    """An object name/namespace/uid as Kubernetes allows it (a string of at most 253 characters), else ``""``."""
    return value if isinstance(value, str) and len(value) <= 253 else ""


def _short(value: Any) -> str | None:
    """An annotation value we compare against a keyword: strings only, shown cut to 64 characters."""
    if value is None:
        return None
    return value[:64] if isinstance(value, str) else f"<{type(value).__name__}>"
