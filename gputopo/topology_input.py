"""Read a topology FILE given to ``gputopo audit pod|nccl --topology``, with limits.

Accepted forms, told apart by their first character:

- a saved ``nvidia-smi topo -m`` text (read by :mod:`labeler.topology.smi_parser`);
- JSON: the node annotation's value (``{"v": 1, "gpus": …}``), a whole Node object
  (``kubectl get node NAME -o json``: the ``{prefix}topology`` annotation is decoded),
  or the output of ``gputopo audit FILE --json`` (its ``topology`` key).

The file is hostile input: it is read up to :data:`MAX_TOPOLOGY_BYTES` and refused
beyond, and every decoding failure is a :class:`TopologyError` with a one-line reason.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from labeler.topology import labels, serialize, smi_parser
from labeler.topology.errors import CodecError, TopologyError
from labeler.topology.model import Topology

__all__ = ["MAX_TOPOLOGY_BYTES", "read_limited", "read_topology"]

#: A 16-GPU, 40-NIC `nvidia-smi topo -m` is ~15 KB; the annotation is capped at 256 KiB by the API server.
MAX_TOPOLOGY_BYTES = 4 * 1024 * 1024


def read_limited(path: str, limit: int) -> str:
    """The text of ``path`` (``-`` for stdin), refusing more than ``limit`` bytes. OSError/TopologyError."""
    if path == "-":
        data = sys.stdin.buffer.read(limit + 1)
    else:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    if len(data) > limit:
        raise TopologyError(f"{path}: larger than {limit} bytes")
    return data.decode("utf-8", errors="replace")


def _from_json(text: str, source: str, prefix: str) -> Topology:
    try:
        doc: Any = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise CodecError(f"{source}: not JSON ({str(err)[:80]})") from err
    if not isinstance(doc, dict):
        raise CodecError(f"{source}: a JSON object was expected")
    if "v" in doc and "links" in doc:
        return serialize.from_dict(doc)
    if isinstance(doc.get("topology"), dict):
        return serialize.from_dict(doc["topology"])
    meta = doc.get("metadata")
    if doc.get("kind") == "Node" and isinstance(meta, dict):
        annotations = meta.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise CodecError(f"{source}: Node annotations are not an object")
        topo = labels.decode_topology({str(k): str(v) for k, v in annotations.items()}, prefix=prefix)
        if topo is None:
            raise CodecError(f"{source}: Node has no {prefix}{labels.ANNOTATION_TOPOLOGY} annotation")
        return topo
    raise CodecError(f"{source}: neither a topology annotation, a Node, nor `gputopo audit --json` output")


def read_topology(path: str, *, prefix: str = labels.DEFAULT_PREFIX) -> Topology:
    """Read and decode one topology file. Raises OSError or :class:`TopologyError` (incl. parse errors)."""
    text = read_limited(path, MAX_TOPOLOGY_BYTES)
    source = "<stdin>" if path == "-" else path
    if text.lstrip().startswith("{"):
        return _from_json(text, source, prefix)
    return smi_parser.parse(text, source=source)
