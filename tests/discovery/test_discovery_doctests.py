"""Run the doctests of the discovery modules (pytest's --doctest-modules only covers testpaths)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "labeler.discovery.facts",
    "labeler.discovery.podresources.client",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
