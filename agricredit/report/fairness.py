"""The fairness table of a run: outcomes by village and by plot-size band, against the best group.

For each group: borrowers, approval rate (share with status ``APPROVE``),
median limit, limit per verified mu (the group's limits summed over its
verified area), and the adverse-impact ratio: the group's approval rate over
the highest approval rate among the groups of the same grouping (the
"four-fifths rule": a ratio under :data:`ADVERSE_IMPACT_THRESHOLD` is flagged).
The plot-size band of a borrower is that of the area it declared (summed over
its plots), so that the grouping does not depend on the decision itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["ADVERSE_IMPACT_THRESHOLD", "SIZE_BANDS_MU", "FairnessRow", "size_band", "fairness_table"]

#: A group whose approval rate is under this share of the best group's is highlighted.
ADVERSE_IMPACT_THRESHOLD = 0.8
#: Upper edges (mu, exclusive) of the declared-area bands; the last band is open.
SIZE_BANDS_MU = (10.0, 30.0, 100.0)


@dataclass(frozen=True)
class FairnessRow:
    """One group's outcomes."""

    grouping: str  # "village" or "size_band"
    group: str
    borrowers: int
    approval_rate: float
    median_limit: float
    limit_per_verified_mu: float  # NaN when the group has no verified area
    adverse_impact_ratio: float  # NaN when no group of the grouping approves anyone

    @property
    def flagged(self) -> bool:
        """True when the adverse-impact ratio is under :data:`ADVERSE_IMPACT_THRESHOLD`."""
        return self.adverse_impact_ratio < ADVERSE_IMPACT_THRESHOLD


def size_band(declared_mu: float) -> str:
    """The band of a declared area: ``<10 mu``, ``10–30 mu``, ``30–100 mu``, ``≥100 mu``."""
    lower = 0.0
    for upper in SIZE_BANDS_MU:
        if declared_mu < upper:
            return f"<{upper:g} mu" if lower == 0 else f"{lower:g}–{upper:g} mu"
        lower = upper
    return f"≥{lower:g} mu"


def fairness_table(borrowers: pd.DataFrame, plots: pd.DataFrame) -> list[FairnessRow]:
    """Outcomes by village and by size band (rows sorted by grouping, then group).

    Parameters
    ----------
    borrowers
        ``borrowers.csv`` (``borrower``, ``village``, ``status``, ``limit``, ``verified_mu``).
    plots
        ``plots.geojson``'s rows (``borrower``, ``declared_mu``).
    """
    declared = plots.groupby("borrower")["declared_mu"].sum(min_count=1)
    frame = borrowers.assign(
        size_band=[size_band(float(declared.get(b, 0.0)) if declared.get(b, 0.0) == declared.get(b, 0.0) else 0.0)
                   for b in borrowers["borrower"]],
        approved=borrowers["status"] == "APPROVE",
    )
    rows: list[FairnessRow] = []
    for grouping in ("village", "size_band"):
        stats = []
        for group, part in sorted(frame.groupby(grouping), key=lambda item: str(item[0])):
            area = float(part["verified_mu"].astype(float).sum())
            stats.append((str(group), len(part), float(part["approved"].mean()),
                          float(np.median(part["limit"].astype(float))),
                          float(part["limit"].astype(float).sum()) / area if area > 0 else math.nan))
        best = max((s[2] for s in stats), default=0.0)
        rows += [FairnessRow(grouping, group, n, rate, median, per_mu, rate / best if best > 0 else math.nan)
                 for group, n, rate, median, per_mu in stats]
    return rows
