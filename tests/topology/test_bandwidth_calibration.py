"""The model stays inside the bands docs/bandwidth.md states against the measured rows of the research notes.

Not a fit (no constant comes from these rows) but a guard: a change to the table or the
model that moves a prediction out of its stated band must update the docs' claim too.
"""

from __future__ import annotations

import calibration
import pytest

from labeler.topology import busbw


@pytest.mark.parametrize("row", calibration.ROWS, ids=lambda r: f"{r.gpu} {r.what}"[:60])
def test_row_within_its_stated_band(row: calibration.Row) -> None:
    topo = row.build()
    found = busbw.predict(topo, topo.gpu_indices)
    assert found is not None
    low, high = calibration.BANDS[row.band]
    assert low - 1e-9 <= found.gbps / row.measured <= high + 1e-9, (found.gbps, row.measured, found.explain())


def test_bands_are_all_used() -> None:
    assert {r.band for r in calibration.ROWS} == set(calibration.BANDS)
