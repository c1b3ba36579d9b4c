"""Errors of the simulator, under the project's hierarchy (:mod:`labeler.topology.errors`).

``TraceError`` names the file and line of a pod or node list that cannot be
read without guessing; ``ScenarioError`` is a bad scenario, fleet map or
scheduler configuration, raised before any simulation starts.
"""

from __future__ import annotations

from labeler.topology.errors import ConfigError, GputopoError

__all__ = ["ScenarioError", "TraceError"]


class TraceError(GputopoError):
    """A trace file (pod or node list) that cannot be read; names the file and line."""

    def __init__(self, message: str, *, path: str = "", line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = path + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {message}" if where else message)


class ScenarioError(ConfigError):
    """A scenario, fleet map or scheduler configuration that cannot be used."""
