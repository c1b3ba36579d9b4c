"""Workload understanding: GPU counts per Kubernetes rules, intents, job identity, kinds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ext_support import PREFIX, PROTOCOL, pod

from labeler.topology.links import LinkLevel
from policy import workload as wl


def containers(*limits: Any, inits: tuple[Any, ...] = (), sidecars: tuple[Any, ...] = ()) -> dict[str, Any]:
    def c(v: Any) -> dict[str, Any]:
        if v is None:
            return {"name": "x"}
        if isinstance(v, tuple):  # (section, value)
            return {"name": "x", "resources": {v[0]: {"nvidia.com/gpu": v[1]}}}
        return {"name": "x", "resources": {"limits": {"nvidia.com/gpu": v}, "requests": {"nvidia.com/gpu": v}}}

    init = [c(v) for v in inits] + [dict(c(v), restartPolicy="Always") for v in sidecars]
    return {"spec": {"containers": [c(v) for v in limits], "initContainers": init}}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (containers("4"), 4),
        (containers("2", "1"), 3),  # sum over containers
        (containers("1", inits=("4",)), 4),  # max(sum, max init)
        (containers("3", inits=("2", "1")), 3),
        (containers(("requests", "2")), 2),  # requests when no limit
        (containers(("limits", 2)), 2),  # integer quantity
        (containers(None, "1"), 1),
        (containers("2", sidecars=("1",), inits=("2",)), 3),  # sidecar runs beside the app: 2+1; init 1+2=3
        (containers("bogus"), 0),
        (containers("1k"), 1000),
        ({"spec": {"containers": None}}, 0),
        ({}, 0),
    ],
)
def test_gpu_request(spec: dict[str, Any], expected: int) -> None:
    assert wl.gpu_request(spec) == expected


def test_payload_pod_is_a_distributed_pytorchjob_rank() -> None:
    p = json.loads((PROTOCOL / "pod-pytorchjob-worker.json").read_text())
    w = wl.parse(p)
    assert w.gpus == 4 and w.kind is wl.Kind.DISTRIBUTED
    assert w.job == wl.JobKey("ml-team", "pytorchjob", "resnet50-ddp")
    assert w.replica == "worker-1" and w.intent is wl.Intent.PREFERRED and w.problems == ()


def test_pytorchjob_master_role_and_single_node_job() -> None:
    labels_ = {"training.kubeflow.org/job-name": "j", "training.kubeflow.org/job-role": "master",
               "training.kubeflow.org/replica-type": "master", "training.kubeflow.org/replica-index": "0"}
    p = pod(8, labels_=labels_)
    assert wl.parse(p).replica == "master-0"
    p["spec"]["containers"][0]["env"] = [{"name": "PET_NNODES", "value": "1"}]
    w = wl.parse(p)
    assert w.kind is wl.Kind.MULTI and w.job is not None  # single node: no cross-node scoring


def test_trainer_v2_jobset_pod() -> None:
    labels_ = {
        "jobset.sigs.k8s.io/jobset-name": "ft-llama",
        "jobset.sigs.k8s.io/replicatedjob-name": "node",
        "batch.kubernetes.io/job-completion-index": "3",
        "trainer.kubeflow.org/trainjob-ancestor-step": "trainer",
    }
    w = wl.parse(pod(8, labels_=labels_))
    assert w.job == wl.JobKey("ml-team", "jobset", "ft-llama") and w.replica == "node-3"
    assert w.kind is wl.Kind.DISTRIBUTED
    # with Trainer's own trainjob-name label, that names the job
    w = wl.parse(pod(8, labels_=labels_ | {"trainer.kubeflow.org/trainjob-name": "ft"}))
    assert w.job == wl.JobKey("ml-team", "jobset", "ft")


@pytest.mark.parametrize(
    ("args", "gpus", "kind", "problem"),
    [
        (["vllm", "serve", "m", "--tensor-parallel-size", "2"], 2, wl.Kind.INFERENCE, False),
        (["python3", "-m", "sglang.launch_server", "--tp-size=4"], 4, wl.Kind.INFERENCE, False),
        (["vllm", "serve", "m", "--tensor-parallel-size", "4"], 2, wl.Kind.INFERENCE, True),  # TP != GPUs
        (["vllm", "serve", "m"], 1, wl.Kind.SINGLE, False),
        (["train.py"], 2, wl.Kind.MULTI, False),
    ],
)
def test_inference_detection(args: list[str], gpus: int, kind: wl.Kind, problem: bool) -> None:
    w = wl.parse(pod(gpus, args=args))
    assert w.kind is kind
    assert bool(w.problems) is problem
    if kind is wl.Kind.INFERENCE:
        assert w.tensor_parallel == gpus


def test_intent_annotations() -> None:
    w = wl.parse(pod(4, annotations={PREFIX + "placement": "Required", PREFIX + "max-level": "PXB"}))
    assert w.intent is wl.Intent.REQUIRED and w.max_level is LinkLevel.PXB and not w.problems
    w = wl.parse(pod(4, annotations={PREFIX + "placement": "sometimes"}))
    assert w.intent is wl.Intent.PREFERRED and "sometimes" in w.problems[0]
    w = wl.parse(pod(4, annotations={PREFIX + "placement": "required", PREFIX + "max-level": "x"}))
    assert w.intent is wl.Intent.PREFERRED and w.max_level is None and len(w.problems) == 2
    w = wl.parse(pod(4, annotations={PREFIX + "workload": "inference"}, labels_={
        "training.kubeflow.org/job-name": "j"}))
    assert w.kind is wl.Kind.INFERENCE and w.job is None
    w = wl.parse(pod(4, annotations={PREFIX + "workload": "gaming"}))
    assert w.problems and w.kind is wl.Kind.MULTI


def test_parse_never_raises_on_junk() -> None:
    for junk in (None, {}, {"metadata": "x", "spec": []}, {"spec": {"containers": [1, "a", None]}},
                 {"metadata": {"annotations": {PREFIX + "max-level": 7}}}):
        w = wl.parse(junk)  # type: ignore[arg-type]
        assert w.gpus == 0


def test_quantities() -> None:
    assert wl.parse_quantity_int("4") == 4
    assert wl.parse_quantity_int("500m") == 1
    assert wl.parse_quantity_int("1e1") == 10
    assert wl.parse_quantity_int("2Ki") == 2048
    assert wl.parse_quantity_int(True) is None
    assert wl.parse_quantity_int("four") is None
