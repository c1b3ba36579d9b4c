"""The cached extender's memory and answer delays through an initial sync and forced relists, at cluster scale.

Cluster (in the in-test API server, ``tests/extender/fake_apiserver.py``: paged LIST, label and
field selectors, watches, each object's JSON encoded once; in its own process): ``--nodes``
realistic GPU Nodes (``tests/cli/cluster_fixture.scaled_cluster``: kubelet status with 50
images, managedFields, GFD labels, our labels and annotations: ~17 KB of JSON each) with their
allocation ConfigMaps, and 10 pods per node made from a real PyTorchJob worker (~5 KB of JSON
each: volumes, env, tolerations, conditions): 8 without GPUs (daemons, services), 1 running with
4 GPUs, 1 that has ended (``Succeeded``) with 4 GPUs.

Extender: ``gputopo extender --mode=cached`` as a process (the production entry point: heap
settled, httptools/uvloop, its own metrics port), ``--resync-seconds`` short so that it relists
every informer twice during the run. Memory: the process's peak resident set (``VmHWM`` from
``/proc``) after the first sync and at the end, and its resident set at the end. Delays: a client
sends filter requests (every node name, a 4-GPU ``required`` PyTorchJob worker) one after the
other during the whole run; each answer's time is recorded with whether a relist was in progress
(a ``sitecustomize`` on the extender's path logs when each list starts and ends); reported: p50,
p99 and max of the answers that overlapped no list and of those that overlapped one.

``--before REF`` runs the same against git ``REF``'s extender (a ``git archive`` of it), in the
same run, alternately.

Rerun: ``.venv/bin/python bench/bench_extender_memory.py`` (5,000 nodes, 50,000 pods; about
4 minutes; ``--nodes`` to change; ``--before 1c8542c`` for the code before issue #13).
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import multiprocessing
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for sub in ("cli", "extender", "agent"):
    sys.path.insert(0, str(ROOT / "tests" / sub))

from cluster_fixture import kubeconfig, scaled_cluster  # noqa: E402
from fake_apiserver import FakeApiServer  # noqa: E402

PROTOCOL = ROOT / "tests" / "fixtures" / "extender-protocol"
PREFIX = "gputopo.io/"


def cluster_pods(nodes: list[str]) -> list[dict[str, Any]]:
    template = json.loads((PROTOCOL / "pod-pytorchjob-worker.json").read_text())
    out = []
    for n, node in enumerate(nodes):
        for j in range(10):
            p = copy.deepcopy(template)
            meta = p["metadata"]
            meta["name"] = f"{node}-p{j}"
            meta["namespace"] = "ml" if j >= 8 else "kube-system"
            meta["uid"] = f"uid-{n}-{j}"
            meta["labels"] = {"app": f"w{j}"} if j < 8 else {**meta["labels"],
                                                               "training.kubeflow.org/job-name": f"job-{n}-{j}"}
            c = p["spec"]["containers"][0]
            gpus = 4 if j >= 8 else 0
            c["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"nvidia.com/gpu": str(gpus)}} \
                if gpus else {"requests": {"cpu": "100m"}}
            p["spec"]["nodeName"] = node
            p["status"]["phase"] = "Succeeded" if j == 9 else "Running"
            out.append(p)
    return out


def serve(nodes: int, conn: Any) -> None:
    """Child process: build the cluster, serve it, report the URL, the names and the counts, wait."""
    api = FakeApiServer()
    cluster = scaled_cluster(time.time(), nodes, pods_per_node=0)
    names = [n["metadata"]["name"] for n in cluster.nodes]
    cluster.pods = cluster_pods(names)
    cluster.load(api)
    counts = {k: len(v) for k, v in api.objects.items()}
    sizes = {k: sum(len(api.encoded(k, key)) for key in objs) for k, objs in api.objects.items()}
    del cluster
    api.start()
    conn.send((api.url, names, counts, sizes))
    conn.recv()
    api.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def metric(text: bytes, name: str, *labels: str) -> float:
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(name) and all(lb in line for lb in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def pod_body(names: list[str]) -> bytes:
    pod = json.loads((PROTOCOL / "pod-pytorchjob-worker.json").read_text())
    pod["metadata"]["annotations"] = {PREFIX + "placement": "required", PREFIX + "max-level": "nvlink"}
    return json.dumps({"Pod": pod, "Nodes": None, "NodeNames": names}, separators=(",", ":")).encode()


def run_extender(code: Path, url: str, names: list[str], seconds: float, resync: float) -> dict[str, Any]:
    port, mport = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        kc = kubeconfig(Path(tmp) / "kubeconfig", url)
        log = Path(tmp) / "extender.log"
        (Path(tmp) / "sitecustomize.py").write_text(SITE)  # marks each list's start and end in the log
        env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{tmp}"}
        args = [sys.executable, "-c", "import sys; from extender.cli import main; sys.exit(main(sys.argv[1:]))",
                "--mode=cached", "--host=127.0.0.1", f"--port={port}", f"--kubeconfig={kc}",
                f"--resync-seconds={resync}", "--log-level=info"]
        if (code / "labeler" / "topology" / "gcpause.py").exists():  # this tree: its own metrics port
            args.append(f"--metrics-port={mport}")
        else:
            mport = port
        with open(log, "w") as out:
            proc = subprocess.Popen(args, cwd=code, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            t0 = time.monotonic()
            while get(mport, "/readyz")[0] != 200:
                if proc.poll() is not None:
                    raise RuntimeError(log.read_text()[-3000:])
                time.sleep(0.05)
            sync_s = time.monotonic() - t0
            hwm_sync = status_kb(proc.pid, "VmHWM")
            body = pod_body(names)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            samples: list[tuple[float, float, float]] = []  # (start, end, lists so far)
            end = time.monotonic() + seconds
            lists0 = metric(get(mport, "/metrics")[1], "gputopo_extender_watch_restarts_total", 'reason="resync"')
            while time.monotonic() < end:
                t = time.monotonic()
                conn.request("POST", "/filter", body=body, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                samples.append((t, time.monotonic(), 0.0))
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}")
            conn.close()
            _, text = get(mport, "/metrics")
            relists = metric(text, "gputopo_extender_watch_restarts_total", 'reason="resync"') - lists0
            hwm_end, rss_end = status_kb(proc.pid, "VmHWM"), status_kb(proc.pid, "VmRSS")
        finally:
            proc.terminate()
            proc.wait(20)
        text = log.read_text()
        windows = list_windows(text)
        gc_pauses = [(g, int(ms), float(t) - int(ms) / 1e3, float(t))
                     for g, ms, t in re.findall(r"gputopo-bench-gc (gen\d) (\d+)ms (\d+\.\d+)", text)]
    idle, during = [], []
    for start, stop, _ in samples:
        (during if any(a <= stop and start <= b for a, b in windows) else idle).append(stop - start)
    first = samples[0][0] if samples else float("inf")
    # the slowest answers, and what overlapped them: a list, a collector pass (gen, ms)
    slowest = [{"ms": round((b - a) * 1e3, 1), "list": any(x <= b and a <= y for x, y in windows),
                "gc": [f"{g} {ms} ms" for g, ms, x, y in gc_pauses if x <= b and a <= y]}
               for a, b, _ in sorted(samples, key=lambda s: s[0] - s[1])[:5]]
    return {"sync_s": sync_s, "hwm_sync_mib": hwm_sync / 1024, "hwm_end_mib": hwm_end / 1024,
            "rss_end_mib": rss_end / 1024, "relists": relists, "windows": len(windows),
            "idle": summary(idle), "during": summary(during),
            "gc_pauses_over_10ms_sync": [f"{g} {ms} ms" for g, ms, _, t in gc_pauses if t < first],
            "gc_pauses_over_10ms_answering": [f"{g} {ms} ms" for g, ms, _, t in gc_pauses if t >= first],
            "slowest": slowest}


def list_windows(text: str) -> list[tuple[float, float]]:
    """(monotonic start, end) of every list, from the marker lines the bench's sitecustomize writes."""
    starts: dict[str, float] = {}
    out = []
    for m in re.finditer(r"gputopo-bench-list (start|end) ([a-z]+) (\d+\.\d{1,9})", text):
        what, kind, t = m.group(1), m.group(2), float(m.group(3))
        if what == "start":
            starts[kind] = t
        elif kind in starts:
            out.append((starts.pop(kind), t))
    return out


def summary(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    s = sorted(xs)
    return {"n": len(s), "p50": statistics.median(s), "p99": s[min(len(s) - 1, round(0.99 * (len(s) - 1)))],
            "max": s[-1]}


SITE = '''
import time, sys
def _wrap():
    from extender import reflector
    orig = reflector.Reflector._list
    def _list(self):
        print(f"gputopo-bench-list start {self.kind} {time.monotonic():.6f}", file=sys.stderr, flush=True)
        try:
            return orig(self)
        finally:
            print(f"gputopo-bench-list end {self.kind} {time.monotonic():.6f}", file=sys.stderr, flush=True)
    reflector.Reflector._list = _list
    import gc
    began = {}
    def _gc(phase, info):
        if phase == "start":
            began["t"] = time.monotonic()
        elif time.monotonic() - began.get("t", time.monotonic()) > 0.01:
            print(f"gputopo-bench-gc gen{info['generation']} {(time.monotonic() - began['t']) * 1e3:.0f}ms "
                  f"{time.monotonic():.6f}", file=sys.stderr, flush=True)
    gc.callbacks.append(_gc)
_wrap()
'''


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=60.0, help="filter requests sent for this long per run")
    ap.add_argument("--resync", type=float, default=20.0, help="the extender's --resync-seconds")
    ap.add_argument("--before", metavar="REF", help="also run git REF's extender, alternately")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=serve, args=(args.nodes, child), daemon=True)
    server.start()
    url, names, counts, sizes = parent.recv()
    print(f"machine: {platform.machine()} | CPUs: {os.cpu_count()} | Python {platform.python_version()} | "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"cluster: {counts} objects, JSON MB {({k: round(v / 1e6, 1) for k, v in sizes.items()})}\n")
    trees: list[tuple[str, Path]] = [("this tree", ROOT)]
    tmp = None
    if args.before:
        tmp = tempfile.TemporaryDirectory()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp.name], input=archive.stdout, check=True)
        trees.insert(0, (args.before, Path(tmp.name)))
    print("| code | first sync | peak RSS after sync MiB | peak RSS at end MiB | RSS at end MiB | lists | "
          "filter while idle: n: p50 / p99 / max ms | filter while a list runs: n: p50 / p99 / max ms | "
          "GC passes over 10 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for _ in range(args.rounds):
        for label, code in trees:
            r = run_extender(code, url, names, args.seconds, args.resync)
            r["code"] = label
            rows.append(r)
            print_row(r)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    parent.send("done")
    server.join(30)
    if tmp is not None:
        tmp.cleanup()
    return 0


def print_row(r: dict[str, Any]) -> None:
    i, d = r["idle"], r["during"]
    print(f"| {r['code']} | {r['sync_s']:.1f} s | {r['hwm_sync_mib']:.0f} | {r['hwm_end_mib']:.0f} | "
          f"{r['rss_end_mib']:.0f} | {r['windows']} | {i['n']}: {i['p50'] * 1e3:.1f} / {i['p99'] * 1e3:.1f} / "
          f"{i['max'] * 1e3:.1f} | {d['n']}: {d['p50'] * 1e3:.1f} / {d['p99'] * 1e3:.1f} / {d['max'] * 1e3:.1f} | "
          f"sync: {', '.join(r['gc_pauses_over_10ms_sync']) or '-'}; answering: "
          f"{', '.join(r['gc_pauses_over_10ms_answering']) or '-'} |", flush=True)
    print("  slowest answers: " + "; ".join(
        f"{x['ms']} ms ({'list' if x['list'] else 'no list'}{', GC ' + ' + '.join(x['gc']) if x['gc'] else ''})"
        for x in r["slowest"]), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
