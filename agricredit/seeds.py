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
from typing import Any

import numpy as np
import shapely

from agricredit.errors import InputError, SeedDataError

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
    "SLOTS",
    "Region",
    "CropSeason",
    "Rotation",
    "load_regions",
    "load_calendars",
    "load_rotations",
    "region_at",
    "resolve_region",
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


# --------------------------------------------------------------------------- regional calendars

#: Season slots of a calendar row: a single-season crop, or a crop's place in the year's cropping system.
SLOTS = ("single", "spring", "winter", "summer")
#: Calendar stages of ``seeds/calendars.csv``, in the order they happen.
STAGES = ("sowing", "greenup", "peak", "senescence", "harvest")


@dataclass(frozen=True)
class Region:
    """One region of ``seeds/regions.csv``: a named lon/lat box (WGS84 degrees)."""

    region: str
    name: str
    name_zh: str
    bounds: tuple[float, float, float, float]  # lon_min, lat_min, lon_max, lat_max

    def contains(self, lon: float, lat: float) -> bool:
        """True when the point lies inside the box (edges included)."""
        lon_min, lat_min, lon_max, lat_max = self.bounds
        return lon_min <= lon <= lon_max and lat_min <= lat <= lat_max


@dataclass(frozen=True)
class CropSeason:
    """One crop season of a region's calendar (``seeds/calendars.csv``).

    ``stages`` are the ``(month, day)`` of sowing, green-up (50 % of the NDVI
    rise), peak, senescence (50 % of the fall) and harvest, in that order; a
    season may cross 1 January (winter crops).
    """

    region: str
    crop: str
    slot: str
    stages: tuple[tuple[int, int], ...]

    @property
    def key(self) -> str:
        """``crop`` for a single-season crop, else ``crop:slot`` (e.g. ``maize:summer``)."""
        return self.crop if self.slot == "single" else f"{self.crop}:{self.slot}"

    def dates(self, harvest_year: int) -> dict[str, dt.date]:
        """The stage dates of the season harvested in ``harvest_year`` (each stage on or before the next)."""
        out: dict[str, dt.date] = {}
        later = dt.date(harvest_year, *self.stages[-1])
        for stage, (month, day) in zip(reversed(STAGES), reversed(self.stages)):
            date = dt.date(later.year, month, day)
            if date > later:
                date = dt.date(later.year - 1, month, day)
            out[stage] = later = date
        return {stage: out[stage] for stage in STAGES}


@dataclass(frozen=True)
class Rotation:
    """A two-season cropping system of a region (``seeds/rotations.csv``): ``first`` then ``second``."""

    region: str
    system: str
    first: CropSeason
    second: CropSeason


def _number(row: dict[str, str], column: str, where: dict) -> float:
    try:
        return float(row[column])
    except ValueError as error:
        raise SeedDataError(f"{column} {row[column]!r} is not a number", **where) from error


@functools.cache
def load_regions() -> dict[str, Region]:
    """Return the regions of ``seeds/regions.csv`` keyed by id, validated."""
    rows = _read_rows("regions.csv", ["region", "name", "name_zh", "lon_min", "lat_min", "lon_max", "lat_max", "source"])
    regions: dict[str, Region] = {}
    for number, row in enumerate(rows, start=2):
        where = {"path": SEEDS_DIR / "regions.csv", "record": f"row {number}"}
        bounds = tuple(_number(row, c, where) for c in ("lon_min", "lat_min", "lon_max", "lat_max"))
        if not (-180 <= bounds[0] < bounds[2] <= 180 and -90 <= bounds[1] < bounds[3] <= 90):
            raise SeedDataError("need -180 <= lon_min < lon_max <= 180 and -90 <= lat_min < lat_max <= 90", **where)
        if row["region"] in regions:
            raise SeedDataError(f"duplicate region {row['region']!r}", **where)
        regions[row["region"]] = Region(row["region"], row["name"], row["name_zh"], bounds)
    return regions


@functools.cache
def load_calendars() -> dict[str, dict[str, CropSeason]]:
    """Return the crop seasons of ``seeds/calendars.csv``: region → season key (:attr:`CropSeason.key`) → season."""
    rows = _read_rows("calendars.csv", ["region", "crop", "slot", *STAGES, "source"])
    regions, crops = load_regions(), load_crops()
    calendars: dict[str, dict[str, CropSeason]] = {}
    for number, row in enumerate(rows, start=2):
        where = {"path": SEEDS_DIR / "calendars.csv", "record": f"row {number}"}
        if row["region"] not in regions:
            raise SeedDataError(f"unknown region {row['region']!r} (not in regions.csv)", **where)
        if row["crop"] not in crops:
            raise SeedDataError(f"unknown crop {row['crop']!r} (not in crops.csv)", **where)
        if row["slot"] not in SLOTS:
            raise SeedDataError(f"slot {row['slot']!r} is not one of {', '.join(SLOTS)}", **where)
        season = CropSeason(row["region"], row["crop"], row["slot"],
                            tuple(_month_day(row[stage], str(where["path"]), number) for stage in STAGES))
        dates = season.dates(2001)
        if (dates["harvest"] - dates["sowing"]).days >= 365:
            raise SeedDataError("a season must last less than a year from sowing to harvest", **where)
        if season.key in calendars.setdefault(row["region"], {}):
            raise SeedDataError(f"duplicate season {season.key!r} in region {row['region']!r}", **where)
        calendars[row["region"]][season.key] = season
    missing = sorted(set(regions) - set(calendars))
    if missing:
        raise SeedDataError(f"no calendar for regions {missing}", path=SEEDS_DIR / "calendars.csv")
    return calendars


@functools.cache
def load_rotations() -> dict[str, list[Rotation]]:
    """Return the two-season cropping systems of ``seeds/rotations.csv`` by region (file order)."""
    rows = _read_rows("rotations.csv", ["region", "system", "first_crop", "first_slot", "second_crop", "second_slot", "source"])
    calendars = load_calendars()
    rotations: dict[str, list[Rotation]] = {region: [] for region in calendars}
    for number, row in enumerate(rows, start=2):
        where = {"path": SEEDS_DIR / "rotations.csv", "record": f"row {number}"}
        seasons = calendars.get(row["region"])
        if seasons is None:
            raise SeedDataError(f"unknown region {row['region']!r}", **where)
        parts = []
        for crop, slot in ((row["first_crop"], row["first_slot"]), (row["second_crop"], row["second_slot"])):
            key = crop if slot == "single" else f"{crop}:{slot}"
            if key not in seasons:
                raise SeedDataError(f"no calendar row for {key!r} in region {row['region']!r}", **where)
            parts.append(seasons[key])
        first, second = (p.dates(2002) for p in parts)
        if second["sowing"] < first["harvest"]:
            raise SeedDataError(f"{parts[1].key} is sown before {parts[0].key} is harvested", **where)
        rotations[row["region"]].append(Rotation(row["region"], row["system"], parts[0], parts[1]))
    return rotations


def region_at(lon: float, lat: float) -> str | None:
    """The id of the first region of ``seeds/regions.csv`` whose box holds the point, or ``None``."""
    return next((r.region for r in load_regions().values() if r.contains(lon, lat)), None)


def resolve_region(named: str | None, plots: Any = None) -> str:
    """The region a season is checked against: the one named, or the one holding most of the plots.

    Parameters
    ----------
    named
        A region of ``seeds/regions.csv``; ``None`` or ``"auto"`` to take it from ``plots``.
    plots
        GeoDataFrame of the plots (any CRS): each plot votes for the region box
        holding its representative point; ties go to the first region of the file.

    Raises
    ------
    InputError
        An unknown region, or plots outside every region of ``seeds/regions.csv``.
    """
    regions = load_regions()
    if named and named != "auto":
        if named not in regions:
            raise InputError(f"unknown region {named!r} (known: {', '.join(regions)})")
        return named
    if plots is None or len(plots) == 0:
        raise InputError("no region named and no plots to locate one (set satellite.region or options.region)")
    from agricredit.plots import to_wgs84

    points = to_wgs84(plots).geometry.representative_point().values
    points = points[~(shapely.is_missing(points) | shapely.is_empty(points))]
    lon, lat = shapely.get_x(points), shapely.get_y(points)
    # Each point's vote: the first region of the file whose box holds it (as region_at), -1 for none.
    vote = np.full(len(points), -1)
    for index, region in reversed(list(enumerate(regions.values()))):
        lon_min, lat_min, lon_max, lat_max = region.bounds
        vote[(lon_min <= lon) & (lon <= lon_max) & (lat_min <= lat) & (lat <= lat_max)] = index
    counts = np.bincount(vote[vote >= 0], minlength=len(regions))
    if not counts.any():
        raise InputError("the plots lie outside every region of seeds/regions.csv; name the region "
                         "(policy satellite.region or the case's options.region)")
    return list(regions)[int(np.argmax(counts))]  # argmax: the first of the most voted (ties: file order)
