"""Shared test setup.

Support modules beside the tests (``factories``, ``fake_nvml``,
``fake_kube_api``...) are made importable from any test folder by putting each
folder on ``sys.path``; their names are unique across folders.
"""

import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).parent
for _folder in sorted(p for p in _HERE.iterdir() if p.is_dir() and p.name not in ("fixtures", "golden")):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/topo/*.json from the current smi_parser output (see tests/golden/INDEX.md)",
    )
