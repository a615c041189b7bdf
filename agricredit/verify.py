"""Cross-verification of plots: area figures, checks, reason codes, lights.

Input: one :class:`PlotFacts` per plot (a list of them, or a pandas DataFrame
with the same column names — see :func:`facts_from_frame`), holding the facts
the pipeline gathered: geometry status, the drawn / registered / declared /
cropped areas in mu, the satellite findings of the season module and the
overlaps with other plots. Ids must already be pseudonyms.

Output: one :class:`PlotVerdict` per plot, sorted by plot id: the four area
figures, the verified area, the failed checks with the figures that failed
them, a light, and what the plot adds to its borrower's limit now
(``mu_now``) and if a reviewer confirms it (``mu_if_confirmed``).

Rules (design §7, tolerances from the policy's ``[area]`` and ``[satellite]``):

* The verified area is the smallest of the *consistent* area sources among
  drawn, registered and declared. The cropped area is the satellite's
  evidence of cultivation (NOT_CULTIVATED), not an area source: edge pixels
  would otherwise cut every honest plot without a reason code.
* AREA_UNIT_SUSPECTED: a ratio within ``15 × (1 ± tol)`` (or the inverse)
  between two sources. The source off by ~15 from the others is dropped
  (when only two sources disagree, the drawn polygon — a measured, unit-free
  figure — is kept); the area checks involving the dropped source are not fired.
* GEOMETRY_INVALID (invalid or rejected outline) excludes the plot (adds 0,
  also if confirmed): an invalid outline gets no other check, none of its
  figures can be trusted. So does AREA_ABSURD: a drawn area more than
  ``absurd_area_ratio`` times both the registered and the declared area
  (:func:`drawn_area_absurd`; the pipeline also leaves such a plot out of the
  overlap checks, so that one wild outline does not touch its neighbours).
* Overlaps are measured on outlines shrunk by the policy's
  ``outline_accuracy_m``. With another borrower's plot: DOUBLE_CLAIM; with the
  same borrower's plot: SELF_OVERLAP, and the area the plot shares with the
  borrower's plots of smaller ID (``repeated_mu``, on the drawn outlines) is
  taken off its verified area, so the borrower's plots count as their union.
  Both are review codes, above ``double_claim_min_area_m2`` or
  ``double_claim_min_share`` of the smaller plot.
* DUPLICATE_PLOT_ID (``geometry_status`` ``duplicate``: the ID is on several
  features, none can be measured) and DECLARATION_CONTESTED (another borrower
  also declared the plot, ``other_declarants``) hold the plot for review; a
  duplicate's verified area if confirmed comes from the registry and the
  declaration alone. OWNER_MISMATCH holds the plot for review: land is
  often farmed under a transfer (流转) contract, so the plot adds 0 now and its
  area once the officer has seen the lease.
* NOT_CULTIVATED (clear evidence: enough clear, cloud-masked observations of a
  fully imaged plot, all showing too little crop) makes the plot add 0.
  Uncertain satellite evidence goes to review instead: TOO_FEW_PIXELS (the plot
  is too small for the sensor; it silences the other satellite codes),
  PARTIAL_COVERAGE (partly outside the imagery), NOT_CULTIVATED_UNCONFIRMED
  (little crop seen, on thin evidence), SEASON_UNRECOGNISED (no crop or
  rotation of the region explains the season). CLOUD_INSUFFICIENT silences
  NOT_CULTIVATED / CROP_MISMATCH / LOW_VIGOR (too little data to judge).
* Plots under review (:data:`HOLD_CODES`) add 0 *now* and their verified area
  *if confirmed*, so a review never hides a reduction.
* Industry-chain evidence (``chain``, from :func:`agricredit.chain.chain_facts`)
  is checked last (:func:`agricredit.chain.chain_checks`): INPUTS_BELOW_DECLARED,
  CHAIN_OTHER_CROP and MACHINERY_AREA_MISMATCH hold the plot for review;
  OWN_YIELD_HISTORY carries the yield :mod:`agricredit.credit` uses; a
  CHAIN_CORROBORATED plot's settled satellite reviews are taken off its checks
  and listed in that code's figures.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agricredit.chain import chain_checks
from agricredit.errors import InputError
from agricredit.frozen import frozen
from agricredit.jsondata import json_ready
from agricredit.policy import Policy
from agricredit.season import SEASON_CODES
from agricredit.seeds import load_crops, load_reason_codes
from agricredit.units import MU_PER_HA, mu_to_m2

__all__ = [
    "HOLD_CODES",
    "AREA_EFFECT_CODES",
    "Check",
    "Overlap",
    "PlotFacts",
    "Contribution",
    "PlotVerdict",
    "check_plot",
    "plot_contribution",
    "verify_plot",
    "verify_plots",
    "complete_overlaps",
    "log_lights",
    "facts_from_frame",
    "drawn_area_absurd",
]

log = logging.getLogger(__name__)

SOURCES = ("drawn", "registered", "declared")
_SOURCE_PAIRS = tuple((a, b) for i, a in enumerate(SOURCES) for b in SOURCES[i + 1:])
#: The codes the season module may report (see :data:`agricredit.season.SEASON_CODES`).
SATELLITE_CODES = SEASON_CODES
_SATELLITE_CODE_SET = frozenset(SATELLITE_CODES)
#: Codes that put a plot under review: it adds 0 now and its verified area if confirmed.
HOLD_CODES = frozenset(
    {"CLOUD_INSUFFICIENT", "NO_COVERAGE", "CROP_MISMATCH", "DOUBLE_CLAIM", "NO_REGISTRY_RECORD", "AREA_UNIT_SUSPECTED",
     "OWNER_MISMATCH", "SELF_OVERLAP", "DUPLICATE_PLOT_ID", "DECLARATION_CONTESTED", "TILE_UNREADABLE",
     "TOO_FEW_PIXELS", "PROCESSING_FAILED", "PARTIAL_COVERAGE", "SEASON_UNRECOGNISED", "NOT_CULTIVATED_UNCONFIRMED",
     "INPUTS_BELOW_DECLARED", "CHAIN_OTHER_CROP", "MACHINERY_AREA_MISMATCH"}
)
EXCLUDE_CODES = frozenset({"GEOMETRY_INVALID", "AREA_ABSURD"})
ZERO_CODES = frozenset({"NOT_CULTIVATED", "VISIT_REJECTED"})  # VISIT_REJECTED: agricredit.visits
_ZEROING_CODES = EXCLUDE_CODES | ZERO_CODES  # codes that make a plot add 0, also if confirmed
#: Codes whose removal (:func:`plot_contribution`'s ``ignore``) may change a plot's verified area or vigor factor;
#: removing any other code can at most release a hold.
AREA_EFFECT_CODES = _ZEROING_CODES | {"AREA_OVER_DECLARED", "AREA_DRAWN_MISMATCH", "SELF_OVERLAP", "LOW_VIGOR"}
GEOMETRY_STATUSES = ("valid", "repaired", "invalid", "rejected", "duplicate")


def _nan(value: Any) -> float:
    """Float of ``value``; None / '' / missing become NaN."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    return float(value)


def _finite(value: float) -> bool:
    return value is not None and math.isfinite(value)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _items(value: Any) -> Any:
    """A list-like cell: None / NaN / '' are empty; a string is JSON (as CSV files store it); arrays become lists."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, str):
        return json.loads(value) if value.strip() else ()
    return value if isinstance(value, Mapping) else list(value)


@dataclass(frozen=True)
class Check:
    """A failed check: its reason code, severity (info / reduce / review) and the figures that failed it."""

    code: str
    severity: str
    figures: dict = field(default_factory=dict)

    @classmethod
    def make(cls, code: str, **figures: Any) -> Check:
        """Build a check with the catalogue's severity for ``code``."""
        severity = _catalogue_severity().get(code)
        if severity is None:
            raise InputError(f"unknown reason code {code!r}")
        return frozen(cls, {"code": code, "severity": severity, "figures": dict(sorted(figures.items()))})

    def to_dict(self) -> dict[str, Any]:
        """Return ``{code, severity, figures}``, JSON-ready (:func:`agricredit.jsondata.json_ready` figures)."""
        return {"code": self.code, "severity": self.severity, "figures": json_ready(self.figures)}


@dataclass(frozen=True)
class Overlap:
    """Overlap of a plot with another plot (``other_drawn_mu`` filled in by :func:`verify_plots`)."""

    other_plot_id: str
    other_borrower_id: str
    shared_m2: float
    other_drawn_mu: float = math.nan

    @classmethod
    def coerce(cls, value: Any) -> Overlap:
        """Accept an Overlap, a mapping or a tuple ``(other_plot_id, other_borrower_id, shared_m2[, other_drawn_mu])``."""
        if isinstance(value, Overlap):
            return value
        if isinstance(value, Mapping):
            return cls(str(value["other_plot_id"]), str(value["other_borrower_id"]), float(value["shared_m2"]),
                       _nan(value.get("other_drawn_mu")))
        items = tuple(value)
        return cls(str(items[0]), str(items[1]), float(items[2]), _nan(items[3]) if len(items) > 3 else math.nan)

    def to_dict(self) -> dict[str, Any]:
        """Return the overlap as a JSON-ready mapping (NaN as None)."""
        return {"other_plot_id": self.other_plot_id, "other_borrower_id": self.other_borrower_id,
                "shared_m2": _or_none(self.shared_m2), "other_drawn_mu": _or_none(self.other_drawn_mu)}


@dataclass(frozen=True)
class PlotFacts:
    """What the pipeline knows about one plot (areas in mu; NaN = unknown).

    ``satellite_codes`` are the season module's findings (:data:`SATELLITE_CODES`)
    as :class:`Check` objects;
    :meth:`from_dict` also accepts ``{code: figures}`` or a list of dicts.
    ``registered_mu`` is NaN when the registry has no record. ``repeated_mu``:
    drawn area already in a plot of the same borrower with a smaller ID
    (:func:`agricredit.plots.repeated_area_m2`); ``other_declarants``: the other
    borrowers who declared the plot; ``unread_tiles``: tiles over the plot
    whose pixels could not be read (TILE_UNREADABLE); ``chain``: the
    industry-chain evidence of the plot's borrower and declared crop
    (:func:`agricredit.chain.chain_facts`; empty when there is none);
    ``processing_failed``: why the plot's satellite evidence could not be
    computed (PROCESSING_FAILED, e.g. a failed batch chunk; left out of
    :meth:`to_dict` when empty).
    """

    plot_id: str
    borrower_id: str
    geometry_status: str = "valid"
    geometry_reason: str = ""
    drawn_mu: float = math.nan
    registered_mu: float = math.nan
    registry_holder_id: str | None = None
    declared_mu: float = math.nan
    declared_crop: str | None = None
    pixel_count: float = math.nan
    cropped_mu_at_peak: float = math.nan
    peak_ndvi: float = math.nan
    satellite_codes: tuple[Check, ...] = ()
    vigor_factor: float = math.nan
    best_crop: str | None = None
    overlaps: tuple[Overlap, ...] = ()
    repeated_mu: float = 0.0
    other_declarants: tuple[str, ...] = ()
    unread_tiles: tuple[str, ...] = ()
    chain: Mapping[str, Any] = field(default_factory=dict)
    processing_failed: str = ""

    _FLOATS = ("drawn_mu", "registered_mu", "declared_mu", "pixel_count", "cropped_mu_at_peak", "peak_ndvi", "vigor_factor",
               "repeated_mu")

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> PlotFacts:
        """Build facts from a mapping (a DataFrame row, a JSON record); missing keys take the defaults."""
        unknown = sorted(set(row) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise InputError(f"unknown plot fact {unknown[0]!r}", record=_text(row.get("plot_id")))
        values: dict[str, Any] = {"plot_id": str(row["plot_id"]), "borrower_id": str(row["borrower_id"])}
        for name in cls._FLOATS:
            if name in row:
                values[name] = _nan(row[name])
        for name in ("registry_holder_id", "declared_crop", "best_crop"):
            if name in row:
                values[name] = _text(row[name])
        if "geometry_status" in row:
            values["geometry_status"] = _text(row["geometry_status"]) or "valid"
        for name in ("geometry_reason", "processing_failed"):
            if name in row:
                values[name] = _text(row[name]) or ""
        codes = _items(row.get("satellite_codes"))
        if isinstance(codes, Mapping):
            codes = [Check.make(code, **dict(figures or {})) for code, figures in codes.items()]
        else:
            codes = [c if isinstance(c, Check) else (Check.make(c["code"], **dict(c.get("figures") or {}))
                                                      if isinstance(c, Mapping) else Check.make(str(c))) for c in codes]
        values["satellite_codes"] = tuple(sorted(codes, key=lambda c: c.code))
        values["overlaps"] = tuple(sorted((Overlap.coerce(o) for o in _items(row.get("overlaps"))), key=lambda o: o.other_plot_id))
        for name in ("other_declarants", "unread_tiles"):
            values[name] = tuple(sorted(str(item) for item in _items(row.get(name))))
        values["chain"] = dict(_items(row.get("chain")) or {})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the facts as a JSON-ready mapping (NaN as None; ``processing_failed`` only when set)."""
        out: dict[str, Any] = dict(zip(_FACT_FIELDS, _fact_values(self)))  # field order kept
        isfinite = math.isfinite
        for name in self._FLOATS:
            value = out[name]
            if value is None or not isfinite(value):
                out[name] = None
        out["satellite_codes"] = [c.to_dict() for c in self.satellite_codes]
        out["overlaps"] = [o.to_dict() for o in self.overlaps]
        out["other_declarants"], out["unread_tiles"] = list(self.other_declarants), list(self.unread_tiles)
        out["chain"] = json_ready(self.chain, sort_keys=True) if self.chain else {}
        if not self.processing_failed:
            del out["processing_failed"]
        return out


#: :attr:`PlotVerdict.areas`' names → the :class:`PlotFacts` field each is.
_AREA_FIELDS = {"drawn_mu": "drawn_mu", "registered_mu": "registered_mu", "declared_mu": "declared_mu",
                "cropped_mu": "cropped_mu_at_peak"}
#: :class:`PlotFacts`' field names, in order, and the getter of their values (:meth:`PlotFacts.to_dict`).
_FACT_FIELDS = tuple(PlotFacts.__dataclass_fields__)
_fact_values = operator.attrgetter(*_FACT_FIELDS)


@dataclass(frozen=True)
class Contribution:
    """What a plot adds to its borrower's limit: verified mu now, mu if confirmed, and the vigor factor applied."""

    mu_now: float
    mu_if_confirmed: float
    vigor_factor: float


@dataclass(frozen=True)
class PlotVerdict:
    """The verification result of one plot."""

    facts: PlotFacts
    checks: tuple[Check, ...]
    verified_mu: float
    excluded: bool
    light: str
    contribution: Contribution

    @property
    def plot_id(self) -> str:
        return self.facts.plot_id

    @property
    def borrower_id(self) -> str:
        return self.facts.borrower_id

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(check.code for check in self.checks)

    @property
    def areas(self) -> dict[str, float]:
        """The four area figures in mu: drawn, registered, declared, cropped."""
        return {name: getattr(self.facts, field) for name, field in _AREA_FIELDS.items()}

    def to_dict(self) -> dict[str, Any]:
        """Return facts, figures, checks, light and contributions as a JSON-ready mapping."""
        c, facts = self.contribution, self.facts.to_dict()
        return {
            "plot_id": self.facts.plot_id,
            "facts": facts,
            "areas": {name: facts[field] for name, field in _AREA_FIELDS.items()},  # self.areas, NaN as None
            "verified_mu": self.verified_mu,
            "excluded": self.excluded,
            "light": self.light,
            "checks": [check.to_dict() for check in self.checks],
            "mu_now": c.mu_now,
            "mu_if_confirmed": c.mu_if_confirmed,
            "vigor_factor": c.vigor_factor,
        }


# --------------------------------------------------------------------------- areas

def _usable_sources(facts: PlotFacts, policy: Policy) -> dict[str, float]:
    sources, _, suspects = _area_judgement(facts.drawn_mu, facts.registered_mu, facts.declared_mu,
                                           policy.area.unit_ratio_tolerance)
    return {name: value for name, value in sources if name not in suspects}


# A plot's areas are judged by its check and again by each contribution computed from it (the verdict's, and the
# decision's counterfactuals that remove one of AREA_EFFECT_CODES): the last judgements are kept.
@functools.lru_cache(maxsize=1024)
def _area_judgement(drawn_mu: float, registered_mu: float, declared_mu: float, tolerance: float
                    ) -> tuple[tuple[tuple[str, float], ...], tuple[tuple[str, str, float], ...], frozenset[str]]:
    """The positive, finite areas by source (in :data:`SOURCES` order), the pairs of sources whose ratio is within
    ``tolerance`` of 15 or 1/15, and the source(s) judged inconsistent."""
    values = (("drawn", drawn_mu), ("registered", registered_mu), ("declared", declared_mu))
    sources = {name: value for name, value in values if value is not None and 0 < value < math.inf}
    if len(sources) < 2:
        return tuple(sources.items()), (), frozenset()
    pairs = []
    for a, b in _SOURCE_PAIRS:
        if a in sources and b in sources:
            value_a, value_b = sources[a], sources[b]
            small, large = (value_a, value_b) if value_a <= value_b else (value_b, value_a)
            if small * MU_PER_HA * (1 - tolerance) <= large <= small * MU_PER_HA * (1 + tolerance):
                pairs.append((a, b, value_a / value_b))
    if not pairs:
        return tuple(sources.items()), (), frozenset()
    counts = {name: sum(name in pair[:2] for pair in pairs) for name in sources}
    worst = max(counts.values())
    suspects = {name for name, count in counts.items() if count == worst}
    if len(suspects) > 1:
        suspects.discard("drawn")  # a geodesic polygon area cannot be in the wrong unit
    if suspects == set(sources):  # nothing left to trust: keep the smaller figure
        suspects.discard(min(sources, key=lambda name: (sources[name], name)))
    return tuple(sources.items()), tuple(pairs), frozenset(suspects)


# --------------------------------------------------------------------------- checks

def check_plot(facts: PlotFacts, policy: Policy) -> tuple[Check, ...]:
    """Run every check of design §7 on one plot.

    Parameters
    ----------
    facts
        The plot's facts; overlaps should carry ``other_drawn_mu`` (as
        :func:`verify_plots` fills in), otherwise only this plot's area is used
        for the double-claim share.
    policy
        The validated policy (tolerances).

    Returns
    -------
    tuple of Check
        The failed checks in catalogue order, each with its figures.
    """
    if facts.geometry_status not in GEOMETRY_STATUSES:
        raise InputError(f"unknown geometry_status {facts.geometry_status!r} (expected one of {list(GEOMETRY_STATUSES)})",
                         record=facts.plot_id)
    if facts.geometry_status in ("invalid", "rejected"):
        return (Check.make("GEOMETRY_INVALID", status=facts.geometry_status, reason=facts.geometry_reason),)
    area = policy.area
    if drawn_area_absurd(facts.drawn_mu, facts.registered_mu, facts.declared_mu, policy):
        return (Check.make("AREA_ABSURD", drawn_mu=facts.drawn_mu, registered_mu=_or_none(facts.registered_mu),
                           declared_mu=_or_none(facts.declared_mu), max_ratio=area.absurd_area_ratio),)
    checks: list[Check] = []
    if facts.geometry_status == "repaired":
        checks.append(Check.make("GEOMETRY_REPAIRED", reason=facts.geometry_reason))
    if facts.geometry_status == "duplicate":
        checks.append(Check.make("DUPLICATE_PLOT_ID", reason=facts.geometry_reason))
    if facts.other_declarants:
        checks.append(Check.make("DECLARATION_CONTESTED", other_declarants=list(facts.other_declarants)))
    if facts.unread_tiles:
        checks.append(Check.make("TILE_UNREADABLE", tiles=list(facts.unread_tiles)))
    if facts.processing_failed:
        checks.append(Check.make("PROCESSING_FAILED", reason=facts.processing_failed))

    if not _finite(facts.registered_mu):
        checks.append(Check.make("NO_REGISTRY_RECORD"))
    elif facts.registry_holder_id != facts.borrower_id:
        checks.append(Check.make("OWNER_MISMATCH", holder_known=facts.registry_holder_id is not None))

    judged = _area_judgement(facts.drawn_mu, facts.registered_mu, facts.declared_mu, area.unit_ratio_tolerance)
    sources, pairs, suspects = dict(judged[0]), judged[1], judged[2]
    if pairs:
        a, b, ratio = pairs[0]
        checks.append(Check.make("AREA_UNIT_SUSPECTED", source_a=a, mu_a=sources[a], source_b=b, mu_b=sources[b],
                                 ratio=ratio, inconsistent=sorted(suspects), tolerance=area.unit_ratio_tolerance))
    usable = {name: value for name, value in sources.items() if name not in suspects}
    if "registered" in usable and "declared" in usable:
        ceiling = usable["registered"] * (1 + area.declared_over_tolerance)
        if usable["declared"] > ceiling:
            checks.append(Check.make("AREA_OVER_DECLARED", declared_mu=usable["declared"], registered_mu=usable["registered"],
                                     tolerance=area.declared_over_tolerance))
    if "registered" in usable and "drawn" in usable:
        drawn, registered, tol = usable["drawn"], usable["registered"], area.drawn_vs_registered_tolerance
        if drawn > registered * (1 + tol) or drawn < registered * (1 - tol):
            checks.append(Check.make("AREA_DRAWN_MISMATCH", drawn_mu=drawn, registered_mu=registered,
                                     ratio=drawn / registered, tolerance=tol))

    checks.extend(_satellite_checks(facts, policy))
    checks.extend(_overlap_checks(facts, policy))
    if facts.chain:
        prior = {c.code: (c.severity, c.figures) for c in checks}
        found, settled = chain_checks(facts.chain, prior, facts.best_crop, policy)
        checks = [c for c in checks if c.code not in settled] + [Check.make(code, **figures) for code, figures in found]
    order = _catalogue_order()
    return tuple(sorted(checks, key=lambda c: order[c.code]))


@functools.lru_cache(maxsize=1)
def _catalogue_order() -> dict[str, int]:
    """Reason code → its rank in the catalogue (the order of a plot's checks)."""
    return {code: i for i, code in enumerate(load_reason_codes())}


@functools.lru_cache(maxsize=1)
def _catalogue_severity() -> dict[str, str]:
    """Reason code → its severity in the catalogue."""
    return {code: entry.severity for code, entry in load_reason_codes().items()}


def _satellite_checks(facts: PlotFacts, policy: Policy) -> list[Check]:
    sat = policy.satellite
    found = {c.code: c for c in facts.satellite_codes}
    if not found.keys() <= _SATELLITE_CODE_SET:
        unknown = min(found.keys() - _SATELLITE_CODE_SET)
        raise InputError(f"satellite code {unknown} is not one the season module may report", record=facts.plot_id)
    if _finite(facts.pixel_count) and facts.pixel_count < sat.min_pixel_count:
        return [Check.make("TOO_FEW_PIXELS", pixel_count=facts.pixel_count, min_pixel_count=sat.min_pixel_count)]
    if "NO_COVERAGE" in found:
        return [Check.make("NO_COVERAGE", **found["NO_COVERAGE"].figures)]
    checks = [Check.make("PARTIAL_COVERAGE", **found["PARTIAL_COVERAGE"].figures)] if "PARTIAL_COVERAGE" in found else []
    if "CLOUD_INSUFFICIENT" in found:
        return checks + [Check.make("CLOUD_INSUFFICIENT", min_observations=sat.min_observations_in_window,
                                    **found["CLOUD_INSUFFICIENT"].figures)]
    cropped, drawn = facts.cropped_mu_at_peak, facts.drawn_mu
    figures = {"cropped_mu": cropped if _finite(cropped) else None, "drawn_mu": drawn if _finite(drawn) else None,
               "min_share": sat.cultivated_min_share}
    if "NOT_CULTIVATED_UNCONFIRMED" in found:  # the season saw little crop, on evidence too thin to lower a limit
        checks.append(Check.make("NOT_CULTIVATED_UNCONFIRMED", **{**figures, **found["NOT_CULTIVATED_UNCONFIRMED"].figures}))
    else:
        low_cropped = _finite(cropped) and _finite(drawn) and drawn > 0 and cropped < sat.cultivated_min_share * drawn
        if low_cropped or "NOT_CULTIVATED" in found:
            figures.update(found["NOT_CULTIVATED"].figures if "NOT_CULTIVATED" in found else {})
            checks.append(Check.make("NOT_CULTIVATED", **figures))
    if "SEASON_UNRECOGNISED" in found:
        checks.append(Check.make("SEASON_UNRECOGNISED", **found["SEASON_UNRECOGNISED"].figures))
    if "CROP_MISMATCH" in found:
        checks.append(Check.make("CROP_MISMATCH", **{"declared_crop": facts.declared_crop, "best_crop": facts.best_crop,
                                                     **found["CROP_MISMATCH"].figures}))
    if "LOW_VIGOR" in found:
        peak = facts.peak_ndvi if _finite(facts.peak_ndvi) else None
        vigor = _vigor(facts, policy) if _finite(facts.vigor_factor) else None
        checks.append(Check.make("LOW_VIGOR", **{"peak_ndvi": peak, **found["LOW_VIGOR"].figures, "vigor_factor": vigor}))
    return checks


def _or_none(value: float) -> float | None:
    return value if _finite(value) else None


def drawn_area_absurd(drawn_mu: float, registered_mu: float, declared_mu: float, policy: Policy) -> bool:
    """Whether a drawn area is more than ``area.absurd_area_ratio`` times every known other figure.

    Parameters
    ----------
    drawn_mu, registered_mu, declared_mu
        The plot's areas in mu (NaN = unknown). With neither registered nor
        declared area known, nothing is absurd.
    policy
        The validated policy.
    """
    others = [value for value in (registered_mu, declared_mu) if _finite(value) and value > 0]
    return bool(others) and _finite(drawn_mu) and drawn_mu > policy.area.absurd_area_ratio * max(others)


def _overlap_checks(facts: PlotFacts, policy: Policy) -> list[Check]:
    """DOUBLE_CLAIM (another borrower's plot) and SELF_OVERLAP (the same borrower's), each beyond the tolerance."""
    if not facts.overlaps:
        return []
    area = policy.area
    own_m2 = mu_to_m2(facts.drawn_mu)
    hits: dict[bool, list[tuple[Overlap, float]]] = {True: [], False: []}
    for overlap in sorted(facts.overlaps, key=lambda o: o.other_plot_id):
        if not overlap.shared_m2 > 0:
            continue
        sizes = [m2 for m2 in (own_m2, mu_to_m2(overlap.other_drawn_mu)) if _finite(m2) and m2 > 0]
        smaller = min(sizes) if sizes else math.nan
        if overlap.shared_m2 > area.double_claim_min_area_m2 or overlap.shared_m2 > area.double_claim_min_share * smaller:
            hits[overlap.other_borrower_id == facts.borrower_id].append((overlap, overlap.shared_m2 / smaller))
    checks = []
    for same, code in ((False, "DOUBLE_CLAIM"), (True, "SELF_OVERLAP")):
        if hits[same]:
            extra = {"repeated_mu": facts.repeated_mu} if same else {}
            checks.append(Check.make(code, other_plot_ids=[o.other_plot_id for o, _ in hits[same]],
                                     shared_m2=max(o.shared_m2 for o, _ in hits[same]),
                                     share_of_smaller=max((s for _, s in hits[same] if _finite(s)), default=None),
                                     min_share=area.double_claim_min_share, min_area_m2=area.double_claim_min_area_m2,
                                     outline_accuracy_m=area.outline_accuracy_m, **extra))
    return checks


# --------------------------------------------------------------------------- contribution

def _vigor(facts: PlotFacts, policy: Policy) -> float:
    """The vigor factor applied to capacity: the season's, clipped to the policy's range; 1 when unknown."""
    sat = policy.satellite
    vigor = facts.vigor_factor if _finite(facts.vigor_factor) else 1.0
    return min(max(vigor, sat.vigor_factor_min), sat.vigor_factor_max)


def plot_contribution(facts: PlotFacts, checks: Iterable[Check], policy: Policy,
                      ignore: frozenset[str] = frozenset(), *, unignored: Contribution | None = None) -> Contribution:
    """What a plot adds to its borrower's limit, optionally with some codes' effects removed.

    Parameters
    ----------
    facts, checks
        The plot and its failed checks (from :func:`check_plot`).
    policy
        The validated policy.
    ignore
        Codes whose effect is removed (the counterfactual used to rank reasons):
        an excluding / zeroing / review code no longer excludes, zeroes or holds;
        AREA_OVER_DECLARED no longer lets the registered area cap the declared
        one; AREA_DRAWN_MISMATCH takes the larger of drawn and registered;
        LOW_VIGOR raises the vigor factor to at least 1; SELF_OVERLAP no longer
        takes the repeated area off.
    unignored
        The contribution of the same plot and checks with nothing ignored (the
        verdict's), if known: when ``ignore`` removes none of
        :data:`AREA_EFFECT_CODES`, its verified area and vigor factor are
        taken as they are instead of judging the areas again.

    Returns
    -------
    Contribution
        ``mu_now`` (0 while the plot is under review), ``mu_if_confirmed`` and
        the vigor factor (policy-clipped; 1 when unknown).
    """
    fired = {check.code for check in checks}
    removed = fired.intersection(ignore)
    codes = fired - removed
    if unignored is not None and removed.isdisjoint(AREA_EFFECT_CODES):  # at most a hold is released
        verified = unignored.mu_if_confirmed
        return Contribution(mu_now=verified if codes.isdisjoint(HOLD_CODES) else 0.0, mu_if_confirmed=verified,
                            vigor_factor=unignored.vigor_factor)
    usable = _usable_sources(facts, policy)
    if "AREA_OVER_DECLARED" in removed and "declared" in usable:
        usable.pop("registered", None)
    if "AREA_DRAWN_MISMATCH" in removed and "drawn" in usable and "registered" in usable:
        usable.pop(min(("drawn", "registered"), key=lambda name: usable[name]))
    verified = min(usable.values()) if usable else 0.0
    if "SELF_OVERLAP" in codes and _finite(facts.repeated_mu):
        verified = max(0.0, verified - facts.repeated_mu)  # the borrower's plots count as their union
    if not codes.isdisjoint(_ZEROING_CODES):
        verified = 0.0
    vigor = _vigor(facts, policy)
    if "LOW_VIGOR" in removed:
        vigor = max(vigor, 1.0)
    return Contribution(mu_now=verified if codes.isdisjoint(HOLD_CODES) else 0.0, mu_if_confirmed=verified,
                        vigor_factor=vigor)


def verify_plot(facts: PlotFacts, policy: Policy) -> PlotVerdict:
    """Check one plot and return its verdict (see the module docstring for the rules)."""
    if facts.declared_crop is not None and facts.declared_crop not in load_crops():
        raise InputError(f"declared crop {facts.declared_crop!r} is not in the crop table", record=facts.plot_id)
    checks = check_plot(facts, policy)
    codes = {check.code for check in checks}
    excluded = bool(codes & EXCLUDE_CODES)
    contribution = plot_contribution(facts, checks, policy)
    severities = {check.severity for check in checks}
    light = "red" if excluded or "review" in severities else "yellow" if "reduce" in severities else "green"
    # The verified area is what the plot adds once any review is settled (0 when excluded or not cultivated).
    return PlotVerdict(facts, checks, contribution.mu_if_confirmed, excluded, light, contribution)


def verify_plots(plots: Iterable[PlotFacts | Mapping[str, Any]] | Any, policy: Policy) -> list[PlotVerdict]:
    """Verify a set of plots (all borrowers of a run): :func:`verify_plot` of each of :func:`complete_overlaps`.

    Parameters
    ----------
    plots
        :class:`PlotFacts`, mappings, or a pandas DataFrame (one row per plot).
    policy
        The validated policy.

    Returns
    -------
    list of PlotVerdict
        Sorted by plot id (then borrower id), whatever the input order.
    """
    verdicts = [verify_plot(item, policy) for item in complete_overlaps(plots)]
    log_lights([v.light for v in verdicts])
    return verdicts


def complete_overlaps(plots: Iterable[PlotFacts | Mapping[str, Any]] | Any) -> list[PlotFacts]:
    """The facts of a run's plots with their overlaps completed: what :func:`verify_plots` checks.

    Each overlap gets the other plot's drawn area, and an overlap listed on one
    plot only is mirrored onto the other, so DOUBLE_CLAIM lands on both plots
    and each verdict depends only on its own (recorded) facts: once completed,
    the plots may be verified in any grouping. A plot ID may appear once per
    borrower only with ``geometry_status`` ``duplicate`` (an ID on several
    features of the plot file, held for review); otherwise plot IDs are unique.

    Parameters
    ----------
    plots
        :class:`PlotFacts`, mappings, or a pandas DataFrame (one row per plot).

    Returns
    -------
    list of PlotFacts
        Sorted by plot id (then borrower id), whatever the input order.
    """
    facts = facts_from_frame(plots) if hasattr(plots, "to_dict") and hasattr(plots, "columns") else [
        p if isinstance(p, PlotFacts) else PlotFacts.from_dict(p) for p in plots]
    index: dict[str, PlotFacts] = {}
    held: dict[tuple[str, str], PlotFacts] = {}
    for item in facts:
        if item.geometry_status == "duplicate":
            if (item.plot_id, item.borrower_id) in held or item.overlaps:
                raise InputError("duplicate plot id held twice for one borrower, or with overlaps", record=item.plot_id)
            held[item.plot_id, item.borrower_id] = item
        elif item.plot_id in index:
            raise InputError("duplicate plot id", record=item.plot_id)
        else:
            index[item.plot_id] = item
    if any(pid in index for pid, _ in held):
        raise InputError("duplicate plot id both held and measured", record=next(p for p, _ in held if p in index))
    overlaps: dict[str, dict[str, Overlap]] = {pid: {} for pid in index}
    for pid in sorted(index):
        for overlap in index[pid].overlaps:
            overlaps[pid][overlap.other_plot_id] = overlap
            if overlap.other_plot_id in index and pid not in overlaps[overlap.other_plot_id]:
                overlaps[overlap.other_plot_id][pid] = Overlap(pid, index[pid].borrower_id, overlap.shared_m2)
    completed = []
    for pid in sorted(index):
        items = []
        for other, overlap in sorted(overlaps[pid].items()):
            if other in index and not _finite(overlap.other_drawn_mu):
                overlap = replace(overlap, other_drawn_mu=index[other].drawn_mu)
            items.append(overlap)
        items = tuple(items)
        completed.append(index[pid] if items == index[pid].overlaps else replace(index[pid], overlaps=items))
    return sorted([*completed, *held.values()], key=lambda item: (item.plot_id, item.borrower_id))


def log_lights(lights: Sequence[str]) -> None:
    """Log (INFO) how many of the verdicts' ``lights`` are green, yellow and red."""
    log.info("verified %d plots: %d green, %d yellow, %d red", len(lights),
             *(lights.count(light) for light in ("green", "yellow", "red")))


def facts_from_frame(frame: Any) -> list[PlotFacts]:
    """Convert a pandas DataFrame (one row per plot, columns named as :class:`PlotFacts` fields) to facts."""
    return [PlotFacts.from_dict(row) for row in frame.to_dict(orient="records")]
