"""Each plot's facts for verification (:class:`agricredit.verify.PlotFacts`), from the run's claims and season.

Most of a plot's facts come from the plot file and the tables alone (drawn and registered areas, declaration,
overlaps, pseudonyms): :func:`claimed_facts` gathers them, overlaps completed as
:func:`agricredit.verify.complete_overlaps` does, so a run computes them on a thread while the zonal stage runs
(the client waits on its workers then). :func:`plot_facts` adds what the satellite stages found: the season's
figures and findings, the unread tiles and failed plots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from agricredit.frozen import frozen
from agricredit.plots import DUPLICATE_ID, MISSING_ID
from agricredit.privacy import PseudonymKey, pseudonym
from agricredit.verify import Check, Overlap, PlotFacts, complete_overlaps

__all__ = ["claimed_facts", "plot_facts", "source_coverage"]

#: Plot geometry statuses of :mod:`agricredit.plots` → the statuses :mod:`agricredit.verify` knows (others:
#: "rejected").
#: An absurd outline is passed on as valid with its drawn area: :func:`agricredit.verify.check_plot` names it.
GEOMETRY_STATUS = {"OK": "valid", "GEOMETRY_REPAIRED": "repaired", "GEOMETRY_INVALID": "invalid",
                   "GEOMETRY_NOT_FINITE": "invalid", "DUPLICATE_ID": "duplicate", "AREA_ABSURD": "valid"}

#: Plot statuses set by :mod:`agricredit.assess` (beyond :mod:`agricredit.plots`'): records rejected and listed
#: before any check, the rest go on: a plot nobody declared, a feature without ``borrower_id``, a borrower not in
#: the table.
NO_DECLARATION = "NO_DECLARATION"
MISSING_BORROWER = "MISSING_BORROWER"
UNKNOWN_BORROWER = "UNKNOWN_BORROWER"
UNCHECKED = (DUPLICATE_ID, MISSING_ID, NO_DECLARATION, MISSING_BORROWER, UNKNOWN_BORROWER)

#: The facts :func:`plot_facts` adds to the claimed ones.
_FOUND = ("pixel_count", "cropped_mu_at_peak", "peak_ndvi", "satellite_codes", "vigor_factor", "best_crop",
          "unread_tiles", "processing_failed")
#: The season's figures of a plot without a season row.
_UNSEEN = (math.nan, math.nan, math.nan, math.nan, None)


def claimed_facts(checked: pd.DataFrame, claims: Any, registry: pd.DataFrame, alias: Mapping[str, str],
                  key: PseudonymKey) -> list[dict[str, Any]]:
    """What the plot file and the tables say of each plot: the :class:`PlotFacts` fields but those the satellite
    stages find, as :func:`agricredit.verify.complete_overlaps` returns the facts (sorted, overlaps completed).

    Parameters
    ----------
    checked
        The plot file's features with their ``geometry_status`` and ``geometry_reason``.
    claims
        The run's measured claims (``agricredit.assess._Claims``: drawn areas, overlaps, repeated areas,
        declarations, other declarants).
    registry
        The land registry (``plot_id``, ``registered_mu``, ``holder_id``).
    alias
        Borrower ID → pseudonym, for every borrower of ``checked``.
    key
        The pseudonym key (holders and other declarants not in ``alias``).

    Returns
    -------
    list of dict
        Per fact, its field values by name (no plot set aside before any check; a duplicated ID: one held fact
        per borrower who drew and declared it, nothing measured).
    """
    registered = _by_plot(registry, ("registered_mu", "holder_id"))
    # The columns as lists: iterating a pandas text column (Arrow) value by value costs more than the rest here.
    plot_ids, borrowers, statuses, reasons = (checked[name].to_numpy(dtype=object).tolist() for name in
                                              ("plot_id", "borrower_id", "geometry_status", "geometry_reason"))
    owner = dict(zip(plot_ids, borrowers))
    # Each overlap carries the other plot's drawn area and the overlaps come sorted by the other plot, as
    # complete_overlaps would make them: it then has nothing to replace.
    drawn_of = {plot_id: (finite_or_nan(claims.drawn_mu.get(plot_id))
                          if GEOMETRY_STATUS.get(status, "rejected") in ("valid", "repaired") else math.nan)
                for plot_id, status in zip(plot_ids, statuses) if status not in UNCHECKED}
    facts, held = [], set()
    for plot_id, borrower, geometry_status, geometry_reason in zip(plot_ids, borrowers, statuses, reasons):
        if geometry_status == DUPLICATE_ID and borrower is not None and (plot_id, borrower) in claims.declaration:
            if (plot_id, borrower) in held:
                continue
            held.add((plot_id, borrower))
        elif geometry_status in UNCHECKED:
            continue
        status = GEOMETRY_STATUS.get(geometry_status, "rejected")
        measured = status in ("valid", "repaired")
        record = registered.get(plot_id)
        registered_mu, holder = record if record else (math.nan, None)
        own = claims.declaration[plot_id, borrower]
        found = claims.overlaps.get(plot_id)
        overlaps = tuple(sorted((
            Overlap(other_plot_id=str(o["plot_id"]), other_borrower_id=alias[owner[o["plot_id"]]],
                    shared_m2=float(o["shared_m2"]), other_drawn_mu=drawn_of.get(o["plot_id"], math.nan))
            for o in found), key=lambda overlap: overlap.other_plot_id)) if found else ()
        facts.append(PlotFacts(
            plot_id=str(plot_id),
            borrower_id=alias[borrower],
            geometry_status=status,
            geometry_reason=str(geometry_reason or ""),
            drawn_mu=finite_or_nan(claims.drawn_mu.get(plot_id)) if measured else math.nan,
            registered_mu=float(registered_mu),
            # Holders are pseudonymised like borrowers so that the ownership check compares like with like.
            registry_holder_id=(alias.get(holder) or pseudonym(key, "borrower", holder)) if holder else None,
            declared_mu=float(own["declared_mu"]),
            declared_crop=str(own["declared_crop"]),
            overlaps=overlaps,
            repeated_mu=float(claims.repeated_mu.get(plot_id, 0.0)),
            other_declarants=tuple(pseudonym(key, "borrower", b)
                                   for b in claims.other_declarants.get((plot_id, borrower), ())),
        ))
    return [{name: value for name, value in vars(fact).items() if name not in _FOUND}
            for fact in complete_overlaps(facts)]


def plot_facts(claimed: Sequence[Mapping[str, Any]], season: Any, unread_tiles: Mapping[str, list[str]],
               failed_plots: Mapping[str, str]) -> list[PlotFacts]:
    """The facts of the :func:`claimed_facts` ``claimed`` with what the satellite stages found.

    Parameters
    ----------
    claimed
        :func:`claimed_facts`.
    season
        The season (:class:`agricredit.season.SeasonResult`: ``plots`` rows and ``flags`` by plot ID).
    unread_tiles
        Plot ID → the tiles over it whose pixels could not be read.
    failed_plots
        Plot ID → why its satellite evidence could not be computed.

    Returns
    -------
    list of PlotFacts
        In the order of ``claimed``.
    """
    plots = season.plots
    features = dict(zip(plots["plot_id"].to_numpy(dtype=object).tolist(), zip(
        *(_finite_column(plots, name) for name in ("pixel_count", "cropped_area_mu_at_peak", "peak_ndvi",
                                                   "vigor_factor")),
        _column(plots, "best_crop")))) if len(plots) else {}  # a repeated ID: its last row
    flags = season.flags
    facts = []
    for fields in claimed:
        plot_id = fields["plot_id"]
        pixel_count, cropped_at_peak, peak_ndvi, vigor_factor, best_crop = features.get(plot_id, _UNSEEN)
        facts.append(frozen(PlotFacts, {
            **fields,
            "pixel_count": pixel_count,  # the season's figure: one rule for TOO_FEW_PIXELS and vigor
            "cropped_mu_at_peak": cropped_at_peak,
            "peak_ndvi": peak_ndvi,
            "satellite_codes": tuple(Check.make(flag.code, **flag.figures) for flag in flags.get(plot_id, ())),
            "vigor_factor": vigor_factor,
            "best_crop": best_crop if isinstance(best_crop, str) else None,
            "unread_tiles": tuple(unread_tiles.get(plot_id, ())),
            "processing_failed": failed_plots.get(plot_id, ""),
        }))
    return facts


def source_coverage(facts: Sequence[PlotFacts]) -> dict[str, tuple[int, int]]:
    """How well each source covers the plots with a sound outline (valid or repaired).

    Parameters
    ----------
    facts
        The plots' facts (:func:`plot_facts`).

    Returns
    -------
    dict
        ``registry``, ``declarations`` and ``satellite season`` → how many of those plots the source gives a figure
        for (registered area, declared area, peak NDVI), and how many plots that is.
    """
    sound = [f for f in facts if f.geometry_status in ("valid", "repaired")]
    return {source: (sum(math.isfinite(getattr(f, name)) for f in sound), len(sound))
            for source, name in (("registry", "registered_mu"), ("declarations", "declared_mu"),
                                 ("satellite season", "peak_ndvi"))}


def finite_or_nan(value: Any) -> float:
    """``value`` as a float, NaN when it is not a finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _by_plot(frame: pd.DataFrame, columns: Sequence[str]) -> dict[Any, tuple[Any, ...]]:
    """Plot ID → the values of ``columns`` in its row of ``frame`` (a repeated ID: its last row)."""
    return dict(zip(_column(frame, "plot_id"), zip(*(_column(frame, column) for column in columns))))


def _column(frame: pd.DataFrame, column: str) -> list[Any]:
    """The values of ``frame[column]`` (``None`` each where the frame lacks it, as the season's when no plot had a
    fitted peak)."""
    # (as object arrays: iterating pandas' Arrow text columns value by value costs several times more)
    return frame[column].to_numpy(dtype=object).tolist() if column in frame else [None] * len(frame)


def _finite_column(frame: pd.DataFrame, column: str) -> list[float]:
    """:func:`finite_or_nan` of each value of ``frame[column]`` (of ``None`` where the frame lacks it)."""
    if column in frame and frame[column].dtype.kind == "f":  # a float column: at once
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        return np.where(np.isfinite(values), values, np.nan).tolist()
    return [finite_or_nan(value) for value in _column(frame, column)]
