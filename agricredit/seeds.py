"""Loading and validating the bundled reference tables in ``seeds/``.

The tables are read once per process (cached) and checked on load: a missing
column, an unknown crop in the templates or a non-positive economic figure is
a :class:`~agricredit.errors.SeedDataError` naming the file and row.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agricredit.errors import SeedDataError

__all__ = [
    "SEEDS_DIR",
    "DEFAULT_POLICY_PATH",
    "Crop",
    "ReasonCode",
    "load_crops",
    "crop_aliases",
    "load_templates",
    "template_ndvi",
    "load_reason_codes",
    "default_cropped_threshold",
]


def _find_seeds_dir() -> Path:
    package_copy = Path(__file__).resolve().parent / "_seeds"  # installed wheel
    source_copy = Path(__file__).resolve().parents[1] / "seeds"  # source checkout
    for candidate in (package_copy, source_copy):
        if (candidate / "crops.csv").is_file():
            return candidate
    raise SeedDataError("the seeds folder (crops.csv, policy.toml ...) is missing from the installation", path=source_copy)


SEEDS_DIR = _find_seeds_dir()
DEFAULT_POLICY_PATH = SEEDS_DIR / "policy.toml"


@dataclass(frozen=True)
class Crop:
    """One crop of the crop table (``seeds/crops.csv``)."""

    crop: str
    name_zh: str
    season_start: tuple[int, int]  # (month, day)
    season_end: tuple[int, int]
    greenup_doy: int
    senescence_doy: int
    base_ndvi: float
    peak_ndvi: float
    cropped_ndvi_threshold: float
    yield_kg_per_mu: float
    price_cny_per_kg: float
    cost_cny_per_mu: float

    @property
    def crosses_new_year(self) -> bool:
        """True when the season window runs over 1 January (winter crops)."""
        return self.season_start > self.season_end

    def season_window(self, harvest_year: int) -> tuple[dt.date, dt.date]:
        """Return the first and last day of the season harvested in ``harvest_year``."""
        start_year = harvest_year - 1 if self.crosses_new_year else harvest_year
        return dt.date(start_year, *self.season_start), dt.date(harvest_year, *self.season_end)


@dataclass(frozen=True)
class ReasonCode:
    """One entry of the reason-code catalogue."""

    code: str
    severity: str  # 'info' | 'reduce' | 'review'
    en: str
    zh: str


def _read_rows(name: str, required: list[str]) -> list[dict[str, str]]:
    path = SEEDS_DIR / name
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in required if column not in (reader.fieldnames or [])]
            if missing:
                raise SeedDataError(f"missing columns {missing}", path=path)
            return list(reader)
    except OSError as error:
        raise SeedDataError(f"cannot read: {error.strerror}", path=path) from error


def _month_day(text: str, path: str, row: int) -> tuple[int, int]:
    try:
        month, day = (int(part) for part in text.split("-"))
        dt.date(2001, month, day)
    except ValueError as error:
        raise SeedDataError(f"season date {text!r} is not MM-DD", path=path, record=f"row {row}") from error
    return month, day


@functools.cache
def load_crops() -> dict[str, Crop]:
    """Return the crop table keyed by crop name, validated."""
    numeric = ["greenup_doy", "senescence_doy", "base_ndvi", "peak_ndvi", "cropped_ndvi_threshold",
               "yield_kg_per_mu", "price_cny_per_kg", "cost_cny_per_mu"]
    rows = _read_rows("crops.csv", ["crop", "name_zh", "season_start", "season_end", *numeric])
    crops: dict[str, Crop] = {}
    for number, row in enumerate(rows, start=2):
        where = {"path": SEEDS_DIR / "crops.csv", "record": f"row {number}"}
        try:
            values = {column: float(row[column]) for column in numeric}
        except ValueError as error:
            raise SeedDataError(f"non-numeric value ({error})", **where) from error
        if min(values["yield_kg_per_mu"], values["price_cny_per_kg"], values["cost_cny_per_mu"]) <= 0:
            raise SeedDataError("yield, price and cost must be positive", **where)
        if not 0 <= values["base_ndvi"] < values["cropped_ndvi_threshold"] < values["peak_ndvi"] <= 1:
            raise SeedDataError("need 0 <= base_ndvi < cropped_ndvi_threshold < peak_ndvi <= 1", **where)
        if row["crop"] in crops:
            raise SeedDataError(f"duplicate crop {row['crop']!r}", **where)
        crops[row["crop"]] = Crop(
            crop=row["crop"],
            name_zh=row["name_zh"],
            season_start=_month_day(row["season_start"], str(where["path"]), number),
            season_end=_month_day(row["season_end"], str(where["path"]), number),
            greenup_doy=int(values["greenup_doy"]),
            senescence_doy=int(values["senescence_doy"]),
            base_ndvi=values["base_ndvi"],
            peak_ndvi=values["peak_ndvi"],
            cropped_ndvi_threshold=values["cropped_ndvi_threshold"],
            yield_kg_per_mu=values["yield_kg_per_mu"],
            price_cny_per_kg=values["price_cny_per_kg"],
            cost_cny_per_mu=values["cost_cny_per_mu"],
        )
    return crops


def crop_aliases() -> dict[str, str]:
    """Every accepted spelling of a crop → its crop code: the code itself and the Chinese name.

    For :func:`agricredit.tables.read_declarations` (``known_crops=``), which
    compares after strip and lower-case: ``{"maize": "maize", "玉米": "maize", ...}``.
    """
    return {name: name for name in load_crops()} | {crop.name_zh: name for name, crop in load_crops().items()}


@functools.cache
def load_templates() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return each crop's NDVI template as ``(doy, ndvi)`` arrays sorted by day of year."""
    rows = _read_rows("ndvi_templates.csv", ["crop", "doy", "ndvi"])
    crops = load_crops()
    points: dict[str, list[tuple[int, float]]] = {}
    for number, row in enumerate(rows, start=2):
        if row["crop"] not in crops:
            raise SeedDataError(f"template for unknown crop {row['crop']!r}", path=SEEDS_DIR / "ndvi_templates.csv", record=f"row {number}")
        points.setdefault(row["crop"], []).append((int(row["doy"]), float(row["ndvi"])))
    missing = sorted(set(crops) - set(points))
    if missing:
        raise SeedDataError(f"no template for crops {missing}", path=SEEDS_DIR / "ndvi_templates.csv")
    templates = {}
    for crop, pairs in points.items():
        pairs.sort()
        templates[crop] = (np.array([p[0] for p in pairs], dtype=float), np.array([p[1] for p in pairs], dtype=float))
    return templates


def template_ndvi(crop: str, doy: np.ndarray | float) -> np.ndarray:
    """Interpolate a crop's template NDVI at day(s) of year, wrapping around the year.

    Parameters
    ----------
    crop
        A crop name of ``seeds/crops.csv``.
    doy
        Day(s) of year; any real number (taken modulo 365).

    Returns
    -------
    numpy.ndarray
        Template NDVI at each ``doy``.
    """
    days, values = load_templates()[crop]
    return np.interp(np.asarray(doy, dtype=float) % 365, days, values, period=365)


@functools.cache
def load_reason_codes() -> dict[str, ReasonCode]:
    """Return the reason-code catalogue keyed by code."""
    rows = _read_rows("reason_codes.csv", ["code", "severity", "en", "zh"])
    codes = {}
    for number, row in enumerate(rows, start=2):
        if row["severity"] not in {"info", "reduce", "review"}:
            raise SeedDataError(f"unknown severity {row['severity']!r}", path=SEEDS_DIR / "reason_codes.csv", record=f"row {number}")
        codes[row["code"]] = ReasonCode(row["code"], row["severity"], row["en"], row["zh"])
    return codes


def default_cropped_threshold() -> float:
    """Return the NDVI threshold for 'cropped' used when no crop is known (the lowest of the table)."""
    return min(crop.cropped_ndvi_threshold for crop in load_crops().values())
