"""Extender settings: one pydantic-settings object, env prefix ``GPUTOPO_EXTENDER_``.

Validated once at start-up (bad values raise :class:`~labeler.topology.errors.ConfigError`
before the server binds), so a misconfiguration never runs half-way. CLI flags
override environment variables, which override the defaults.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kubeio import names
from labeler.topology import carrier, labels
from labeler.topology.errors import ConfigError
from policy.scoring import DEFAULT_STRATEGIES, STRATEGIES
from policy.siblings import DEFAULT_LOCALITY_KEYS

__all__ = ["DEFAULT_LOCALITY_KEYS", "ExtenderSettings", "load"]





class ExtenderSettings(BaseSettings):
    """Every knob of ``gputopo extender`` (see ``--help``)."""

    model_config = SettingsConfigDict(env_prefix="GPUTOPO_EXTENDER_", extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(8888, ge=0, le=65535)
    #: plain-HTTP port of /metrics, /healthz and /readyz (0: pick a free one; -1: none, they stay on --port only)
    metrics_port: int = Field(8889, ge=-1, le=65535)
    mode: Literal["stateless", "cached"] = "cached"
    prefix: str = labels.DEFAULT_PREFIX
    strategies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    locality_keys: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_LOCALITY_KEYS))
    resource: str = "nvidia.com/gpu"
    #: request body limit; default per mode (see :attr:`body_limit`)
    max_body_bytes: int | None = Field(None, ge=1024)
    #: filter/prioritize requests handled at once; more are answered 429 (default per mode)
    max_concurrent_requests: int | None = Field(None, ge=1, le=100_000)
    #: open connections; requests on connections beyond it get 503 (uvicorn's limit)
    max_connections: int = Field(4096, ge=1)
    #: worker threads that run filter/prioritize off the event loop
    worker_threads: int = Field(2, ge=1, le=64)
    #: HTTP/1.1 parser: httptools (llhttp, C) or h11 (pure Python); both guarded (extender/server.py)
    http: Literal["h11", "httptools"] = "httptools"
    #: event loop: uvloop (libuv) or asyncio's own
    loop: Literal["asyncio", "uvloop"] = "uvloop"
    #: a request head (line + headers) must arrive within this; also closes silent new connections
    header_timeout_seconds: float = Field(10.0, gt=0)
    #: a request body must arrive within this (answered 408 otherwise)
    body_timeout_seconds: float = Field(30.0, gt=0)
    #: an idle keep-alive connection is closed after this (longer than Go's 90 s client idle timeout)
    idle_timeout_seconds: float = Field(120.0, gt=0)
    #: cached mode: decode labels/annotations of Node objects sent in a ``Nodes`` request (else names only)
    accept_node_objects: bool = False
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    #: client certificates are required and checked against this CA (mutual TLS)
    tls_client_ca_file: str | None = None
    kubeconfig: str | None = None
    resync_seconds: float = Field(600.0, gt=0)
    watch_timeout_seconds: int = Field(300, ge=1)
    page_size: int = Field(500, ge=1)
    #: cached mode: warn when the first sync takes longer than this (the server listens at once)
    sync_timeout_seconds: float = Field(60.0, ge=0)
    #: cached mode: /readyz turns 503 when an informer has been failing for longer than this
    stale_seconds: float = Field(120.0, gt=0)
    #: cached mode: first delay after a failed list/watch (doubles, with jitter, up to the max)
    backoff_seconds: float = Field(1.0, gt=0)
    max_backoff_seconds: float = Field(30.0, gt=0)
    #: cached mode: where the agents' allocation ConfigMaps live (the agent's POD_NAMESPACE)
    allocation_namespace: str = carrier.DEFAULT_NAMESPACE
    #: a node whose allocation ``ts`` is older fails open (the agent re-stamps it every 600 s); 0 = never
    allocation_max_age_seconds: float = Field(1800.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("strategies", "locality_keys", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        return names.split_commas(v)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return labels.validate_prefix(v)

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategy {', '.join(unknown)} (known: {', '.join(STRATEGIES)})")
        if not v:
            raise ValueError("at least one strategy is needed")
        return v

    @field_validator("locality_keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        return names.label_keys(v)

    @field_validator("allocation_namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return names.namespace(v)

    @model_validator(mode="after")
    def _ports(self) -> ExtenderSettings:
        if self.metrics_port > 0 and self.metrics_port == self.port:
            raise ValueError("metrics_port must differ from port (or be -1: no separate port)")
        return self

    @model_validator(mode="after")
    def _tls(self) -> ExtenderSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"{name}: no such file {path!r}")
        return self

    @property
    def body_limit(self) -> int:
        """Bytes a request body may have: ``max_body_bytes``, else 64 MiB stateless / 8 MiB cached.

        Why per mode: a stateless request carries every Node object (25.6 MB at
        5,000 nodes); a cached one carries names (60 KB at 5,000 nodes) and the
        pod, whose API limit is ~1.5 MiB.
        """
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return 64 << 20 if self.mode == "stateless" else 8 << 20

    @property
    def concurrency_limit(self) -> int:
        """Filter/prioritize requests handled at once: ``max_concurrent_requests``, else 4 stateless / 64 cached.

        Why per mode: a stateless request can hold a 64 MiB body and its decoded
        objects (several hundred MB); a cached one holds kilobytes.
        """
        if self.max_concurrent_requests is not None:
            return self.max_concurrent_requests
        return 4 if self.mode == "stateless" else 64

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


def load(**overrides: object) -> ExtenderSettings:
    """Settings from env + overrides (``None`` overrides are ignored); :class:`ConfigError` if invalid."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ExtenderSettings(**given)  # type: ignore[arg-type]
    except ValidationError as err:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors(include_url=False)]
        raise ConfigError("invalid extender settings: " + "; ".join(lines)) from None
