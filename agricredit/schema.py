"""The output schema: every field of every output table, its type, unit, precision and meaning.

One source of truth. :func:`conform` builds each output table from it (an
allow-list: a field not listed here never leaves the tool), and the README's
"Output schema" section is :func:`markdown` (``python -m agricredit.schema``
prints it; a test checks the README holds exactly that text). Adding a column
is one :class:`Field` line below.

Encoding rules, the same in every format (GeoJSON, CSV, xlsx, GeoParquet):

- lists are one text field of items joined by ``;`` (``A;B``), never a JSON
  array, so that QGIS can style them and a Shapefile export keeps them;
- nested records live in one field, ``details``, as JSON text;
- integers are written as integers, money as integer yuan, fractions are in
  [0, 1], and each kind of figure has one precision (:data:`KINDS`);
- a missing figure is empty (JSON ``null``, an empty CSV cell).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agricredit.jsondata import canonical_json

__all__ = ["Kind", "Field", "KINDS", "PLOT_FIELDS", "BORROWER_FIELDS", "STATS_FIELDS", "AREA_FIELDS", "SERIES_FIELDS", "ALERT_FIELDS",
           "RECOMMENDATION_FIELDS", "OUTPUT_TABLES",
           "format_value", "conform", "conformed_table", "conform_frame", "headers", "markdown"]

#: Separator of the items of a list field.
LIST_SEPARATOR = ";"

KindName = Literal["text", "code", "codes", "integer", "yuan", "mu", "ndvi", "ndvi_days", "fraction", "factor",
                   "days", "pixels", "ha", "metres", "date", "json"]


@dataclass(frozen=True)
class Kind:
    """How one kind of figure is written: its JSON type, unit and decimals (``None``: not a float)."""

    json_type: Literal["string", "integer", "number"]
    unit: str
    decimals: int | None
    description: str


#: Every kind of output figure, with its one precision.
KINDS: dict[str, Kind] = {
    "text": Kind("string", "", None, "free text"),
    "code": Kind("string", "", None, "a machine code, stable across versions and languages"),
    "codes": Kind("string", "", None, "codes joined by `;`, empty when none"),
    "integer": Kind("integer", "", None, "a count"),
    "yuan": Kind("integer", "CNY", None, "whole yuan, rounded down"),
    "mu": Kind("number", "mu", 4, "area, 4 decimals (0.07 m²)"),
    "ha": Kind("number", "ha", 6, "area, 6 decimals (0.01 m²)"),
    "metres": Kind("number", "m", 2, "length, 2 decimals"),
    "ndvi": Kind("number", "NDVI", 4, "NDVI in [-1, 1], 4 decimals"),
    "ndvi_days": Kind("number", "NDVI·day", 2, "time integral of NDVI, 2 decimals"),
    "fraction": Kind("number", "1", 4, "a share in [0, 1], 4 decimals"),
    "factor": Kind("number", "1", 4, "a multiplier, 4 decimals"),
    "days": Kind("number", "day", 1, "a duration, 1 decimal"),
    "pixels": Kind("number", "pixel", 2, "pixels weighted by the share of each inside the plot, 2 decimals"),
    "date": Kind("string", "", None, "YYYY-MM-DD"),
    "json": Kind("string", "", None, "JSON text"),
}


@dataclass(frozen=True)
class Field:
    """One output field."""

    name: str
    kind: KindName
    meaning: str
    zh: str  # the header of Excel-ready tables written with --lang zh


#: ``plots.geojson`` / ``plots.parquet``: one feature per input plot.
PLOT_FIELDS: tuple[Field, ...] = (
    Field("plot_id", "text", "plot ID as given in the plot file", "地块编号"),
    Field("borrower", "code", "keyed pseudonym of the borrower who drew the plot", "借款人代号"),
    Field("geometry_status", "code", "OK, GEOMETRY_REPAIRED, or why the plot was rejected", "图形状态"),
    Field("light", "code", "green, yellow or red (design: how to read the results); empty for a rejected plot", "信号灯"),
    Field("reason_codes", "codes", "codes of the failed checks (seeds/reason_codes.csv)", "原因代码"),
    Field("declared_crop", "code", "crop declared by the borrower", "申报作物"),
    Field("drawn_mu", "mu", "geodesic area of the drawn outline", "勾绘面积(亩)"),
    Field("registered_mu", "mu", "area in the land registry", "登记面积(亩)"),
    Field("declared_mu", "mu", "area declared by the borrower", "申报面积(亩)"),
    Field("cropped_mu", "mu", "cropped area seen by the satellite at the season peak, scaled from the area seen", "卫星种植面积(亩)"),
    Field("cropped_measured_share", "fraction", "share of the plot seen (valid) on the date cropped_mu was measured",
          "种植面积测量覆盖比例"),
    Field("verified_mu", "mu", "area the plot adds to its borrower's limit now", "核实面积(亩)"),
    Field("verified_mu_if_confirmed", "mu", "area it adds once a reviewer confirms it", "确认后核实面积(亩)"),
    Field("best_crop", "code", "crop whose phenology fits the season best", "最匹配作物"),
    Field("crop_ranking", "codes", "crops (crop:slot for a season of a rotation) from best to worst fit", "作物排序"),
    Field("region", "code", "region whose crop calendars were used (seeds/regions.csv)", "作物历区域"),
    Field("best_explanation", "code", "single crop or rotation (e.g. wheat-maize) that explains the season best",
          "最佳种植制度"),
    Field("declared_explanation", "code", "the explanation fitted to the declared crops", "申报种植制度"),
    Field("best_rmse", "ndvi", "NDVI error of the best explanation (SEASON_UNRECOGNISED above the policy's limit)",
          "最佳拟合误差"),
    Field("peak_ndvi", "ndvi", "highest NDVI of the season", "峰值NDVI"),
    Field("peak_date", "date", "date of the peak", "峰值日期"),
    Field("greenup_date", "date", "date NDVI rose through half its amplitude", "返青日期"),
    Field("senescence_date", "date", "date NDVI fell through half its amplitude", "衰老日期"),
    Field("season_length_days", "days", "green-up to senescence", "生长季天数"),
    Field("ndvi_integral", "ndvi_days", "NDVI integrated over the season", "NDVI积分"),
    Field("n_valid", "integer", "observations used (enough of the plot valid)", "有效观测数"),
    Field("n_clear", "integer", "observations used whose product had a cloud mask", "云掩膜观测数"),
    Field("vigor_factor", "factor", "capacity multiplier from vigor against peers", "长势系数"),
    Field("details", "json", 'the failed checks with their figures: {"checks": [{"code", "figures"}]}', "明细"),
)

#: ``borrowers.csv`` / ``.xlsx`` / ``.geojson`` / ``.parquet``: one row per borrower.
BORROWER_FIELDS: tuple[Field, ...] = (
    Field("borrower", "code", "keyed pseudonym of the borrower", "借款人代号"),
    Field("village", "text", "village from the borrower table", "村"),
    Field("status", "code", "APPROVE, REVIEW or DECLINE", "状态"),
    Field("limit", "yuan", "credit limit the verified plots support now", "授信额度(元)"),
    Field("limit_if_confirmed", "yuan", "limit once the reviewer confirms the plots under review",
          "确认后额度(元)"),
    Field("currency", "code", "ISO 4217 currency of the money fields", "币种"),
    Field("reason_codes", "codes", "up to four codes, ranked by how much each lowered the limit", "原因代码"),
    Field("verified_mu", "mu", "sum of the plots' verified areas", "核实面积(亩)"),
    Field("need", "yuan", "verified area × cost of cultivation", "生产成本需求(元)"),
    Field("capacity", "yuan", "advance rate × verified area × yield × vigor × price", "还款能力(元)"),
    Field("cap", "yuan", "the policy's per-borrower maximum", "单户上限(元)"),
    Field("binding", "code", "need, capacity or cap: which ceiling set the limit", "约束项"),
    Field("plots", "codes", "IDs of the borrower's plots", "地块"),
    Field("explanation", "text", "the decision in words (English, or Chinese with --lang zh)", "说明"),
    Field("details", "json", 'per plot: {"plots": [{"plot_id", "verified_mu", "light", "reason_codes"}]}', "明细"),
)

#: ``agricredit stats``: one row (GeoJSON: one feature) per plot and date.
STATS_FIELDS: tuple[Field, ...] = (
    Field("plot_id", "text", "plot ID as given in the plot file", "地块编号"),
    Field("date", "date", "acquisition date (the tiles of one date are mosaicked)", "日期"),
    Field("ndvi_mean", "ndvi", "coverage-weighted mean NDVI of the valid pixels", "NDVI均值"),
    Field("ndvi_median", "ndvi", "coverage-weighted median NDVI", "NDVI中位数"),
    Field("ndvi_p90", "ndvi", "coverage-weighted 90th percentile NDVI", "NDVI第90百分位"),
    Field("valid_frac", "fraction", "share of the plot's area with a valid (clear) reading", "有效比例"),
    Field("cloud_frac", "fraction", "share of the plot's area masked as cloud or shadow", "云覆盖比例"),
    Field("covered_frac", "fraction", "share of the plot's area inside some tile of the date", "影像覆盖比例"),
    Field("cropped_area_mu", "mu", "valid area with NDVI at or above the crop threshold", "种植面积(亩)"),
    Field("pixel_count", "pixels", "pixels covering the plot, each weighted by its share inside", "像元数"),
    Field("flags", "codes", "NOT_COVERED, PARTIAL_COVERAGE ...; empty when none", "标记"),
)

#: ``agricredit area``: one row (GeoJSON: one feature) per input plot.
AREA_FIELDS: tuple[Field, ...] = (
    Field("plot_id", "text", "plot ID as given in the plot file", "地块编号"),
    Field("area_ha", "ha", "geodesic area on WGS84", "面积(公顷)"),
    Field("area_mu", "mu", "geodesic area on WGS84 (1 ha = 15 mu)", "面积(亩)"),
    Field("perimeter_m", "metres", "geodesic perimeter", "周长(米)"),
    Field("geometry_status", "code", "OK, GEOMETRY_REPAIRED, GEOMETRY_INVALID ...", "图形状态"),
    Field("geometry_reason", "text", "why the outline was repaired or rejected", "图形说明"),
    Field("overlaps", "json", 'other plots sharing area: [{"plot_id", "shared_m2"}]', "重叠地块"),
)

#: ``series.parquet`` of ``assess`` (for ``agricredit report``): one row per accepted plot and date.
SERIES_FIELDS: tuple[Field, ...] = (
    Field("plot_id", "text", "plot ID as given in the plot file", "地块编号"),
    Field("date", "date", "acquisition date", "日期"),
    Field("ndvi_mean", "ndvi", "coverage-weighted mean NDVI of the valid pixels; empty when none", "NDVI均值"),
    Field("valid_frac", "fraction", "share of the plot's area with a valid (clear) reading", "有效比例"),
    Field("cloud_frac", "fraction", "share of the plot's area masked as cloud or shadow", "云覆盖比例"),
)

#: ``agricredit monitor``: ``alerts.geojson`` / ``alerts.csv``, one feature per alert (plot, code, date).
ALERT_FIELDS: tuple[Field, ...] = (
    Field("plot_id", "text", "plot ID as given in the plot file", "地块编号"),
    Field("borrower", "code", "keyed pseudonym of the borrower who drew the plot", "借款人代号"),
    Field("declared_crop", "code", "crop declared by the borrower", "申报作物"),
    Field("code", "code", "NO_EMERGENCE, GROWTH_LAG, SUDDEN_DROP, REGIONAL_STRESS or EARLY_HARVEST", "预警代码"),
    Field("severity", "code", "the code's severity in seeds/reason_codes.csv", "严重程度"),
    Field("date", "date", "the new observation the alert is about", "日期"),
    Field("previous_date", "date", "the plot's previous clear observation (empty for level alerts)", "前次日期"),
    Field("ndvi", "ndvi", "the plot's mean NDVI on date", "NDVI均值"),
    Field("previous_ndvi", "ndvi", "the plot's mean NDVI on previous_date", "前次NDVI"),
    Field("peer_median", "ndvi", "median NDVI of the peers (same crop) on date", "同作物中位NDVI"),
    Field("peer_median_change", "ndvi", "median NDVI change of the peers between previous_date and date",
          "同作物NDVI中位变化"),
    Field("peer_percentile", "fraction", "share of peers below the plot (its change for drops, its NDVI otherwise)",
          "同作物百分位"),
    Field("n_peers", "integer", "peers compared (same crop, clear on the dates)", "对比地块数"),
    Field("action", "code", "what the policy asks for this code: keep, visit or reduce", "处置"),
    Field("recommendation", "code", "the borrower's recommendation (recommendations.csv)", "借款人建议"),
    Field("details", "json", "the evidence: calendar window, thresholds, the plot's series since sowing", "明细"),
)

#: ``recommendations.csv``: one row per borrower of the monitored plots.
RECOMMENDATION_FIELDS: tuple[Field, ...] = (
    Field("borrower", "code", "keyed pseudonym of the borrower", "借款人代号"),
    Field("recommendation", "code", "KEEP, FIELD_VISIT, REDUCE_UNDRAWN or FREEZE_UNDRAWN", "建议"),
    Field("reduce_share", "fraction", "share of the undrawn limit to withhold (1 when frozen, 0 otherwise)",
          "未提款额度下调比例"),
    Field("limit", "yuan", "the assessed limit", "授信额度(元)"),
    Field("limit_after", "yuan", "the limit if the recommendation is applied to an undrawn limit", "调整后额度(元)"),
    Field("verified_mu", "mu", "the borrower's verified area", "核实面积(亩)"),
    Field("lost_mu", "mu", "verified area of the plots whose alerts ask to reduce", "受损面积(亩)"),
    Field("alert_codes", "codes", "the codes of the borrower's alerts", "预警代码"),
    Field("plots", "codes", "plots with alerts", "预警地块"),
    Field("explanation", "text", "the rule applied, with its figures", "说明"),
)

#: Output table name → its fields.
OUTPUT_TABLES: dict[str, tuple[Field, ...]] = {"plots": PLOT_FIELDS, "borrowers": BORROWER_FIELDS,
                                               "stats": STATS_FIELDS, "area": AREA_FIELDS, "series": SERIES_FIELDS,
                                               "alerts": ALERT_FIELDS, "recommendations": RECOMMENDATION_FIELDS}




def format_value(kind: KindName, value: Any) -> Any:
    """Write ``value`` as its kind says: rounded, integer, joined or JSON text; ``None`` when missing.

    Raises
    ------
    ValueError
        A fraction outside [0, 1] (beyond float noise) or a non-integral count:
        a bug upstream, never clipped silently here.
    """
    if isinstance(value, (list, tuple, dict, str)):
        pass
    elif value is None or value != value:  # None, NaN, NaT
        return None
    elif kind != "date" and hasattr(value, "item"):
        value = value.item()  # numpy scalar → Python
        if isinstance(value, float) and not math.isfinite(value):
            return None
    elif isinstance(value, float) and not math.isfinite(value):
        return None
    spec = KINDS[kind]
    if kind == "codes":
        return LIST_SEPARATOR.join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    if kind == "json":
        return value if isinstance(value, str) else canonical_json(value)  # sorted keys, no spaces, non-ASCII kept
    if kind == "date":
        return str(value)[:10]
    if kind == "yuan":
        return math.floor(round(float(value), 6))  # rounded down, as limits are: floor(need) still bounds the limit
    if kind == "integer":
        if float(value) != int(value):
            raise ValueError(f"count {value!r} is not an integer")
        return int(value)
    if spec.decimals is not None:
        value = round(float(value), spec.decimals)
        if kind == "fraction" and not 0.0 <= value <= 1.0:
            raise ValueError(f"fraction {value!r} outside [0, 1]")
        return value + 0.0  # -0.0 → 0.0
    return str(value)


def format_column(kind: KindName, values: Iterable[Any]) -> list[Any]:
    """:func:`format_value` of each value, with the common values (Python floats, ints, text, ``None``) on fast paths.

    A column of Python floats and ``None`` of a kind with decimals is rounded as a whole array
    (:func:`_round_floats`).

    Raises
    ------
    ValueError
        As :func:`format_value`.
    """
    values = values if isinstance(values, list) else list(values)
    decimals = KINDS[kind].decimals
    if decimals is not None:
        if set(map(type, values)) <= _FLOAT_OR_NONE:
            return _round_floats(values, decimals, fraction=kind == "fraction")
        column = []
        for value in values:
            if value is None:
                column.append(None)
            elif type(value) is float and math.isfinite(value):
                rounded = round(value, decimals)
                if kind == "fraction" and not 0.0 <= rounded <= 1.0:
                    raise ValueError(f"fraction {rounded!r} outside [0, 1]")
                column.append(rounded + 0.0)  # -0.0 → 0.0
            else:
                column.append(format_value(kind, value))
        return column
    if kind in ("text", "code"):
        return [value if value is None or type(value) is str else format_value(kind, value) for value in values]
    if kind == "codes":
        return [LIST_SEPARATOR.join(map(str, value)) if type(value) is list
                else value if type(value) is str else format_value(kind, value) for value in values]
    if kind == "json":
        return [canonical_json(value) if type(value) is dict else format_value(kind, value) for value in values]
    if kind == "date":
        return [value[:10] if type(value) is str else None if value is None else format_value(kind, value)
                for value in values]
    if kind == "integer":
        return [value if type(value) is int and -_EXACT_INT < value < _EXACT_INT else None if value is None
                else format_value(kind, value) for value in values]
    if kind == "yuan":
        return [math.floor(round(value, 6)) if type(value) is float and math.isfinite(value)
                else None if value is None else format_value(kind, value) for value in values]
    return [format_value(kind, value) for value in values]


_FLOAT_OR_NONE = frozenset({float, type(None)})

#: Integers a float holds exactly (a count beyond is left to :func:`format_value`'s check).
_EXACT_INT = 2**53

#: Scaled values beyond this magnitude are rounded by Python one by one (the array rounding needs exact integers).
_ROUND_ARRAY_LIMIT = 2.0**50


def _round_floats(values: list[float | None], decimals: int, *, fraction: bool) -> list[float | None]:
    """``round(value, decimals) + 0.0`` of each finite float, ``None`` for ``None`` and NaN/inf, as one array.

    ``numpy.rint(value × 10**decimals) / 10**decimals`` is Python's ``round``
    (the double nearest the decimal rounded half to even) wherever the scaled
    product's rounding cannot move it across a half: the products within a
    relative 1e-9 of a half-integer, or too large for exact integers, are
    rounded by Python itself.

    Raises
    ------
    ValueError
        ``fraction`` and a rounded value outside [0, 1].
    """
    import numpy as np

    array = np.array([math.nan if value is None else value for value in values], dtype=float)
    factor = 10.0**decimals
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = array * factor
        rounded = np.rint(scaled) / factor + 0.0  # -0.0 → 0.0
        near_half = np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5) <= 1e-9 * np.maximum(1.0, np.abs(scaled))
        by_python = np.isfinite(array) & (near_half | (np.abs(scaled) >= _ROUND_ARRAY_LIMIT))
    for index in np.flatnonzero(by_python).tolist():
        rounded[index] = round(values[index], decimals) + 0.0
    missing = ~np.isfinite(array)
    if fraction:
        outside = np.flatnonzero(~missing & ((rounded < 0.0) | (rounded > 1.0)))
        if len(outside):
            raise ValueError(f"fraction {float(rounded[outside[0]])!r} outside [0, 1]")
    column = rounded.tolist()
    for index in np.flatnonzero(missing).tolist():
        column[index] = None
    return column


def conform(records: Iterable[Mapping[str, Any]], fields: Sequence[Field]) -> list[dict[str, Any]]:
    """Rows with exactly ``fields``, in order, each value written as its kind says (absent → ``None``)."""
    records = list(records)
    names = [f.name for f in fields]
    columns = [format_column(f.kind, [record.get(f.name) for record in records]) for f in fields]
    return [dict(zip(names, row)) for row in zip(*columns)] if names else [{} for _ in records]


def conformed_table(records: Iterable[Mapping[str, Any]], fields: Sequence[Field]) -> Any:
    """:func:`conform`'s rows as a DataFrame of object columns (an integer stays an integer beside a gap)."""
    records = list(records)
    return conformed_columns({f.name: [record.get(f.name) for record in records] for f in fields}, fields,
                             len(records))


def conformed_columns(columns: Mapping[str, Sequence[Any]], fields: Sequence[Field], rows: int) -> Any:
    """:func:`conformed_table` of a table given by column: ``name → values`` (``rows`` values; absent: ``None``)."""
    import pandas as pd

    return pd.DataFrame({f.name: pd.Series(format_column(f.kind, columns.get(f.name, [None] * rows)), dtype=object)
                         for f in fields}, columns=[f.name for f in fields], index=pd.RangeIndex(rows))


def conform_frame(frame: Any, fields: Sequence[Field]) -> Any:
    """``frame`` (a DataFrame or GeoDataFrame) with exactly ``fields``, as :func:`conformed_table`; geometry kept."""
    rows = conformed_table(frame.to_dict("records"), fields)
    if "geometry" not in frame:
        return rows
    import geopandas as gpd

    return gpd.GeoDataFrame(rows, geometry=list(frame.geometry.values), crs=frame.crs)


def headers(fields: Sequence[Field], lang: str) -> list[str]:
    """Column headers of an Excel-ready table: field names, or the Chinese headers with ``lang`` ``zh``."""
    return [f.zh if lang == "zh" else f.name for f in fields]


def markdown() -> str:
    """The README's output-schema tables (field, type, unit, meaning), one per output table."""
    lines: list[str] = []
    for table, fields in OUTPUT_TABLES.items():
        lines += [f"`{table}`:", "", "| field | type | unit | meaning | 中文 |", "|---|---|---|---|---|"]
        for f in fields:
            spec = KINDS[f.kind]
            kind = f"{spec.json_type} ({f.kind}{'' if spec.decimals is None else f', {spec.decimals} dp'})"
            lines.append(f"| `{f.name}` | {kind} | {spec.unit} | {f.meaning} | {f.zh} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":  # python -m agricredit.schema > section of README.md
    print(markdown(), end="")
