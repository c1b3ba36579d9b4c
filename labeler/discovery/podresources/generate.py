"""Regenerate ``_gen/api_pb2.py`` (+ ``.pyi`` types) and ``_gen/api_pb2_grpc.py`` from ``api.proto``.

Why a pinned, checked generator: generated stubs embed the generator's version
(``GRPC_GENERATED_VERSION`` and a protobuf runtime check), so regenerating with a
different grpcio-tools silently changes which runtimes can import them. This module
refuses any grpcio-tools other than :data:`PINNED_GRPCIO_TOOLS`; the test suite
regenerates into a temporary directory and compares byte for byte.

Usage: ``python -m labeler.discovery.podresources.generate [OUT_ROOT]`` (default: the
repository root, i.e. writes in place).

The proto is mapped to the virtual path ``labeler/discovery/podresources/_gen/api.proto``
so that the grpc stub imports ``from labeler.discovery.podresources._gen import api_pb2``
(a package import) instead of a top-level ``import api_pb2``.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

PINNED_GRPCIO_TOOLS = "1.85.1"
HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
VIRTUAL_DIR = "labeler/discovery/podresources/_gen"
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")


def generate(out_root: Path = REPO_ROOT) -> list[Path]:
    """Run protoc (from grpcio-tools) and return the generated files under ``out_root``."""
    have = metadata.version("grpcio-tools")
    if have != PINNED_GRPCIO_TOOLS:
        raise RuntimeError(f"grpcio-tools {have} installed, stubs are pinned to {PINNED_GRPCIO_TOOLS}")
    from grpc_tools import protoc  # imported late: a dev-only dependency

    out_root.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={VIRTUAL_DIR}={HERE}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"{VIRTUAL_DIR}/api.proto",
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc}")
    return [out_root / VIRTUAL_DIR / name for name in GENERATED]


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT):
        print(path)
