"""The bandwidth model against the measured rows of shared/research/nccl-bandwidth.md §2.

Prints the markdown table in docs/bandwidth.md ("Calibration"): for each row the topology
as rebuilt (tests/topology/calibration.py), the model's prediction, the figure the source
reports and their ratio. A check of the model, not a fit: no constant comes from these rows.
Run: `.venv/bin/python bench/bandwidth_calibration.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "topology"))

import calibration  # noqa: E402

from labeler.topology import busbw  # noqa: E402


def main() -> None:
    print("| GPUs | topology (as rebuilt) | predicted | bottleneck | reported | what | predicted / reported | source |")
    print("|---|---|---|---|---|---|---|---|")
    for row in calibration.ROWS:
        topo = row.build()
        found = busbw.predict(topo, topo.gpu_indices)
        assert found is not None
        ratio = found.gbps / row.measured
        print(
            f"| {row.gpu} | {row.topology} | {found.gbps:g} | {found.bottleneck.where} | {row.measured:g} | "
            f"{row.what} | {ratio:.2f} | {row.source} |"
        )
    for gpu, why in calibration.NOT_COMPARED:
        print(f"| {gpu} | – | – | – | – | not compared: {why} | – | |")


if __name__ == "__main__":
    main()
