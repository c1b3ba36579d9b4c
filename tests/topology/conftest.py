"""Fixtures for the `nvidia-smi topo -m` reader tests.

``--update-golden`` rewrites ``tests/golden/topo/*.json`` from the reader's
current output. It is off by default: goldens are written once from a draft,
checked against the corpus text by eye, and then only changed on purpose (the
diff of the JSON is what a reviewer reads). pytest only registers options from
conftest files it loads at start-up, so run it as
``.venv/bin/pytest tests/topology --update-golden``.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/topo/*.json from the current smi_parser output",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden", default=False))
