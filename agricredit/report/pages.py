"""The report's HTML pages: one per borrower and an index, self-contained (no URL but ``data:`` images).

:func:`load_run` reads an ``assess`` output folder; :func:`borrower_page` and
:func:`index_page` return the HTML text; :func:`write_report` writes a folder.
Every figure shown is also in an element's ``data-field``/``data-value``
attributes, the value as it is in ``borrowers.csv``, so that a program (and
the tests) can read a page back.
"""

from __future__ import annotations

import functools
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from agricredit.errors import InputError, InputNotFoundError
from agricredit.report import charts
from agricredit.report.fairness import ADVERSE_IMPACT_THRESHOLD, fairness_table

__all__ = ["Run", "load_run", "borrower_page", "index_page", "write_report", "report_files", "page_name",
           "PERSONAL_PREFIX", "BORROWER_LEVEL_CODES", "VISIT_CODES"]

#: File-name prefix of pages that hold personal data (``report --reveal``).
PERSONAL_PREFIX = "PERSONAL_DATA_"
#: Reason codes of a borrower, not of a plot (left out of a plot's check table).
BORROWER_LEVEL_CODES = frozenset({"BELOW_MIN_LIMIT", "CAP_APPLIED", "CAPACITY_LIMITED", "NO_PLOTS", "BORROWER_RECORD_INVALID"})
#: Codes that record a field visit (:mod:`agricredit.visits`): shown only on the plots they were given to.
VISIT_CODES = frozenset({"VISIT_CONFIRMED", "VISIT_REJECTED"})

_CSS = """
body{font-family:"Noto Sans CJK SC","Noto Sans",sans-serif;margin:1.5em auto;padding:0 1.5em;max-width:1100px;color:#222}
h1{margin-bottom:.2em} table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top} td.num{text-align:right} .badge{padding:2px 10px;border-radius:4px;color:#fff;
font-weight:bold} .APPROVE{background:#1a9641} .REVIEW{background:#e6a800} .DECLINE{background:#d7191c}
.green{color:#1a9641} .yellow{color:#b38600} .red{color:#d7191c} .fail{color:#d7191c;font-weight:bold}
.pass{color:#1a9641} .flagged{background:#fdd} .personal{background:#d7191c;color:#fff;padding:.6em;font-weight:bold}
.plot{border-top:2px solid #999;margin-top:1.2em} .figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
img{max-width:100%} figure{margin:0} figcaption{font-size:.85em;color:#666} .muted{color:#666;font-size:.9em}
@media print{.plot{page-break-inside:avoid}}
"""

_TEXT = {
    "en": {"borrower": "Borrower", "village": "Village", "status": "Status", "limit": "Limit",
           "limit_if_confirmed": "Limit if the reviews are confirmed", "verified_mu": "Verified area (mu)",
           "need": "Need (cost of cultivation)", "capacity": "Repayment capacity", "cap": "Per-borrower cap",
           "binding": "Set by", "reasons": "Reasons", "no_reasons": "No check lowered the limit.",
           "explanation": "Decision in words", "plots": "Plots", "plot": "Plot", "light": "light",
           "areas": "The four areas (mu)", "drawn_mu": "drawn outline", "registered_mu": "land registry",
           "declared_mu": "declaration", "cropped_mu": "cropped (satellite, at the peak)",
           "verified_now": "verified now", "verified_mu_if_confirmed": "verified if confirmed", "checks": "Checks", "check": "check",
           "result": "result", "figures": "figures", "pass": "pass", "fail": "FAIL", "noted": "noted", "declared_crop": "declared crop",
           "best_crop": "best-fitting crop", "peak": "peak NDVI",
           "explanation_best": "best explanation of the season", "explanation_declared": "with the declared crop", "index": "All borrowers",
           "personal": "CONTAINS PERSONAL DATA — for the loan officer's own use; do not share or store with the run.",
           "name": "Name", "counts": "Borrowers by status", "codes": "Borrowers by reason code", "count": "count",
           "fairness": "Fairness", "group": "group", "grouping": "by", "n": "borrowers",
           "approval_rate": "approval rate", "median_limit": "median limit", "per_mu": "limit per verified mu",
           "air": "adverse-impact ratio", "size_band": "declared area", "map": "Plots by light",
           "distribution": "Distribution of limits", "pages": "Borrower pages", "run": "Run",
           "fairness_note": f"Groups whose approval rate is under {ADVERSE_IMPACT_THRESHOLD:g} × the best group's "
                            "(of the same grouping) are highlighted.",
           "title": "agricredit report", "back": "index", "rejected": "rejected outline",
           "no_series": "no season series for this plot"},
    "zh": {"borrower": "借款人", "village": "村", "status": "状态", "limit": "授信额度",
           "limit_if_confirmed": "复核确认后额度", "verified_mu": "核实面积（亩）", "need": "生产成本需求",
           "capacity": "还款能力", "cap": "单户上限", "binding": "约束项", "reasons": "原因",
           "no_reasons": "没有检查降低额度。", "explanation": "决定说明", "plots": "地块", "plot": "地块",
           "light": "信号灯", "areas": "四种面积（亩）", "drawn_mu": "勾绘面积", "registered_mu": "登记面积",
           "declared_mu": "申报面积", "cropped_mu": "卫星种植面积（峰值）", "verified_now": "当前核实面积", "verified_mu_if_confirmed": "确认后核实面积",
           "checks": "核验项", "check": "核验", "result": "结果", "figures": "数据", "pass": "通过", "fail": "未通过", "noted": "已记录",
           "declared_crop": "申报作物", "best_crop": "最匹配作物", "peak": "峰值NDVI", "explanation_best": "季节曲线的最佳解释",
           "explanation_declared": "按申报作物", "index": "全部借款人",
           "personal": "含个人信息——仅供信贷员本人使用，请勿传播或与结果一同保存。", "name": "姓名",
           "counts": "各状态借款人数", "codes": "各原因代码借款人数", "count": "人数", "fairness": "公平性",
           "group": "组", "grouping": "分组", "n": "借款人数", "approval_rate": "批准率", "median_limit": "额度中位数",
           "per_mu": "每核实亩额度", "air": "不利影响比", "size_band": "申报面积", "map": "地块信号灯分布",
           "distribution": "额度分布", "pages": "借款人页面", "run": "本次评估",
           "fairness_note": f"批准率低于同组最优组 {ADVERSE_IMPACT_THRESHOLD:g} 倍的组以底色标出。",
           "title": "agricredit 报告", "back": "索引", "rejected": "图形被拒", "no_series": "该地块无生长季序列"},
}
_STATUS_ZH = {"APPROVE": "批准", "REVIEW": "复核", "DECLINE": "拒绝"}


@dataclass
class Run:
    """An ``assess`` output folder, read back."""

    folder: Path
    manifest: dict[str, Any]
    borrowers: pd.DataFrame  # borrowers.csv's rows as written (text cells), by field name
    plots: gpd.GeoDataFrame  # plots.parquet, WGS84
    chips: pd.DataFrame  # chips.parquet (empty when the run has none)
    series: pd.DataFrame  # series.parquet (empty when the run has none)

    @functools.cached_property
    def chip_of(self) -> dict[str, dict[str, Any]]:
        """Plot ID → its row of ``chips.parquet``."""
        return {str(chip["plot_id"]): chip for chip in self.chips.to_dict("records")}


def load_run(folder: str | Path) -> Run:
    """Read an ``assess`` output folder (``manifest.json``, ``borrowers.parquet``, ``plots.parquet`` ...).

    Raises
    ------
    InputNotFoundError
        No ``manifest.json`` (not an output folder, or an unfinished one).
    """
    from agricredit.report.data import SERIES_COLUMNS

    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise InputNotFoundError("no manifest.json: not a finished assess output folder", path=folder)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"unreadable manifest ({error})", path=manifest_path) from error
    for name in ("borrowers.parquet", "plots.parquet"):
        if not (folder / name).is_file():
            raise InputNotFoundError(f"the output folder has no {name}", path=folder)
    borrowers = pd.read_parquet(folder / "borrowers.parquet").drop(columns="geometry", errors="ignore")
    plots = gpd.read_parquet(folder / "plots.parquet")
    chips = pd.read_parquet(folder / "chips.parquet") if (folder / "chips.parquet").is_file() else pd.DataFrame(
        columns=["plot_id"])
    series = pd.read_parquet(folder / "series.parquet") if (folder / "series.parquet").is_file() else pd.DataFrame(
        columns=list(SERIES_COLUMNS))
    return Run(folder, manifest, borrowers, plots, chips, series)


def page_name(borrower: str, *, personal: bool = False) -> str:
    """File name of a borrower's page (``PERSONAL_DATA_`` first when it shows the name)."""
    return f"{PERSONAL_PREFIX if personal else ''}{borrower}.html"


def _e(value: Any) -> str:
    return html.escape("" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value))


def _number(value: Any, field: str, *, decimals: int | None = None) -> str:
    """A figure: shown with thousands separators, its value as written in ``borrowers.csv`` in ``data-value``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f'<span data-field="{field}" data-value="">–</span>'
    shown = f"{value:,}" if isinstance(value, int) else f"{float(value):,.{decimals if decimals is not None else 4}f}"
    return f'<span data-field="{field}" data-value="{_e(value)}">{shown}</span>'


def _document(title: str, body: str, lang: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def _status(status: str, lang: str) -> str:
    shown = _STATUS_ZH.get(status, status) if lang == "zh" else status
    return f'<span class="badge {_e(status)}" data-field="status" data-value="{_e(status)}">{_e(shown)}</span>'


def _reason_text(code: str, lang: str) -> str:
    from agricredit.seeds import load_reason_codes

    entry = load_reason_codes().get(code)
    return (entry.zh if lang == "zh" else entry.en) if entry else code


def _figures(figures: Mapping[str, Any]) -> str:
    return "; ".join(f"{_e(k)} = {_e(v)}" for k, v in sorted(figures.items()))


def _checks_table(details: str | None, lang: str) -> str:
    """Every plot check of the catalogue: pass, FAIL, or noted (an info code), with the figures of those that fired."""
    from agricredit.seeds import load_reason_codes

    text = _TEXT[lang]
    failed = {c["code"]: c.get("figures", {}) for c in (json.loads(details).get("checks", []) if details else [])}
    rows = []
    catalogue = load_reason_codes()
    for code in [c for c in catalogue if c not in BORROWER_LEVEL_CODES | (VISIT_CODES - set(failed))]:
        fails = code in failed
        shown = (text["noted"] if catalogue[code].severity == "info" else text["fail"]) if fails else text["pass"]
        rows.append(f'<tr data-check="{_e(code)}" data-result="{"fail" if fails else "pass"}"><td><code>{_e(code)}'
                    f'</code><br><span class="muted">{_e(_reason_text(code, lang))}</span></td>'
                    f'<td class="{"fail" if fails else "pass"}">{shown}</td>'
                    f'<td>{_figures(failed[code]) if fails else ""}</td></tr>')
    return (f'<table class="checks"><tr><th>{text["check"]}</th><th>{text["result"]}</th><th>{text["figures"]}</th>'
            f"</tr>{''.join(rows)}</table>")


def _plot_section(run: Run, plot: Mapping[str, Any], geometry: Any, lang: str, min_valid_fraction: float) -> str:
    text = _TEXT[lang]
    plot_id = str(plot["plot_id"])
    light = plot.get("light") or ""
    head = (f'<section class="plot" data-plot="{_e(plot_id)}"><h3>{text["plot"]} {_e(plot_id)} — '
            f'<span class="{_e(light)}">{text["light"]}: {_e(light or text["rejected"])}</span> '
            f'<span class="muted">({_e(plot.get("geometry_status"))})</span></h3>')
    figures = []
    if geometry is not None and not geometry.is_empty:
        figures.append(charts.plot_map(run.chip_of.get(plot_id), geometry, plot_id, light, lang))
    own = run.series.loc[run.series["plot_id"] == plot_id]
    if len(own):
        figures.append(f'<img class="chart" alt="season of {_e(plot_id)}" '
                       f'src="{charts.season_chart(own, plot, lang, min_valid_fraction=min_valid_fraction)}">')
    else:
        figures.append(f'<p class="muted">{text["no_series"]}</p>')
    areas = "".join(f'<tr><td>{text[label]}</td><td class="num">{_number(plot.get(f), f"plot:{plot_id}:{f}")}</td></tr>'
                    for f, label in (("drawn_mu", "drawn_mu"), ("registered_mu", "registered_mu"),
                                     ("declared_mu", "declared_mu"), ("cropped_mu", "cropped_mu"),
                                     ("verified_mu", "verified_now"),
                                     ("verified_mu_if_confirmed", "verified_mu_if_confirmed")))
    crops = (f'<p>{text["declared_crop"]}: <b>{_e(plot.get("declared_crop"))}</b>; {text["best_crop"]}: '
             f'<b>{_e(plot.get("best_crop"))}</b> <span class="muted">({_e(plot.get("crop_ranking"))})</span>; '
             f'{text["peak"]}: {_e(plot.get("peak_ndvi"))} ({_e(str(plot.get("peak_date") or "")[:10])})</p>'
             f'<p class="muted">{text["explanation_best"]}: {_e(plot.get("best_explanation"))}; '
             f'{text["explanation_declared"]}: {_e(plot.get("declared_explanation"))}</p>')
    return (f'{head}<div class="figs">{"".join(figures)}</div>{crops}<div class="figs"><div><h4>{text["areas"]}</h4>'
            f'<table>{areas}</table></div><div><h4>{text["checks"]}</h4>{_checks_table(plot.get("details"), lang)}'
            f"</div></div></section>")


def borrower_page(run: Run, borrower: Mapping[str, Any], lang: str = "en", *, min_valid_fraction: float = 0.6,
                  name: str | None = None) -> str:
    """The HTML page of one borrower (a row of ``borrowers.parquet``).

    Parameters
    ----------
    name
        The borrower's name (``report --reveal``): the page then opens with a personal-data banner.
    """
    text = _TEXT[lang]
    ref = str(borrower["borrower"])
    plot_ids = [p for p in str(borrower.get("plots") or "").split(";") if p]
    own = run.plots.loc[(run.plots["borrower"] == ref) & run.plots["plot_id"].isin(plot_ids)].sort_values("plot_id")
    summary = "".join(
        f'<tr><th>{text[f]}</th><td class="num">{_number(borrower.get(f), f)}'
        f'{" " + _e(borrower.get("currency")) if f in ("limit", "limit_if_confirmed", "need", "capacity", "cap") else ""}'
        f"</td></tr>"
        for f in ("limit", "limit_if_confirmed", "verified_mu", "need", "capacity", "cap"))
    codes = [c for c in str(borrower.get("reason_codes") or "").split(";") if c]
    reasons = "".join(f'<li data-field="reason" data-value="{_e(c)}"><code>{_e(c)}</code>: {_e(_reason_text(c, lang))}'
                      f"</li>" for c in codes) or f"<li>{text['no_reasons']}</li>"
    banner = f'<p class="personal">{text["personal"]}</p>' if name is not None else ""
    who = f' — {text["name"]}: <span data-field="name">{_e(name)}</span>' if name is not None else ""
    body = (f'{banner}<p><a href="{PERSONAL_PREFIX if name is not None else ""}index.html">← {text["back"]}</a></p>'
            f'<h1>{text["borrower"]} <span data-field="borrower" data-value="{_e(ref)}">{_e(ref)}</span>{who}</h1>'
            f'<p>{text["village"]}: <span data-field="village" data-value="{_e(borrower.get("village"))}">'
            f'{_e(borrower.get("village"))}</span> · {text["status"]}: {_status(str(borrower.get("status")), lang)} · '
            f'{text["binding"]}: <span data-field="binding" data-value="{_e(borrower.get("binding"))}">'
            f'{_e(borrower.get("binding"))}</span></p>'
            f'<table class="summary">{summary}</table><h2>{text["reasons"]}</h2><ul>{reasons}</ul>'
            f'<h2>{text["explanation"]}</h2><p data-field="explanation">{_e(borrower.get("explanation"))}</p>'
            f'<h2>{text["plots"]} ({len(own)})</h2>'
            + "".join(_plot_section(run, row, geometry, lang, min_valid_fraction)
                      for row, geometry in zip(own.drop(columns="geometry").to_dict("records"), own.geometry.values)))
    return _document(f"{text['borrower']} {ref}", body, lang)


def _counts_table(counts: Mapping[str, int], head: str, lang: str, kind: str) -> str:
    text = _TEXT[lang]
    rows = "".join(f'<tr data-{kind}="{_e(k)}"><td>{_e(k)}</td><td class="num">{n}</td></tr>'
                   for k, n in counts.items())
    return f"<table><tr><th>{head}</th><th>{text['count']}</th></tr>{rows}</table>"


def index_page(run: Run, lang: str = "en", *, names: Mapping[str, str] | None = None) -> str:
    """The run's index: map of plots by light, limit distribution, counts, the fairness table, page links."""
    text = _TEXT[lang]
    borrowers = run.borrowers
    status_counts = {s: int(n) for s, n in sorted(borrowers["status"].value_counts().items())}
    code_counts: dict[str, int] = {}
    for codes in borrowers["reason_codes"].fillna(""):
        for code in filter(None, str(codes).split(";")):
            code_counts[code] = code_counts.get(code, 0) + 1
    fair_rows = []
    for row in fairness_table(_numeric(borrowers), run.plots.drop(columns="geometry")):
        per_mu = "–" if math.isnan(row.limit_per_verified_mu) else f"{row.limit_per_verified_mu:,.1f}"
        air = "–" if math.isnan(row.adverse_impact_ratio) else f"{row.adverse_impact_ratio:.3f}"
        fair_rows.append(
            f'<tr class="{"flagged" if row.flagged else ""}" data-grouping="{row.grouping}" data-group="{_e(row.group)}">'
            f'<td>{text["village"] if row.grouping == "village" else text["size_band"]}</td><td>{_e(row.group)}</td>'
            f'<td class="num" data-value="{row.borrowers}">{row.borrowers}</td>'
            f'<td class="num" data-value="{row.approval_rate:.4f}">{row.approval_rate:.1%}</td>'
            f'<td class="num" data-value="{row.median_limit:.2f}">{row.median_limit:,.0f}</td>'
            f'<td class="num" data-value="{row.limit_per_verified_mu:.4f}">{per_mu}</td>'
            f'<td class="num" data-value="{row.adverse_impact_ratio:.4f}">{air}</td></tr>')
    fairness = (f'<table class="fairness"><tr><th>{text["grouping"]}</th><th>{text["group"]}</th><th>{text["n"]}</th>'
                f'<th>{text["approval_rate"]}</th><th>{text["median_limit"]}</th><th>{text["per_mu"]}</th>'
                f'<th>{text["air"]}</th></tr>{"".join(fair_rows)}</table><p class="muted">{text["fairness_note"]}</p>')
    personal = names is not None
    links = "".join(
        f'<tr><td><a href="{page_name(b, personal=personal)}">{_e(b)}</a></td>'
        f'{"<td>" + _e(names.get(b, "")) + "</td>" if names is not None else ""}<td>{_e(v)}</td>'
        f'<td>{_status(s, lang)}</td><td class="num">{_number(limit, "limit")}</td></tr>'
        for b, v, s, limit in zip(borrowers["borrower"], borrowers["village"], borrowers["status"], borrowers["limit"]))
    manifest = run.manifest
    banner = f'<p class="personal">{text["personal"]}</p>' if personal else ""
    body = (f'{banner}<h1>{text["title"]}</h1><p class="muted">{text["run"]}: agricredit {_e(manifest.get("tool_version"))}, '
            f'policy {_e(manifest.get("policy", {}).get("name"))} {_e(manifest.get("policy", {}).get("version"))}, '
            f'{len(borrowers)} {text["n"]}, {len(run.plots)} {text["plots"]}</p>'
            f'<h2>{text["map"]}</h2><img class="map" alt="map of all plots" src="{charts.overview_map(run.plots, lang)}">'
            f'<h2>{text["distribution"]}</h2><img class="chart" alt="limits" '
            f'src="{charts.limit_histogram(_numeric(borrowers)["limit"], lang)}">'
            f'<div class="figs"><div><h2>{text["counts"]}</h2>{_counts_table(status_counts, text["status"], lang, "status")}'
            f'</div><div><h2>{text["codes"]}</h2>{_counts_table(dict(sorted(code_counts.items())), "code", lang, "code")}'
            f'</div></div><h2>{text["fairness"]}</h2>{fairness}<h2>{text["pages"]}</h2><table class="pages">{links}</table>')
    return _document(text["title"], body, lang)


def _numeric(borrowers: pd.DataFrame) -> pd.DataFrame:
    return borrowers.assign(limit=borrowers["limit"].astype(float), verified_mu=borrowers["verified_mu"].astype(float))


def _wanted(run: Run, borrowers: Sequence[str] | None) -> list[str]:
    """The pseudonyms whose pages to write (every borrower by default); an unknown one is an error."""
    known = set(run.borrowers["borrower"])
    wanted = list(run.borrowers["borrower"]) if not borrowers else list(borrowers)
    unknown = [b for b in wanted if b not in known]
    if unknown:
        raise InputError(f"borrower {unknown[0]!r} is not in this run", path=run.folder / "borrowers.parquet")
    return wanted


def report_files(run: Run, borrowers: Sequence[str] | None = None, *, personal: bool = False,
                 pdf: bool = False) -> list[str]:
    """The file names :func:`write_report` (and ``--pdf``) writes: the index, then the borrower pages."""
    pages = [page_name(b, personal=personal) for b in _wanted(run, borrowers)]
    return [f"{PERSONAL_PREFIX if personal else ''}index.html", *pages,
            *([page[:-len(".html")] + ".pdf" for page in pages] if pdf else [])]


def write_report(run: Run, folder: str | Path, *, lang: str = "en", borrowers: Sequence[str] | None = None,
                 min_valid_fraction: float = 0.6, names: Mapping[str, str] | None = None) -> list[Path]:
    """Write the index and the borrower pages into ``folder``; return the paths written.

    Parameters
    ----------
    borrowers
        Pseudonyms of the pages to write (default: every borrower); unknown ones are an error.
    names
        Pseudonym → name (``--reveal``): pages and index carry the personal-data banner and file-name prefix.
    """
    from agricredit.outputs import atomic_path

    wanted = _wanted(run, borrowers)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    personal = names is not None
    rows = {r["borrower"]: r for r in run.borrowers.to_dict("records")}
    written = []
    for ref in wanted:
        path = folder / page_name(ref, personal=personal)
        with atomic_path(path) as tmp:
            tmp.write_text(borrower_page(run, rows[ref], lang, min_valid_fraction=min_valid_fraction,
                                         name=names.get(ref, "") if personal else None), encoding="utf-8")
        written.append(path)
    index = folder / f"{PERSONAL_PREFIX if personal else ''}index.html"
    with atomic_path(index) as tmp:
        tmp.write_text(index_page(run, lang, names=names), encoding="utf-8")
    return [index, *written]
