"""The output folder of an assessment (design §3): the plot and borrower rows, and the files written from them.

:func:`agricredit.assess.run_assessment` builds the rows (:func:`_plot_rows`, one per
input plot; :func:`_borrower_rows`, one per borrower) with the fields of
:mod:`agricredit.schema`; :func:`write_outputs` writes them, the audit records and
the manifest (last) through a staging folder scanned for personal data.
:mod:`agricredit.assess` re-exports the public names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from agricredit import __version__
from agricredit.audit import AuditKey, write_audit
from agricredit.credit import Decision, explain
from agricredit.jsondata import canonical_json
from agricredit.outputs import (
    CategorizedStyle,
    atomic_path,
    gc_paused,
    in_child_process,
    sha256_file,
    staged_outputs,
    write_plot_table,
    write_qml,
    write_table,
    write_xlsx,
)
from agricredit.plots import to_wgs84
from agricredit.policy import Policy
from agricredit.privacy import Finding, PersonalDataGuard, check_allowed_fields
from agricredit.report.data import write_report_data
from agricredit.schema import BORROWER_FIELDS, PLOT_FIELDS, conformed_columns, conformed_table, headers
from agricredit.verify import PlotVerdict

if TYPE_CHECKING:
    from agricredit.assess import Assessment

__all__ = ["OUTPUT_FILES", "COORDINATE_DECIMALS", "PLOT_STYLE", "BORROWER_STYLE", "write_outputs"]

#: The output folder's files (manifest last): the plot and borrower layers as GeoJSON and GeoParquet with
#: their QGIS styles, the borrower table for spreadsheets, the audit records. Fields: :mod:`agricredit.schema`.
OUTPUT_FILES = ("plots.geojson", "plots.parquet", "plots.qml", "borrowers.csv", "borrowers.xlsx",
                "borrowers.geojson", "borrowers.parquet", "borrowers.qml", "chips.parquet", "series.parquet",
                "audit.jsonl", "manifest.json")

#: Plots styled by light, borrowers by status (QGIS applies ``NAME.qml`` to ``NAME.geojson`` / ``.parquet``).
PLOT_STYLE = CategorizedStyle("light", (("green", "green: every source agrees", "26,150,65"),
                                        ("yellow", "yellow: a check lowered what the plot adds", "255,191,0"),
                                        ("red", "red: under review or unverifiable", "215,25,28"),
                                        ("", "rejected outline or record", "150,150,150")))
BORROWER_STYLE = CategorizedStyle("status", (("APPROVE", "APPROVE", "26,150,65"),
                                             ("REVIEW", "REVIEW: a person must look", "255,191,0"),
                                             ("DECLINE", "DECLINE: nothing verifiable to lend on", "215,25,28")))

#: Coordinates in GeoJSON outputs: 6 decimals of a degree (~0.1 m), as RFC 7946 §11.2 suggests.
COORDINATE_DECIMALS = 6


#: Types of figures :func:`_round` keeps as they are without a look at their class's bases.
_KEPT_AS_THEY_ARE = frozenset({str, int, bool, type(None), list})


def _round(value: Any, digits: int = 4) -> Any:
    """A check's figure for the ``details`` field: floats to ``digits`` decimals, NaN → ``None``."""
    kind = type(value)
    if kind is float:  # most figures: a float, or a plain value kept as it is
        return round(value, digits) if math.isfinite(value) else None
    if kind in _KEPT_AS_THEY_ARE:
        return value
    if isinstance(value, (float, np.floating)):
        return round(float(value), digits) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


#: Plot fields a plot's verdict gives (the season's values of the same name stand for a plot without verdict).
_VERDICT_FIELDS = ("drawn_mu", "registered_mu", "declared_mu", "cropped_mu", "verified_mu", "verified_mu_if_confirmed",
                   "declared_crop", "light", "reason_codes", "details")
#: The place of the light among :data:`_VERDICT_FIELDS`.
VERDICT_LIGHT = _VERDICT_FIELDS.index("light")


def verdict_fields_of(verdict: PlotVerdict) -> tuple[Any, ...]:
    """The values of :data:`_VERDICT_FIELDS` of one verdict (``details`` as its JSON text)."""
    facts, contribution = verdict.facts, verdict.contribution
    return (facts.drawn_mu, facts.registered_mu, facts.declared_mu, facts.cropped_mu_at_peak, contribution.mu_now,
            contribution.mu_if_confirmed, facts.declared_crop, verdict.light, list(verdict.codes),
            canonical_json({"checks": [{"code": c.code, "figures": _rounded(c.figures)} for c in verdict.checks]}))


def _rounded(figures: Mapping[str, Any]) -> Mapping[str, Any]:
    """A check's figures with each :func:`_round`-ed (``figures`` itself when none changes: only encoded)."""
    if _KEPT_AS_THEY_ARE.issuperset(map(type, figures.values())):  # no float: nothing to round
        return figures
    return {name: _round(value) for name, value in figures.items()}


def _plot_rows(checked: gpd.GeoDataFrame, verdicts: Sequence[PlotVerdict], season: Any,
               alias: Mapping[str, str], verdict_fields: Sequence[tuple[str, tuple[Any, ...]]] | None = None,
               geometries: np.ndarray | None = None, order: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """One output row per input plot with the fields of :data:`agricredit.schema.PLOT_FIELDS`, WGS84, by plot ID.

    A field comes from the plot's verdict (:data:`_VERDICT_FIELDS`), else from its season row, else is empty.
    ``verdict_fields``: the plot ID and :func:`verdict_fields_of` of each of ``verdicts`` (then they are not read),
    and ``geometries`` and ``order``: the :func:`output_geometries` of ``checked`` and the rows' order, if already
    computed (:func:`plot_outlines`, on a thread).
    """
    plot_ids = [None if plot_id is None else str(plot_id) for plot_id in checked["plot_id"].tolist()]
    columns: dict[str, list[Any]] = {"plot_id": plot_ids,
                                     "borrower": [alias[b] for b in checked["borrower_id"].tolist()],
                                     "geometry_status": [str(status) for status in checked["geometry_status"].tolist()]}
    features = season.plots
    # Each plot's season row (a repeated ID takes its last row; none without a season table): a dict of the IDs
    # finds them several times faster than an index of pandas' text column.
    row_of = dict(zip(features["plot_id"].to_numpy(dtype=object).tolist(), range(len(features)))) \
        if "plot_id" in features else {}
    if verdict_fields is None:
        verdict_fields = [(verdict.plot_id, verdict_fields_of(verdict)) for verdict in verdicts]
    by_id = dict(verdict_fields)  # a repeated ID: its last
    found = [(row, by_id[plot_id]) for row, plot_id in enumerate(plot_ids) if plot_id in by_id]
    # (the found rows ascend: when every row has a verdict, each verdict column is the verdicts' values as they are)
    every_row = bool(found) and len(found) == len(plot_ids)
    where = [row_of.get(plot_id, -1) for plot_id in plot_ids]
    for name in sorted(set(features.columns).intersection(f.name for f in PLOT_FIELDS) - set(columns)):
        if not (every_row and name in _VERDICT_FIELDS):  # (else replaced by the verdicts' values below)
            values = features[name].tolist()
            columns[name] = [values[i] if i >= 0 else None for i in where]
    for name, values in zip(_VERDICT_FIELDS, zip(*(fields for _, fields in found))):
        if every_row:
            columns[name] = list(values)
            continue
        column = columns.setdefault(name, [None] * len(plot_ids))
        for (row, _), value in zip(found, values):
            column[row] = value
    geometries = output_geometries(checked) if geometries is None else geometries
    frame = gpd.GeoDataFrame(conformed_columns(columns, PLOT_FIELDS, len(plot_ids)), geometry=geometries,
                             crs="EPSG:4326")
    return frame.take(_plot_order(plot_ids) if order is None else order).reset_index(drop=True)


def output_geometries(checked: gpd.GeoDataFrame) -> np.ndarray:
    """The plots' outlines as the outputs give them: WGS84, coordinates rounded to :data:`COORDINATE_DECIMALS`."""
    return shapely.transform(to_wgs84(checked).geometry.to_numpy(), lambda xy: np.round(xy, COORDINATE_DECIMALS))


_PLOT_ID_FIELD = next(f for f in PLOT_FIELDS if f.name == "plot_id")


def _plot_order(plot_ids: Sequence[str | None]) -> np.ndarray:
    """The order of the plot rows: by ID, the rows without one last (the sort of the output table's ``plot_id``)."""
    column = conformed_columns({"plot_id": plot_ids}, [_PLOT_ID_FIELD], len(plot_ids))
    return column.sort_values("plot_id", na_position="last").index.to_numpy()


def plot_outlines(checked: gpd.GeoDataFrame, alias: Mapping[str | None, str | None]
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The plots' :func:`output_geometries`, the order of their rows (:func:`_plot_order`) and each borrower's
    outline (:func:`borrower_outlines`) of the plot rows :func:`_plot_rows` makes of ``checked`` (``alias``:
    borrower ID → pseudonym): they need neither the season nor the verdicts, so a run makes them on a thread while
    those are computed."""
    geometries = output_geometries(checked)
    plot_ids = [None if plot_id is None else str(plot_id) for plot_id in checked["plot_id"].tolist()]
    order = _plot_order(plot_ids)
    statuses = np.array([str(status) for status in checked["geometry_status"].tolist()], dtype=object)
    borrowers = np.array([alias[b] for b in checked["borrower_id"].tolist()], dtype=object)
    return geometries, order, borrower_outlines(geometries[order], statuses[order], borrowers[order])


def _borrower_rows(decisions: Sequence[Decision], verdicts_of: Mapping[str, list[PlotVerdict]],
                   villages: Mapping[str, str], policy: Policy, lang: str) -> pd.DataFrame:
    """One output row per borrower with the fields of :data:`agricredit.schema.BORROWER_FIELDS`."""
    return _borrower_table(_borrower_records(decisions, verdicts_of, villages, policy, lang))


def _borrower_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The borrowers' rows (:func:`_borrower_records`) as the output table, sorted by borrower."""
    return conformed_table(records, BORROWER_FIELDS).sort_values("borrower", ignore_index=True)


def _borrower_records(decisions: Sequence[Decision], verdicts_of: Mapping[str, list[PlotVerdict]],
                      villages: Mapping[str, str], policy: Policy, lang: str) -> list[dict[str, Any]]:
    """Each borrower's output row as a mapping of :data:`agricredit.schema.BORROWER_FIELDS`' names to values."""
    records = []
    for decision in decisions:
        now, own = decision.now, verdicts_of[decision.borrower_id]
        plot_ids, mu_now = [v.facts.plot_id for v in own], [v.contribution.mu_now for v in own]
        records.append({
            "borrower": decision.borrower_id,
            "village": villages.get(decision.borrower_id, ""),
            "status": decision.status,
            "limit": decision.limit,
            "limit_if_confirmed": decision.limit_if_confirmed,
            "currency": decision.currency,
            "reason_codes": decision.reason_codes,
            "verified_mu": sum(mu_now),
            "need": now.need,
            "capacity": now.capacity,
            "cap": now.cap,
            "binding": now.binding,
            "plots": plot_ids,
            "explanation": explain(decision, policy, lang),
            "details": {"plots": [{"plot_id": plot_id, "verified_mu": _round(mu), "light": v.light,
                                   "reason_codes": [check.code for check in v.checks]}
                                  for plot_id, mu, v in zip(plot_ids, mu_now, own)]},
        })
    return records


def _borrower_geometries(assessment: Assessment) -> list[Any]:
    """Each borrower's outline (:func:`borrower_outlines`) in the order of the borrower table (``None``: no usable
    plot), from ``assessment.outlines`` when the run made them."""
    outlines = getattr(assessment, "outlines", None)
    if outlines is None:
        plots = assessment.plots
        outlines = borrower_outlines(plots.geometry.to_numpy(), plots["geometry_status"].to_numpy(),
                                     plots["borrower"].to_numpy())
    return [outlines.get(borrower) for borrower in assessment.borrowers["borrower"].tolist()]


def borrower_outlines(geometries: np.ndarray, statuses: np.ndarray, borrowers: np.ndarray) -> dict[str, Any]:
    """Each borrower's usable plots dissolved into one valid (Multi)Polygon on the output coordinate grid.

    Per plot, in the plot rows' order: its output geometry, ``geometry_status`` and borrower (``None``: none).
    Returns borrower → outline, for the borrowers with a usable plot (status ``OK`` or ``GEOMETRY_REPAIRED``).

    Each plot is first snapped to the grid alone. A borrower whose plots' bounding boxes all lie apart has them
    side by side, a MultiPolygon of the snapped plots (in the plots' order): a union would give the same area at
    many times the cost, and most borrowers' plots lie apart. The plots of the other borrowers are dissolved by
    one union per borrower, all in one call: the plots of each borrower are a row of a table padded with missing
    values, which the union leaves out.
    """
    usable = np.isin(statuses, ("OK", "GEOMETRY_REPAIRED")) & np.array([b is not None for b in borrowers], bool)
    names, owners = np.unique(borrowers[usable].astype(str), return_inverse=True)
    owners = owners.astype(np.int64)
    geometries = geometries[usable]
    grid = 10.0 ** -COORDINATE_DECIMALS
    alone = shapely.union_all(geometries.reshape(-1, 1), grid_size=grid, axis=1) if len(geometries) else geometries
    first, second = shapely.STRtree(geometries).query(geometries)  # pairs of plots whose boxes meet
    meeting = np.unique(owners[first[(first < second) & (owners[first] == owners[second])]])
    counts = np.bincount(owners, minlength=len(names))
    outlines = np.full(len(names), None, dtype=object)
    single = counts[owners] == 1
    outlines[owners[single]] = alone[single]
    parts, part_of = shapely.get_parts(alone, return_index=True)
    part_owner = owners[part_of]
    side = (counts[part_owner] > 1) & ~np.isin(part_owner, meeting) & ~shapely.is_empty(parts)
    order = np.argsort(part_owner[side], kind="stable")  # by borrower, each borrower's plots in their order
    shapely.multipolygons(parts[side][order], indices=part_owner[side][order], out=outlines)
    if len(meeting):
        by_owner = np.argsort(owners, kind="stable")
        starts = np.searchsorted(owners[by_owner], meeting)
        table = np.full((len(meeting), counts[meeting].max()), None, dtype=object)
        for k, (start, count) in enumerate(zip(starts.tolist(), counts[meeting].tolist())):
            table[k, :count] = geometries[by_owner[start:start + count]]
        outlines[meeting] = shapely.union_all(table, grid_size=grid, axis=1)
    invalid = ~shapely.is_valid(outlines) & ~shapely.is_missing(outlines)
    outlines[invalid] = shapely.make_valid(outlines[invalid])
    return dict(zip(names.tolist(), outlines.tolist()))


#: What a writer of :func:`write_outputs` tells of the files it wrote: each one's sha256 (for the manifest) and, of
#: those it scanned for personal data, the first finding (``None``: none), by file name.
Written = tuple[dict[str, str], dict[str, Finding | None]]


def _written(stage: Path, guard: PersonalDataGuard, names: Sequence[str], scanned: Sequence[str]) -> Written:
    """The :data:`Written` of the files ``names`` in ``stage``, of which ``scanned`` are scanned (the writer's
    process hashes and scans its own files, rather than the parent once every writer is done)."""
    return ({name: sha256_file(stage / name) for name in names},
            {name: guard.first_finding(stage / name) for name in scanned})


def _write_audit(assessment: Assessment, stage: Path, audit_key: AuditKey, guard: PersonalDataGuard
                 ) -> tuple[dict[str, Any], Written]:
    """Write ``audit.jsonl`` into ``stage``, hash it and scan it for personal data.

    The records' names are checked against the schema here, in the process that reads the records (those of the
    reduce step's child processes are unpickled only when read; :class:`agricredit.outputs.LoadedOnRead`).
    Returns the audit's manifest entry (:func:`agricredit.audit.write_audit`) and the file's :data:`Written`.
    """
    check_allowed_fields("audit.jsonl", {name for record in assessment.audit for name in record})
    entry = write_audit(assessment.audit, stage / "audit.jsonl", audit_key)
    return entry, _written(stage, guard, ("audit.jsonl",), ("audit.jsonl",))


def _write_plot_geojson_and_borrower_xlsx(assessment: Assessment, stage: Path, guard: PersonalDataGuard) -> Written:
    """Write ``plots.geojson`` and ``borrowers.xlsx`` into ``stage`` and hash them; scan the GeoJSON for personal
    data (the xlsx holds the CSV's rows, scanned there). Returns the files' :data:`Written`."""
    write_plot_table(assessment.plots, stage / "plots.geojson", decimals=COORDINATE_DECIMALS)
    write_xlsx(assessment.borrowers, stage / "borrowers.xlsx", header=headers(BORROWER_FIELDS, assessment.lang),
               sheet="借款人" if assessment.lang == "zh" else "borrowers")
    return _written(stage, guard, ("plots.geojson", "borrowers.xlsx"), ("plots.geojson",))


def write_outputs(assessment: Assessment, folder: str | Path, audit_key: AuditKey, *,
                  csv_bom: bool = True, geojsonseq_min_bytes: int | None = None) -> dict[str, Any]:
    """Write the output folder (design §3, schema in :mod:`agricredit.schema`); ``manifest.json`` last.

    Every output is built from allow-listed fields (the schema;
    :func:`agricredit.privacy.check_allowed_fields`), written into a staging
    folder, scanned for the borrowers' IDs, phones and names
    (:class:`agricredit.privacy.PersonalDataGuard`, whole values and tokens)
    and only then published into ``folder``, manifest last
    (:func:`agricredit.outputs.staged_outputs`). On a finding
    :class:`~agricredit.errors.PrivacyError` is raised and nothing is
    published; an interrupted or refused run leaves no output behind; the
    outputs of an earlier run that this run does not write again are removed.
    ``audit.jsonl`` is sealed with ``audit_key``
    (:func:`agricredit.audit.write_audit`); the manifest keeps its count,
    chain head and hash under ``"audit"``. The largest file, ``audit.jsonl``,
    is written and scanned by a forked child process, ``plots.geojson`` and the
    borrower table's xlsx by another, while this one writes the others
    (:func:`agricredit.outputs.in_child_process`): the same bytes, on two cores.
    Call :func:`agricredit.outputs.check_output_folder` first: this function
    replaces earlier outputs.

    Parameters
    ----------
    assessment
        The result of :func:`run_assessment`.
    folder
        The output folder (created if missing).
    audit_key
        The key that seals the audit records (``AGRICREDIT_AUDIT_KEY``).
    csv_bom
        Start ``borrowers.csv`` with a UTF-8 byte-order mark, so that Excel
        on Chinese Windows reads it as UTF-8 rather than GBK.
    geojsonseq_min_bytes
        A GeoJSON layer (``plots``, ``borrowers``) at least this large is
        written as an RFC 8142 text sequence ``NAME.geojsonl`` instead of
        ``NAME.geojson`` (``None``: never).

    Returns
    -------
    dict
        The manifest.
    """
    lang = assessment.lang
    guard = assessment.pii_guard
    check_allowed_fields("plots", assessment.plots.columns.drop("geometry"))
    check_allowed_fields("borrowers", assessment.borrowers.columns)
    scanned: dict[str, Finding | None] = {}  # file name -> its first personal-data finding, of the files scanned
    # A child process writes and scans the audit (JSON encoding: CPU-bound, in Python), another the plots' GeoJSON
    # and the borrower table's xlsx, while this one writes the others; the borrowers' outlines, unless the run made
    # them, are dissolved on a thread (GEOS releases the GIL) meanwhile. The three take about as much CPU each at
    # county scale (measured at 100,000 plots: 4.8, 4.8 and 4.5 s; 7.9 s for the whole, 8.2 with the borrower
    # table's CSV written by the audit's child).
    with gc_paused(), staged_outputs(folder, check=lambda stage: guard.check_folder(stage, scanned)) as stage, \
            in_child_process(lambda: _write_audit(assessment, stage, audit_key, guard)) as child, \
            in_child_process(lambda: _write_plot_geojson_and_borrower_xlsx(assessment, stage, guard)) as tables, \
            ThreadPoolExecutor(max_workers=1) as background:
        dissolved = background.submit(_borrower_geometries, assessment)
        plots = assessment.plots
        plots.to_parquet(stage / "plots.parquet", index=False)
        write_qml(stage / "plots.qml", PLOT_STYLE)
        report_data = write_report_data(assessment.chips, assessment.series, stage)

        borrowers = gpd.GeoDataFrame(assessment.borrowers, geometry=dissolved.result(), crs="EPSG:4326")
        write_plot_table(borrowers, stage / "borrowers.geojson", decimals=COORDINATE_DECIMALS)
        borrowers.to_parquet(stage / "borrowers.parquet", index=False)
        write_qml(stage / "borrowers.qml", BORROWER_STYLE)
        write_table(assessment.borrowers, stage / "borrowers.csv", bom=csv_bom, header=headers(BORROWER_FIELDS, lang))
        # (while the children still write: this process's own files hashed, and its GeoJSON and CSV scanned)
        own = ["plots.parquet", "plots.qml", *(path.name for path in report_data), "borrowers.geojson",
               "borrowers.parquet", "borrowers.qml", "borrowers.csv"]
        digests, found = _written(stage, guard, own, ("borrowers.geojson", "borrowers.csv"))
        scanned.update(found)
        audit_entry, audit_written = child()
        for writer_digests, writer_found in (audit_written, tables()):
            digests.update(writer_digests)
            scanned.update(writer_found)
        for layer in ("plots", "borrowers"):
            collection = stage / f"{layer}.geojson"
            if geojsonseq_min_bytes is not None and collection.stat().st_size >= geojsonseq_min_bytes:
                write_plot_table(plots if layer == "plots" else borrowers, stage / f"{layer}.geojsonl",
                                 decimals=COORDINATE_DECIMALS)
                collection.unlink()
        written = sorted(stage.iterdir())  # a new staging folder: the manifest is not written yet
        manifest = {
            "tool": "agricredit",
            "tool_version": __version__,
            "policy": {"name": assessment.policy.meta.name, "version": assessment.policy.meta.version,
                       "sha256": assessment.policy.sha256},
            "pseudonym_key_fingerprint": assessment.key_fingerprint,
            "language": lang,
            "inputs": assessment.inputs,
            "outputs": {path.name: digests.get(path.name) or sha256_file(path) for path in written},
            "counts": {
                "plots": int(len(assessment.plots)),
                "borrowers": int(len(assessment.borrowers)),
                "status": {s: int(n) for s, n in sorted(assessment.borrowers["status"].value_counts().items())},
                "rejected_or_unverifiable_plots": {code: ids for code, ids in sorted(assessment.rejected.items())},
            },
            "audit": audit_entry,
        }
        check_allowed_fields("manifest.json", manifest)
        with atomic_path(stage / "manifest.json") as tmp:
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest
