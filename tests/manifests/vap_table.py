"""Print the admission-policy case table of docs/reliability.md from the test's own cases.

    .venv/bin/python tests/manifests/vap_table.py

"expected" is the hand-worked verdict in test_admission_policy.CASES; "evaluated" is what the
shipped policy returns under cel-python (the test asserts that the two agree).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_admission_policy import CASES, NOT_OURS, POLICY, node


def main() -> None:
    print("| request | expected | evaluated (validations that denied) |")
    print("|---|---|---|")
    for what, build, expected in CASES:
        d = POLICY.evaluate(*build())
        want = "deny: " + ", ".join(sorted(expected)) if expected else "allow"
        got = ("deny: " + ", ".join(sorted(d.failed)) if d.failed else "allow") + (" ERRORS" if d.errors else "")
        print(f"| {what} | {want} | {got} |")
    for what, request in NOT_OURS:
        d = POLICY.evaluate(request, node(), node())
        print(f"| {what} | not matched | {'not matched' if not d.matched else 'MATCHED'} |")


if __name__ == "__main__":
    main()
