"""Every corpus output against its golden file (tests/golden/topo/<stem>.json).

A golden holds either ``serialize.to_dict(topo)`` plus the reader's warnings,
or ``{"error": {"line": N, "contains": "..."}}`` for outputs the reader must
refuse. Why goldens were written by reading the corpus, not by trusting the
reader: see tests/golden/INDEX.md, which records per file what was checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labeler.topology import serialize, smi_parser
from labeler.topology.errors import TopologyParseError

TESTS = Path(__file__).resolve().parent.parent
GOLDEN = TESTS / "golden" / "topo"
FILES = sorted((TESTS / "fixtures" / "topo-corpus").glob("*.txt"))


def _observed(path: Path) -> dict[str, Any]:
    try:
        topo = smi_parser.parse(path.read_text(), source=path.name)
    except TopologyParseError as err:
        return {"error": {"line": err.line, "contains": err.reason}}
    return {**serialize.to_dict(topo), "warnings": list(topo.warnings)}


def test_corpus_is_complete() -> None:
    assert len(FILES) == 40  # INDEX.md lists 40 outputs (the 41st corpus file is INDEX.md itself)
    assert {p.stem for p in FILES} == {p.stem for p in GOLDEN.glob("*.json")}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden(path: Path, update_golden: bool) -> None:
    golden_path = GOLDEN / f"{path.stem}.json"
    observed = _observed(path)
    if update_golden:
        golden_path.write_text(json.dumps(observed, indent=1, ensure_ascii=False) + "\n")
        pytest.skip("golden rewritten")
    expected = json.loads(golden_path.read_text())
    if "error" in expected:
        assert "error" in observed, f"expected an error, got a topology: {observed}"
        assert observed["error"]["line"] == expected["error"]["line"]
        assert expected["error"]["contains"] in observed["error"]["contains"]
        return
    assert observed == expected


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden_round_trips(path: Path) -> None:
    """A golden topology decodes back into a model (the JSON is a valid, symmetric matrix)."""
    expected = json.loads((GOLDEN / f"{path.stem}.json").read_text())
    if "error" in expected:
        return
    topo = serialize.from_dict({k: v for k, v in expected.items() if k != "warnings"})
    assert serialize.to_dict(topo) == {k: v for k, v in expected.items() if k != "warnings"}
