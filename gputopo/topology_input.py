"""Read a topology FILE given to ``gputopo audit pod|nccl --topology``, with limits.

Accepted forms, told apart by their first character:

- a saved ``nvidia-smi topo -m`` text (read by :mod:`labeler.topology.smi_parser`);
- JSON: the node annotation's value (``{"v": 1, "gpus": …}``), a whole Node object
  (``kubectl get node NAME -o json``: the ``{prefix}topology`` annotation is decoded),
  or the output of ``gputopo audit FILE --json`` (its ``topology`` key).

The file is hostile input: it is read by :mod:`gputopo.bounded_input` up to
:data:`MAX_TOPOLOGY_BYTES` (JSON: a whole Node as ``kubectl -o json`` prints it) and refused
beyond, the text form beyond :data:`~gputopo.bounded_input.SMI_TEXT_BYTES` (as for ``gputopo
audit FILE``), and every decoding failure is a :class:`TopologyError` with a one-line reason.
JSON goes through :func:`labeler.topology.bounded.loads`, the decoder every annotation uses
(depth limited before parsing, ``NaN``/``Infinity`` refused).
"""

from __future__ import annotations

from typing import Any

from gputopo.bounded_input import SMI_TEXT_BYTES, TOPOLOGY_JSON_BYTES, InputTooLarge, read_bytes
from labeler.topology import bounded, labels, serialize, smi_parser
from labeler.topology.errors import CodecError
from labeler.topology.model import Topology

__all__ = ["MAX_TOPOLOGY_BYTES", "read_topology"]

#: the most read of a --topology FILE (its JSON forms; the `nvidia-smi topo -m` text form: SMI_TEXT_BYTES)
MAX_TOPOLOGY_BYTES = TOPOLOGY_JSON_BYTES


def _from_json(text: str, source: str, prefix: str) -> Topology:
    # the one bounded JSON reader: size and depth refused before parsing, NaN/Infinity refused
    doc: Any = bounded.loads(text, what=f"{source}: not JSON", max_chars=MAX_TOPOLOGY_BYTES)
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
    """Read and decode one topology file. Raises OSError or :class:`TopologyError` (incl. parse errors,
    :class:`~gputopo.bounded_input.InputTooLarge`)."""
    data = read_bytes(path, MAX_TOPOLOGY_BYTES)
    source = "<stdin>" if path == "-" else path
    if data.lstrip().startswith(b"{"):
        return _from_json(data.decode("utf-8", errors="replace"), source, prefix)
    if len(data) > SMI_TEXT_BYTES:
        raise InputTooLarge(path, f"{len(data)} bytes of `nvidia-smi topo -m` text, more than the "
                                  f"{SMI_TEXT_BYTES} an audit reads")
    return smi_parser.parse(data.decode("utf-8", errors="replace"), source=source)
