"""Peer vigor adds its columns to a copy: the caller's frame is left as it was."""

from __future__ import annotations

import numpy as np
import pandas as pd

from agricredit.flag import Flag
from agricredit.vigor import peer_vigor


def test_peer_vigor_leaves_the_callers_frame_as_it_was() -> None:
    peaks = [0.8, 0.81, 0.79, 0.8, 0.82, 0.5]
    plots = pd.DataFrame({"plot_id": [f"P{k}" for k in range(6)], "declared_crop": ["maize"] * 6,
                          "vigor_peak_ndvi": peaks, "pixel_count": 50.0, "n_clear": 5, "vigor_factor": -1.0})
    before = plots.copy(deep=True)
    flags: dict[str, list[Flag]] = {f"P{k}": [] for k in range(6)}
    result = peer_vigor(plots, flags)
    pd.testing.assert_frame_equal(plots, before, check_exact=True)
    assert result["peer_count"].tolist() == [6] * 6
    assert result["vigor_factor"].iloc[5] == np.clip(0.5 / np.median(peaks), 0.7, 1.0)
    assert [f.code for f in flags["P5"]] == ["LOW_VIGOR"]
