"""Area units: the one place the mu ↔ hectare ↔ m² factors are written down.

1 mu (亩) = 1/15 ha = 666.67 m² exactly by definition (1 ha = 15 mu).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

__all__ = ["MU_PER_HA", "M2_PER_HA", "M2_PER_MU", "m2_to_mu", "mu_to_m2"]

#: Mu per hectare (exact; an int so that decimal arithmetic stays exact).
MU_PER_HA = 15
#: Square metres per hectare.
M2_PER_HA = 10_000
#: Square metres per mu (666.666…).
M2_PER_MU = M2_PER_HA / MU_PER_HA

_Area = TypeVar("_Area", float, np.ndarray)


def m2_to_mu(area_m2: _Area) -> _Area:
    """Square metres → mu (``m² / 10000 × 15``; works on floats, arrays and Series)."""
    return area_m2 / M2_PER_HA * MU_PER_HA


def mu_to_m2(area_mu: _Area) -> _Area:
    """Mu → square metres (``mu × 10000 / 15``, so that 1.5 mu is exactly 1000 m²)."""
    return area_mu * M2_PER_HA / MU_PER_HA
