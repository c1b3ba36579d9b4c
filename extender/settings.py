"""Extender settings: one pydantic-settings object, env prefix ``GPUTOPO_EXTENDER_``.

Validated once at start-up (bad values raise :class:`~labeler.topology.errors.ConfigError`
before the server binds), so a misconfiguration never runs half-way. CLI flags
override environment variables, which override the defaults.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from extender.scoring import DEFAULT_STRATEGIES, STRATEGIES
from labeler.topology import carrier, labels
from labeler.topology.errors import ConfigError

__all__ = ["DEFAULT_LOCALITY_KEYS", "ExtenderSettings", "load"]

DEFAULT_LOCALITY_KEYS: tuple[str, ...] = (
    "topology.kubernetes.io/zone",
    "topology.gputopo.io/rack",
    "nvidia.com/gpu.clique",
)


def _split(value: object) -> object:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


class ExtenderSettings(BaseSettings):
    """Every knob of ``gputopo extender`` (see ``--help``)."""

    model_config = SettingsConfigDict(env_prefix="GPUTOPO_EXTENDER_", extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(8888, ge=0, le=65535)
    mode: Literal["stateless", "cached"] = "cached"
    prefix: str = labels.DEFAULT_PREFIX
    strategies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    locality_keys: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_LOCALITY_KEYS))
    resource: str = "nvidia.com/gpu"
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    kubeconfig: str | None = None
    resync_seconds: float = Field(600.0, gt=0)
    watch_timeout_seconds: int = Field(300, ge=1)
    page_size: int = Field(500, ge=1)
    sync_timeout_seconds: float = Field(60.0, ge=0)
    #: cached mode: where the agents' allocation ConfigMaps live (the agent's POD_NAMESPACE)
    allocation_namespace: str = Field(carrier.DEFAULT_NAMESPACE, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    #: a node whose allocation ``ts`` is older fails open (the agent re-stamps it every 600 s); 0 = never
    allocation_max_age_seconds: float = Field(1800.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("strategies", "locality_keys", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        return _split(v)

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
        bad = [k for k in v if not labels.is_valid_label_key(k)]
        if bad:
            raise ValueError(f"not valid label keys: {bad}")
        return v


def load(**overrides: object) -> ExtenderSettings:
    """Settings from env + overrides (``None`` overrides are ignored); :class:`ConfigError` if invalid."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ExtenderSettings(**given)  # type: ignore[arg-type]
    except ValidationError as err:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors(include_url=False)]
        raise ConfigError("invalid extender settings: " + "; ".join(lines)) from None
