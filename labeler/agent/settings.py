"""One typed settings object for the agent, validated once at start-up.

Why pydantic-settings: every knob is readable from the environment
(``GPUTOPO_<NAME>``, the DaemonSet way) and from CLI flags (which win), with
one definition of type, default and bounds. A bad value stops the agent before
it touches the API, with a one-line message (see :func:`load`).

The node name comes from the downward API as ``NODE_NAME`` (``GPUTOPO_NODE_NAME``
also works), the namespace of the allocation ConfigMap as ``POD_NAMESPACE``.

``allocation_carrier`` (default ``configmap``): where the free/used GPU state
goes. ``configmap`` costs the cluster ~1 % of the watch traffic of the Node
annotation (``docs/agent.md``) but only the extender's cached mode reads it;
a stateless extender needs ``annotation`` or ``both``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubeio import names
from labeler.topology import carrier, labels
from labeler.topology.errors import ConfigError

__all__ = ["AgentSettings", "load"]


class AgentSettings(BaseSettings):
    """Agent configuration. Durations are seconds."""

    model_config = SettingsConfigDict(env_prefix="GPUTOPO_", extra="forbid", frozen=True)

    node_name: str = Field(
        default="",
        validation_alias=AliasChoices("node_name", "GPUTOPO_NODE_NAME", "NODE_NAME"),
        description="this node (downward API: spec.nodeName)",
    )
    prefix: str = Field(default=labels.DEFAULT_PREFIX, description="label/annotation key prefix we own")
    probe_interval: float = Field(default=60.0, ge=1, description="hardware re-probe period")
    probe_backoff_max: float = Field(default=600.0, ge=1, description="longest wait between failed probes")
    allocation: bool = Field(default=True, description="publish the GPU allocation (free/used GPUs)")
    allocation_carrier: Literal["configmap", "annotation", "both"] = Field(
        default="configmap",
        description="where the allocation goes: a per-node ConfigMap, the {prefix}allocation Node annotation, or both",
    )
    pod_namespace: str = Field(
        default=carrier.DEFAULT_NAMESPACE,
        validation_alias=AliasChoices("pod_namespace", "GPUTOPO_POD_NAMESPACE", "POD_NAMESPACE"),
        description="namespace of the allocation ConfigMap (downward API: metadata.namespace)",
    )
    allocation_interval: float = Field(default=5.0, ge=0.5, description="pod-resources poll period")
    allocation_min_interval: float = Field(default=10.0, ge=0, description="minimum time between allocation writes")
    allocation_coalesce: float = Field(default=1.0, ge=0, description="quiet time that folds a burst into one write")
    allocation_refresh: float = Field(
        default=600.0, ge=0, description="re-stamp an unchanged allocation this often (extender freshness; 0: never)"
    )
    resync_interval: float = Field(default=300.0, ge=10, description="periodic GET + re-plan (self-healing)")
    publish_attempts: int = Field(default=5, ge=1, le=20, description="tries per publish before PublishError")
    backoff_base: float = Field(default=0.5, gt=0, description="first retry delay")
    backoff_max: float = Field(default=30.0, gt=0, description="largest retry delay")
    publish_retry: float = Field(default=30.0, gt=0, description="wait after a PublishError before trying again")
    request_timeout: float = Field(default=10.0, gt=0, description="per-request API timeout")
    health_host: str = Field(default="0.0.0.0", description="bind address of /healthz and /metrics")
    health_port: int = Field(default=8080, ge=0, le=65535, description="port of /healthz and /metrics (0: off)")
    health_stale_after: float = Field(default=900.0, ge=30, description="/healthz fails without a sync this long")
    kubeconfig: Path | None = Field(default=None, description="kubeconfig file (default: in-cluster config)")
    podresources_socket: Path = Field(
        default=Path("/var/lib/kubelet/pod-resources/kubelet.sock"), description="kubelet pod-resources socket"
    )
    sysfs_root: Path = Field(default=Path("/"), description="where the host's /sys is mounted, minus '/sys'")
    topology_file: Path | None = Field(
        default=None, description="read `nvidia-smi topo -m` text from this file instead of probing"
    )
    once: bool = Field(default=False, description="probe, publish once, exit")
    dry_run: bool = Field(default=False, description="print planned patches as JSON; never write")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return labels.validate_prefix(v)

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.upper()
        if v not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return v

    @field_validator("node_name")
    @classmethod
    def _node(cls, v: str) -> str:
        return names.node_name(v) if v.strip() else ""  # empty: checked with dry_run in _consistent

    @field_validator("pod_namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return names.namespace(v)

    @model_validator(mode="after")
    def _consistent(self) -> AgentSettings:
        if not self.node_name and not self.dry_run:
            raise ValueError("node name is required: set NODE_NAME (downward API) or --node-name")
        if self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max must be >= backoff_base")
        if self.health_stale_after <= self.resync_interval:
            raise ValueError("health_stale_after must exceed resync_interval (a healthy idle agent syncs once per "
                             "resync_interval)")
        return self


def _one_line(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e.get("loc", ())) or "settings"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        value = e.get("input")
        shown = f" (got {value!r})" if where != "settings" and not isinstance(value, dict) else ""
        parts.append(f"{where}: {msg}{shown}")
    return "invalid settings: " + "; ".join(parts)


def load(overrides: Mapping[str, Any] | None = None) -> AgentSettings:
    """Settings from the environment, CLI ``overrides`` winning; ``ConfigError`` with one line if invalid."""
    known = {f"GPUTOPO_{name.upper()}" for name in AgentSettings.model_fields}
    unknown = sorted(k for k in os.environ if k.startswith("GPUTOPO_") and k not in known)
    if unknown:  # pydantic-settings ignores unknown variables; a misspelled knob must not be silently dropped
        raise ConfigError(f"invalid settings: unknown environment variable(s): {', '.join(unknown)}")
    try:
        return AgentSettings(**dict(overrides or {}))
    except ValidationError as err:
        raise ConfigError(_one_line(err)) from None
