"""What a Pod asks for: GPU count, placement intent, workload kind and job identity.

Why a separate, pure module: the same reading is needed by filter, prioritize
and the cached mode's pod informer (to account for bound pods and find job
siblings), and it must never raise on a strange Pod — a kube-scheduler request
is never answered with an error because of a pod we do not understand.

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
and the problem is returned in :attr:`Workload.problems` (logged and counted
by the service).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
TRAINJOB_STEP = "trainer.kubeflow.org/trainjob-ancestor-step"


class Intent(enum.Enum):
    """How hard the topology constraint is."""

    REQUIRED = "required"  # filter drops nodes that cannot meet the level
    PREFERRED = "preferred"  # scoring only (the default)
    IGNORE = "ignore"  # the extender passes every node and scores it neutrally


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
    """Everything the extender needs to know about one pod."""

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


_DECIMAL_SUFFIX = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_BINARY_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?\s*$")


def parse_quantity_int(value: Any) -> int | None:
    """A Kubernetes quantity as a whole count (``"4"``, ``4``, ``"2k"``); ``None`` if unreadable.

    GPUs are whole devices; a fractional quantity (``"500m"``) is rejected by
    the API server for extended resources, so we round it up here rather than fail.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(-(-value // 1))
    if not isinstance(value, str):
        return None
    m = _QUANTITY.match(value)
    if not m:
        return None
    number, suffix = float(m.group(1)), m.group(2)
    if suffix is None:
        scaled = number
    elif suffix == "m":
        scaled = number / 1000
    elif suffix in _DECIMAL_SUFFIX:
        scaled = number * _DECIMAL_SUFFIX[suffix]
    elif suffix in _BINARY_SUFFIX:
        scaled = number * _BINARY_SUFFIX[suffix]
    else:  # exponent form "1e3"
        scaled = number * 10 ** int(suffix[1:])
    return int(-(-scaled // 1))


def _container_gpus(container: Any, resource: str) -> int:
    if not isinstance(container, dict):
        return 0
    res = container.get("resources")
    if not isinstance(res, dict):
        return 0
    for section in ("limits", "requests"):
        values = res.get(section)
        if isinstance(values, dict) and resource in values:
            n = parse_quantity_int(values[resource])
            return max(n, 0) if n is not None else 0
    return 0


def gpu_request(pod: Mapping[str, Any], resource: str = GPU_RESOURCE) -> int:
    """The pod's effective GPU request, per Kubernetes' rules (see module docstring).

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
    total = sum(_container_gpus(c, resource) for c in containers) if isinstance(containers, list) else 0
    init_max = 0
    if isinstance(inits, list):
        sidecars = 0
        for c in inits:
            n = _container_gpus(c, resource)
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
    name = labels.get(KF_JOB_NAME)
    if isinstance(name, str) and name:
        rtype = labels.get(KF_REPLICA_TYPE) or labels.get(KF_JOB_ROLE) or "replica"
        idx = labels.get(KF_REPLICA_INDEX, "")
        return JobKey(namespace, "pytorchjob", name), f"{rtype}-{idx}" if idx != "" else str(rtype)
    js = labels.get(TRAINJOB_NAME) or labels.get(JOBSET_NAME)
    if isinstance(js, str) and js:
        rjob = labels.get(JOBSET_REPLICATED_JOB, "job")
        idx = labels.get(JOB_COMPLETION_INDEX, "")
        return JobKey(namespace, "jobset", js), f"{rjob}-{idx}" if idx != "" else str(rjob)
    return None, None


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
                words.extend(str(w) for w in value)
        for i, word in enumerate(words):
            low = word.lower()
            if any(h in low for h in _INFERENCE_HINTS):
                inference = True
            flag, _, inline = word.partition("=")
            if flag in _TP_FLAGS:
                inference = True
                text = inline if inline else (words[i + 1] if i + 1 < len(words) else "")
                if text.isdigit():
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
    namespace = str(meta.get("namespace") or "default")
    name = str(meta.get("name") or meta.get("generateName") or "")
    gpus = gpu_request(pod, resource)

    raw_intent = annotations.get(f"{prefix}placement")
    intent = Intent.PREFERRED
    if raw_intent is not None:
        try:
            intent = Intent(str(raw_intent).strip().lower())
        except ValueError:
            problems.append(f"{prefix}placement={raw_intent!r} is not required|preferred|ignore; using preferred")

    max_level: LinkLevel | None = None
    raw_level = annotations.get(f"{prefix}max-level")
    if raw_level is not None:
        try:
            max_level = LinkLevel.from_slug(str(raw_level))
            if max_level is LinkLevel.SELF:
                raise ValueError("self")
        except ValueError:
            problems.append(f"{prefix}max-level={raw_level!r} is not nvlink|pix|pxb|phb|node|sys; ignoring it")
            max_level = None
            if intent is Intent.REQUIRED:
                intent = Intent.PREFERRED
                problems.append("placement falls back to preferred because max-level is invalid")

    job, replica = job_key(namespace, labels)
    inference, tp = _scan_args(spec)
    kind_override = annotations.get(f"{prefix}workload")
    if kind_override is not None and str(kind_override).lower() not in ("training", "inference", "batch"):
        problems.append(f"{prefix}workload={kind_override!r} is not training|inference|batch; guessing")
        kind_override = None
    if kind_override is not None:
        override = str(kind_override).lower()
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
        uid=str(meta.get("uid") or ""),
        gpus=gpus,
        intent=intent,
        max_level=max_level,
        kind=kind,
        job=job,
        replica=replica,
        tensor_parallel=(gpus if inference and gpus > 0 else None),
        problems=tuple(problems),
    )


def _single_node_job(spec: Mapping[str, Any]) -> bool:
    """A training job declared single-node (``PET_NNODES=1``): no cross-node traffic to optimise."""
    for c in spec.get("containers") or []:
        if not isinstance(c, dict):
            continue
        for env in c.get("env") or []:
            if isinstance(env, dict) and env.get("name") == "PET_NNODES" and str(env.get("value", "")) in ("1", "1:1"):
                return True
    return False
