"""Fixtures for the `nvidia-smi topo -m` reader tests.

``--update-golden`` rewrites ``tests/golden/topo/*.json`` from the reader's
current output. It is off by default: goldens are written once from a draft,
checked against the corpus text by eye, and then only changed on purpose (the
diff of the JSON is what a reviewer reads). The option is registered in the
root ``tests/conftest.py``: ``.venv/bin/pytest tests/topology --update-golden``.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden", default=False))
