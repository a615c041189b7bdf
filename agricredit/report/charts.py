"""The report's pictures, drawn with matplotlib (Agg) and returned as ``data:image/png`` URIs.

Nothing is downloaded: no map tiles, no web fonts. Chinese labels (``lang``
``zh``) are drawn with Noto Sans CJK, the font ``.ci/run`` installs from
Debian's ``fonts-noto-cjk`` (:data:`CJK_FONT`); without it the pages are
still written and a warning says the Chinese labels of the charts will not render.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import io
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CJK_FONT", "CJK_FONT_FILES", "LIGHT_COLOURS", "cjk_font_available", "plot_map", "season_chart", "overview_map",
           "limit_histogram"]

log = logging.getLogger(__name__)

#: The CJK font family matplotlib uses for ``--lang zh`` (Debian ``fonts-noto-cjk``).
CJK_FONT = "Noto Sans CJK SC"
#: Plot colour by light (the QGIS style's colours); rejected plots grey.
LIGHT_COLOURS = {"green": "#1a9641", "yellow": "#ffbf00", "red": "#d7191c", "": "#969696"}
#: NDVI colour range of the chips.
NDVI_RANGE = (-0.1, 0.9)

_TEXT = {
    "en": {"ndvi": "NDVI", "observed": "clear observation", "cloudy": "cloudy / no clear reading",
           "template": "{crop} calendar (template)", "window": "{crop} season window", "peak": "peak",
           "greenup": "green-up", "senescence": "senescence", "north": "N", "limits": "limit (CNY)",
           "borrowers": "borrowers", "no_chip": "no image of the peak date covers this plot",
           "map_title": "plot {plot} over NDVI of {date}", "lon": "longitude", "lat": "latitude"},
    "zh": {"ndvi": "NDVI", "observed": "无云观测", "cloudy": "有云 / 无有效观测", "template": "{crop}物候曲线（模板）",
           "window": "{crop}生长季", "peak": "峰值", "greenup": "返青", "senescence": "衰老", "north": "北",
           "limits": "授信额度（元）", "borrowers": "借款人数", "no_chip": "峰值日期无覆盖该地块的影像",
           "map_title": "地块 {plot}，{date} NDVI", "lon": "经度", "lat": "纬度"},
}


#: Where Debian's ``fonts-noto-cjk`` puts the font (matplotlib's font cache may predate its install).
CJK_FONT_FILES = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                  "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")


@functools.cache
def cjk_font_available() -> bool:
    """Whether matplotlib finds :data:`CJK_FONT` (registering :data:`CJK_FONT_FILES` if its cache lacks them)."""
    from pathlib import Path

    from matplotlib import font_manager

    if not any(font.name == CJK_FONT for font in font_manager.fontManager.ttflist):
        for path in filter(lambda p: Path(p).is_file(), CJK_FONT_FILES):
            font_manager.fontManager.addfont(path)
    return any(font.name == CJK_FONT for font in font_manager.fontManager.ttflist)


def _figure(lang: str, size: tuple[float, float], bottom: float = 0.12) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if lang == "zh" and not cjk_font_available():
        log.warning("font %r not found (Debian: apt-get install fonts-noto-cjk): Chinese chart labels will not render",
                    CJK_FONT)
    matplotlib.rcParams["font.family"] = "sans-serif"
    matplotlib.rcParams["font.sans-serif"] = [CJK_FONT, "DejaVu Sans"] if lang == "zh" else ["DejaVu Sans"]
    figure = Figure(figsize=size, dpi=80)
    figure.subplots_adjust(left=0.1, right=0.97, top=0.95, bottom=bottom)
    return figure


def _data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _metres_per_unit(crs: Any, x: float, y: float) -> float:
    """Metres per CRS unit along x at (x, y): the unit factor of a projected CRS, geodesic for degrees."""
    if crs.is_geographic:
        from pyproj import Geod

        return Geod(ellps="WGS84").inv(x, y, x + 1e-3, y)[2] / 1e-3
    return float(crs.axis_info[0].unit_conversion_factor)


def _scale_bar_and_north(axes: Any, crs: Any, lang: str) -> None:
    """A scale bar (a round length about a quarter of the width) and a north arrow (grid north)."""
    x0, x1 = axes.get_xlim()
    y0, y1 = axes.get_ylim()
    per_unit = _metres_per_unit(crs, (x0 + x1) / 2, (y0 + y1) / 2)
    length = _round_length((x1 - x0) * per_unit / 4)
    units = length / per_unit
    left, bottom = x0 + 0.05 * (x1 - x0), y0 + 0.06 * (y1 - y0)
    axes.plot([left, left + units], [bottom, bottom], color="black", lw=4, solid_capstyle="butt")
    axes.plot([left, left + units], [bottom, bottom], color="white", lw=2, solid_capstyle="butt")
    label = f"{length:g} m" if length < 1000 else f"{length / 1000:g} km"
    axes.text(left + units / 2, bottom + 0.03 * (y1 - y0), label, ha="center", va="bottom", fontsize=8,
              bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1})
    axes.annotate(_TEXT[lang]["north"], xy=(0.92, 0.92), xytext=(0.92, 0.74), xycoords="axes fraction",
                  ha="center", va="center", fontsize=10, fontweight="bold",
                  arrowprops={"facecolor": "black", "width": 3, "headwidth": 9},
                  bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1})


@functools.cache
def _to_crs(wkt: str) -> Any:
    """A WGS84 → ``wkt`` transformer (always x=lon, y=lat in)."""
    import pyproj

    return pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_wkt(wkt), always_xy=True)


def _ndvi_png(ndvi: np.ndarray) -> str:
    """The NDVI chip coloured (RdYlGn over :data:`NDVI_RANGE`, no clear reading grey) as a PNG data URI."""
    from matplotlib import colormaps
    from PIL import Image

    scaled = (np.nan_to_num(ndvi, nan=NDVI_RANGE[0]) - NDVI_RANGE[0]) / (NDVI_RANGE[1] - NDVI_RANGE[0])
    rgba = colormaps["RdYlGn"](np.clip(scaled, 0.0, 1.0), bytes=True)
    rgba[np.isnan(ndvi)] = (160, 160, 160, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _round_length(target: float) -> float:
    """The largest 1, 2 or 5 × 10^k not above ``target`` (a scale bar's length)."""
    power = 10 ** math.floor(math.log10(target))
    return max(n * power for n in (1, 2, 5) if n * power <= target)


def _svg_rings(geometry: Any, to_pixel: Any) -> str:
    """SVG path data of every ring of a (Multi)Polygon, through ``to_pixel(x, y) -> (col, row)``."""
    parts = []
    for polygon in getattr(geometry, "geoms", [geometry]):
        for ring in [polygon.exterior, *polygon.interiors]:
            xy = np.asarray(ring.coords)
            cols, rows = to_pixel(xy[:, 0], xy[:, 1])
            parts.append("M" + " L".join(f"{c:.2f},{r:.2f}" for c, r in zip(cols, rows)) + " Z")
    return " ".join(parts)


def plot_map(chip: Mapping[str, Any] | None, geometry: Any, plot_id: str, light: str, lang: str,
             size_px: int = 360) -> str:
    """The plot outlined over its NDVI chip at the peak date, with scale bar, north arrow and NDVI key (inline SVG).

    The chip is drawn on its own grid (the tile's CRS; north is up on a
    north-up grid such as UTM), the outline projected onto it with pyproj.
    Without a chip the outline is drawn alone on its UTM zone.

    Parameters
    ----------
    chip
        A row of ``chips.parquet``, or ``None``.
    geometry
        The plot outline in WGS84 (shapely).
    """
    import geopandas as gpd
    import shapely

    from agricredit.report.data import chip_array

    text = _TEXT[lang]
    if chip is not None:
        ndvi, transform, wkt = chip_array(chip)
        height, width = ndvi.shape
        title = text["map_title"].format(plot=plot_id, date=chip["date"])
    else:
        wkt = gpd.GeoSeries([geometry], crs="EPSG:4326").estimate_utm_crs().to_wkt()
        ndvi, title = None, f"{plot_id}: {text['no_chip']}"
    local = shapely.transform(geometry, lambda xy: np.column_stack(_to_crs(wkt).transform(xy[:, 0], xy[:, 1])))
    if ndvi is None:
        from rasterio.transform import from_bounds

        minx, miny, maxx, maxy = local.bounds
        pad = 0.3 * max(maxx - minx, maxy - miny, 1.0)
        width = height = 64
        side = max(maxx - minx, maxy - miny) + 2 * pad
        cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
        transform = from_bounds(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, width, height)
    inverse = ~transform

    def to_pixel(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return inverse * (x, y)

    import pyproj

    crs = pyproj.CRS.from_wkt(wkt)
    centre = transform * (width / 2, height / 2)
    metres_per_pixel = abs(transform.a) * _metres_per_unit(crs, *centre)
    bar_m = _round_length(width * metres_per_pixel / 4)
    bar_px = bar_m / metres_per_pixel
    unit = f"{bar_m:g} m" if bar_m < 1000 else f"{bar_m / 1000:g} km"
    k = width / 100  # one hundredth of the width, in pixels of the chip (the viewBox unit)
    image = (f'<image href="{_ndvi_png(ndvi)}" x="0" y="0" width="{width}" height="{height}" '
             f'preserveAspectRatio="none" style="image-rendering:pixelated"/>' if ndvi is not None else
             f'<rect width="{width}" height="{height}" fill="#f4f4f4"/>')
    colour = LIGHT_COLOURS.get(light, "#969696")
    rings = _svg_rings(local, to_pixel)
    x0, y0 = 4 * k, height - 5 * k
    legend = ""
    if ndvi is not None:
        from matplotlib import colormaps

        cmap = colormaps["RdYlGn"]
        stops = "".join(f'<stop offset="{t:.2f}" stop-color="#{"".join(f"{int(255 * v):02x}" for v in cmap(t)[:3])}"/>'
                        for t in np.linspace(0, 1, 6))
        gradient = f"g-{_e_id(plot_id)}"
        legend = (f'<defs><linearGradient id="{gradient}">{stops}</linearGradient></defs>'
                  f'<rect x="{width - 34 * k}" y="{height - 9 * k}" width="{30 * k}" height="{3 * k}" '
                  f'fill="url(#{gradient})" stroke="black" stroke-width="{0.3 * k}"/>'
                  f'<text x="{width - 34 * k}" y="{height - 10 * k}" font-size="{3.5 * k}">NDVI {NDVI_RANGE[0]:g}'
                  f'</text><text x="{width - 4 * k}" y="{height - 10 * k}" font-size="{3.5 * k}" '
                  f'text-anchor="end">{NDVI_RANGE[1]:g}</text>')
    from html import escape

    return (f'<figure class="map"><svg viewBox="0 0 {width} {height}" '
            f'width="{size_px}" height="{size_px * height / width:.0f}" role="img" aria-label="{escape(title)}">'
            f'{image}<path d="{rings}" fill="none" stroke="black" stroke-width="{1.6 * k}"/>'
            f'<path d="{rings}" fill="none" stroke="{colour}" stroke-width="{0.8 * k}"/>'
            f'<rect x="{x0 - k}" y="{y0 - 5 * k}" width="{bar_px + 2 * k}" height="{7 * k}" fill="white" opacity="0.75"/>'
            f'<rect x="{x0}" y="{y0}" width="{bar_px}" height="{1.2 * k}" fill="black"/>'
            f'<text x="{x0 + bar_px / 2}" y="{y0 - 1.2 * k}" font-size="{3.5 * k}" text-anchor="middle">{unit}</text>'
            f'<g transform="translate({width - 8 * k},{4 * k})"><rect x="{-4 * k}" y="0" width="{8 * k}" '
            f'height="{15 * k}" fill="white" opacity="0.75"/><path d="M0,{k} L{3 * k},{9 * k} L0,{7 * k} '
            f'L{-3 * k},{9 * k} Z" fill="black"/><text x="0" y="{14 * k}" font-size="{4 * k}" text-anchor="middle" '
            f'font-weight="bold">{escape(text["north"])}</text></g>{legend}</svg>'
            f"<figcaption>{escape(title)}</figcaption></figure>")


def _e_id(text: str) -> str:
    """``text`` reduced to characters safe in an SVG id."""
    return "".join(c if c.isalnum() else "_" for c in text)


def season_chart(series: pd.DataFrame, plot: Mapping[str, Any], lang: str, *, min_valid_fraction: float) -> str:
    """The plot's NDVI season against the declared crop's calendar; cloudy dates marked at the bottom.

    Parameters
    ----------
    series
        The plot's rows of ``series.parquet``.
    plot
        Its row of ``plots.geojson`` (``declared_crop``, ``peak_date``, ``greenup_date``, ``senescence_date``).
    min_valid_fraction
        A date whose clear share of the plot is below this is drawn as cloudy (the policy's rule).
    """
    from agricredit.seeds import load_crops, template_ndvi

    text = _TEXT[lang]
    figure = _figure(lang, (6.4, 3.6), bottom=0.2)
    axes = figure.add_subplot()
    dates = pd.to_datetime(series["date"]).dt.date.to_numpy()
    clear = (series["valid_frac"].to_numpy(dtype=float) >= min_valid_fraction) & series["ndvi_mean"].notna().to_numpy()
    crop = load_crops().get(str(plot.get("declared_crop") or ""))
    if crop is not None and len(dates):
        name = crop.name_zh if lang == "zh" else crop.crop
        windows = _calendar_windows(crop, str(plot.get("region") or ""), min(dates), max(dates))
        for k, (start, end) in enumerate(windows):
            axes.axvspan(start, end, color="0.92", zorder=0, label=text["window"].format(crop=name) if k == 0 else None)
        start, end = min(w[0] for w in windows), max(w[1] for w in windows)
        days = np.array([start + dt.timedelta(days=k) for k in range((end - start).days + 1)])
        doy = np.array([d.timetuple().tm_yday for d in days])
        axes.plot(days, template_ndvi(crop.crop, doy), color="#2b83ba", lw=1.6, label=text["template"].format(crop=name))
    axes.plot(dates[clear], series["ndvi_mean"].to_numpy(dtype=float)[clear], "o-", color="#1a9641", ms=5,
              label=text["observed"])
    if (~clear).any():
        axes.plot(dates[~clear], np.full((~clear).sum(), -0.15), "x", color="0.4", ms=7, mew=2, label=text["cloudy"])
    for key, style in (("greenup_date", ":"), ("peak_date", "--"), ("senescence_date", ":")):
        day = _date(plot.get(key))
        if day is not None:
            axes.axvline(day, color="0.3", ls=style, lw=1)
            axes.text(day, 0.97, text[key.split("_")[0]], rotation=90, fontsize=7, va="top", ha="right", color="0.3")
    axes.set_ylim(-0.25, 1.0)
    axes.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
    axes.set_ylabel(text["ndvi"])
    _month_ticks(axes)
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=4, frameon=False)
    return _data_uri(figure)


def _month_ticks(axes: Any) -> None:
    """Ticks on the first day of every second month of the x range, labelled YYYY-MM (set once: drawing is cheap)."""
    import matplotlib.dates as mdates

    lo, hi = (mdates.num2date(v).date() for v in axes.get_xlim())
    months = []
    day = dt.date(lo.year, lo.month, 1)
    while day <= hi:
        if day >= lo and day.month % 2 == 1:
            months.append(day)
        day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    axes.set_xticks(months, [d.strftime("%Y-%m") for d in months], fontsize=8)


def _calendar_windows(crop: Any, region: str, first: dt.date, last: dt.date) -> list[tuple[dt.date, dt.date]]:
    """Sowing-to-harvest windows of ``crop`` in ``region``'s calendar (every slot: winter, summer ...) that meet
    the observed span; the crop table's season window when the region has no calendar for it."""
    from agricredit.seeds import load_calendars

    seasons = [s for s in load_calendars().get(region, {}).values() if s.crop == crop.crop]
    windows = [(d["sowing"], d["harvest"]) for s in seasons for year in range(first.year, last.year + 2)
               for d in [s.dates(year)] if d["harvest"] >= first and d["sowing"] <= last]
    return sorted(set(windows)) or [crop.season_window(last.year)]


def _date(value: Any) -> dt.date | None:
    """A date field as a date; ``None`` when missing (None, NaN, NaT, empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT or not str(value).strip():
        return None
    return dt.date.fromisoformat(str(value)[:10])


def overview_map(plots: Any, lang: str) -> str:
    """Every plot of the run coloured by its light (WGS84, aspect corrected for latitude)."""
    text = _TEXT[lang]
    figure = _figure(lang, (7.0, 6.0))
    axes = figure.add_subplot()
    for light, colour in LIGHT_COLOURS.items():
        subset = plots.loc[plots["light"].fillna("") == light]
        if len(subset):
            subset.plot(ax=axes, color=colour, edgecolor="black", linewidth=0.3, label=light or "rejected")
    miny, maxy = plots.total_bounds[1], plots.total_bounds[3]
    axes.set_aspect(1 / math.cos(math.radians((miny + maxy) / 2)))
    axes.set_xlabel(text["lon"])
    axes.set_ylabel(text["lat"])
    from matplotlib.patches import Patch

    axes.legend(handles=[Patch(color=c, label=l or "rejected") for l, c in LIGHT_COLOURS.items()], fontsize=8,
                loc="lower right")
    _scale_bar_and_north(axes, plots.crs, lang)
    return _data_uri(figure)


def limit_histogram(limits: Sequence[float], lang: str) -> str:
    """The distribution of the borrowers' limits."""
    text = _TEXT[lang]
    figure = _figure(lang, (6.0, 3.2))
    axes = figure.add_subplot()
    axes.hist(np.asarray(limits, dtype=float), bins=20, color="#2b83ba", edgecolor="white")
    axes.set_xlabel(text["limits"])
    axes.set_ylabel(text["borrowers"])
    return _data_uri(figure)
