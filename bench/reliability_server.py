"""The servers every section of bench/bench_reliability.py measures, and the helpers they share.

Each server runs the production configuration (``extender.server.uvicorn_config`` +
``extender.app.create_app``) in a forked process, so the client never shares its GIL; the helpers
accept older trees (``--before``), which lack some options.
"""

from __future__ import annotations

import http.client
import multiprocessing
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROTOCOL = ROOT / "tests" / "fixtures" / "extender-protocol"


def _scoring() -> tuple[Any, Any]:
    """``resolve`` and ``DEFAULT_STRATEGIES`` of the tree under test.

    Older trees (``--before``) kept them in the extender; ``extender`` is bound to the tree under
    test, so asking it first never mixes trees (``policy`` may resolve to this tree's).
    """
    try:
        from extender.scoring import DEFAULT_STRATEGIES, resolve  # type: ignore[import-not-found]
    except ImportError:
        from policy.scoring import DEFAULT_STRATEGIES, resolve
    return resolve, DEFAULT_STRATEGIES


# -- servers ----------------------------------------------------------------------------------------------


def _hardened() -> bool:
    """Is the imported ``extender`` a tree with the hardened server (older trees, via --before, are not)?

    Checked by file: the editable install would otherwise resolve a missing
    ``extender.server`` of an older tree to this tree's module.
    """
    import extender

    return (Path(extender.__file__).parent / "server.py").exists()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``build_app()`` (called in the child) served by uvicorn with the production config, in a forked process."""

    def __init__(self, build_app: Callable[[], Any], settings: Any) -> None:
        from extender.app import listen_socket

        self.sock = listen_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.build_app = build_app
        self.settings = settings
        self.proc: multiprocessing.process.BaseProcess | None = None

    def _serve(self) -> None:
        import logging

        import uvicorn

        logging.disable(logging.CRITICAL)  # the old tree logs tracebacks of its 500s; the table counts them
        if not _hardened():  # an older tree (--before): its own plain uvicorn configuration
            uvicorn.Server(uvicorn.Config(self.build_app(), log_level="critical", lifespan="off")).run(
                sockets=[self.sock])
            return
        from extender.server import settle_heap, uvicorn_config

        config = uvicorn_config(self.build_app(), self.settings)
        settle_heap()  # as `gputopo extender` does before it serves
        config.log_level = "critical"
        uvicorn.Server(config).run(sockets=[self.sock])

    def __enter__(self) -> Server:
        self.proc = multiprocessing.get_context("fork").Process(target=self._serve, daemon=True)
        self.proc.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if get(self.port, "/healthz")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    @property
    def rss(self) -> float:
        assert self.proc is not None and self.proc.pid is not None
        return rss_mib(self.proc.pid)

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.join(10)
        self.sock.close()


def get(port: int, path: str) -> tuple[int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        t = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.perf_counter() - t
    finally:
        conn.close()


def settings_for(mode: str, **overrides: Any) -> Any:
    from extender.settings import load

    return load(mode=mode, log_level="error", **(overrides if _hardened() else {}))


def app_for(service: Any, **options: Any) -> Any:
    """``create_app`` with the options this tree's version accepts (older trees have fewer).

    This tree's ``create_app`` has no default limits: the ones not given come from the cached
    mode's default settings (``extender.app.limits``; every caller here gives the body limit), the
    values older trees had as ``create_app`` defaults (64 in flight, 30 s body, 2 threads).
    """
    import inspect

    from extender import app as app_module

    limits = getattr(app_module, "limits", None)
    if limits is not None:
        options = {**limits(settings_for("cached")), **options}
    accepted = inspect.signature(app_module.create_app).parameters
    return app_module.create_app(service, **{k: v for k, v in options.items() if k in accepted})


def cached_service(nodes: list[dict[str, Any]], **config: Any) -> Any:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_extender as be

    from extender.service import Service, ServiceConfig

    service = be.make_service(nodes)
    base = service.config
    try:
        cfg = ServiceConfig(base.prefix, base.locality_keys, base.scorer, decode_node_objects=False, **config)
    except TypeError:  # an older tree (--before)
        cfg = ServiceConfig(base.prefix, base.locality_keys, base.scorer)
    out = Service(cfg, metrics=service.metrics)
    out.view, out.topologies = service.view, service.topologies
    if isinstance(getattr(type(out), "contexts", None), property):  # the contexts live in the decider's cache
        out.decider = service.decider
    else:  # an older tree (--before)
        out.contexts = service.contexts
    return out


def http_request(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]
