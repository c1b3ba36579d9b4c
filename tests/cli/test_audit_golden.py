"""Golden node audits (text and JSON) for one machine per class: the corpus picks of docs/pictures.

The goldens are ``tests/golden/audit/<slug>.json`` (``report.build``, what ``--json`` prints)
and ``<slug>.txt`` (the tables, 110 columns, no colour). They change only on purpose:
``.venv/bin/pytest tests/cli/test_audit_golden.py --update-golden`` rewrites them, and the
diff is read by eye (tests/golden/INDEX.md says what was checked).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gallery import GALLERY, Entry

from gputopo.audit import render_text
from labeler.topology import report

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "audit"


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden", default=False))


@pytest.mark.parametrize("entry", GALLERY, ids=[e.slug for e in GALLERY])
def test_node_audit_golden(entry: Entry, update_golden: bool) -> None:
    topo, extra = entry.load()
    doc = report.build(topo, extra=extra)
    text = render_text(doc, topo)
    as_json = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    if update_golden:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        (GOLDEN / f"{entry.slug}.json").write_text(as_json)
        (GOLDEN / f"{entry.slug}.txt").write_text(text)
        pytest.skip("golden rewritten")
    assert json.loads(as_json) == json.loads((GOLDEN / f"{entry.slug}.json").read_text())
    assert text == (GOLDEN / f"{entry.slug}.txt").read_text()


def test_every_finding_has_a_known_severity_and_a_code() -> None:
    for path in sorted(GOLDEN.glob("*.json")):
        doc = json.loads(path.read_text())
        for f in doc["findings"]:
            assert f["severity"] in ("info", "warning", "error") and f["code"], path
        assert doc["warnings"] == [f["message"] for f in doc["findings"] if f["severity"] != "info"]
