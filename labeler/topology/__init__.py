"""The pure topology core: model, `nvidia-smi topo -m` reader, islands, placement, labels.

Nothing in this package performs I/O or imports kubernetes, pynvml, grpc or fastapi
(enforced by import-linter, see ``pyproject.toml``). Import modules, not names:
``from labeler.topology import islands`` then ``islands.compute(topo)``.
"""
