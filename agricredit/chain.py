"""Industry-chain evidence: input purchases, machinery services and produce sales (issue 15).

The companies a farmer deals with know what was farmed: the input shop sold
seed and fertiliser for so many mu of maize, the machinery cooperative
ploughed or harvested so many mu, the grain buyer bought so many kg in earlier
seasons. This module reads their tables, converts every row to mu or kg with
documented factors, gathers the evidence of each plot's borrower and crop
(:func:`chain_facts`, recorded in the plot's facts and audit record) and
checks it (:func:`chain_checks`, called by :func:`agricredit.verify.check_plot`).

Tables (CSV in UTF-8 or GBK, ``.xlsx`` or Parquet, read like the other tables
with per-record isolation): one row per purchase, service or sale with
``partner_id, date (YYYY-MM-DD), crop, quantity, unit``, the borrower as
``borrower_id`` or as the partner's own ``customer_id`` with a customer map
(``partner_id, customer_id, borrower_id``), optional ``plot_ids``
(``;``-joined) and an optional ``season`` (harvest year). Purchases have an
``input`` column (``seed`` / ``fertiliser``, 种子 / 化肥), services a
``service`` column (``plough`` / ``sow`` / ``harvest``, 耕地 / 播种 / 收获).

Units: masses in ``kg`` (公斤, 千克), ``t`` (吨, 1000 kg) or ``jin`` (斤,
0.5 kg); areas serviced in ``mu`` (亩) or ``ha`` (公顷, 15 mu). A purchase of
``kg`` of an input for a crop implies ``kg / kg_per_mu`` mu, with the norm of
``seeds/chain_norms.csv``.

Seasons (harvest years, as :meth:`agricredit.seeds.Crop.season_window`): a
purchase or service belongs to the first season of its crop that ends no
earlier than ``season_grace_days`` before it (seed bought in winter for the
spring); a sale to the last season that ends no later than
``season_grace_days`` after it (grain sold in winter is last autumn's); a
``season`` column overrides both.

Which plots a row speaks for: a row naming ``plot_ids`` speaks for the
declared-crop groups of those plots (a group: the borrower's assessed plots
declared with one crop); a row without ``plot_ids`` for the borrower's group
of its crop or, when the borrower declared no plot with that crop, for every
group of the borrower (evidence of another crop). Areas are compared with the
whole group: its declared mu and its verified mu (every plot's verified area
once any review is settled).

Checks (policy ``[chain]``; codes in ``seeds/reason_codes.csv``):

* ``INPUTS_BELOW_DECLARED`` (review): the group has purchases in the season
  (for any crop) and the area they imply for the declared crop (the larger of
  the seed- and the fertiliser-implied mu, each summed over partners) is below
  ``inputs_min_share`` × the group's declared mu. A group without purchases
  gets no code: the farmer may buy from a shop that shares no data.
* ``CHAIN_OTHER_CROP`` (review): inputs or services for another crop cover at
  least ``other_crop_min_share`` × verified mu. Its figures say whether it
  agrees with the satellite (``CROP_MISMATCH`` with that crop as best fit): it
  supports the satellite's finding; it never clears it.
* ``MACHINERY_AREA_MISMATCH`` (review): mu ploughed, sown or harvested for the
  declared crop differ from the verified mu by more than
  ``machinery_tolerance`` of it.
* ``OWN_YIELD_HISTORY`` (info): with sales of the declared crop in at least
  ``sales_min_seasons`` of the ``sales_seasons`` seasons before the assessed
  one, capacity uses the median of the seasons' kg per verified mu, never more
  than ``own_yield_max_factor`` × the table yield (:mod:`agricredit.credit`).
  ``SALES_BELOW_EXPECTED_YIELD`` (info) when that median is below
  ``sales_below_share`` × the table yield: capacity already uses the lower
  figure, so it is shown, not sent to review a second time.
* ``CHAIN_CORROBORATED`` (info): at least ``corroboration_min_partners``
  different partners each have evidence for the declared crop covering at
  least ``corroboration_min_share`` × verified mu, and no chain code above
  fired. When the plot's only review codes are satellite ones a partner can
  speak to (:data:`SETTLEABLE`), they are settled: taken off the plot's codes
  and listed with their figures under ``settled`` in this code's figures, so
  the settlement is never silent. Ownership, overlaps and area-unit reviews are
  never settled by partners (a seed shop cannot tell who holds the land).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import math
import os
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from agricredit.errors import SeedDataError
from agricredit.policy import Policy
from agricredit.seeds import SEEDS_DIR, crop_aliases, load_crops
from agricredit.tables import Problem, finish_table, add_problem, read_raw_table, require_columns, require_values
from agricredit.units import MU_PER_HA

__all__ = ["KINDS", "MASS_UNITS", "AREA_UNITS", "SETTLEABLE", "ChainTables", "PlotRef", "load_norms",
           "read_customer_map", "read_chain_table", "read_chain_tables", "purchase_season", "sale_season",
           "chain_facts", "chain_checks"]

#: The chain tables, by case-file key.
KINDS = ("input_purchases", "machinery", "sales")
#: Kilograms per unit of mass (斤 = 0.5 kg by the 1959 market-unit reform; 1 t = 1000 kg).
MASS_UNITS: Mapping[str, float] = {"kg": 1.0, "公斤": 1.0, "千克": 1.0, "t": 1000.0, "吨": 1000.0,
                                   "jin": 0.5, "斤": 0.5}
#: Mu per unit of area serviced (1 ha = 15 mu).
AREA_UNITS: Mapping[str, float] = {"mu": 1.0, "亩": 1.0, "ha": float(MU_PER_HA), "hectare": float(MU_PER_HA),
                                   "公顷": float(MU_PER_HA)}
_ITEMS = {
    "input_purchases": ("input", {"seed": "seed", "种子": "seed", "fertiliser": "fertiliser",
                                  "fertilizer": "fertiliser", "化肥": "fertiliser", "肥料": "fertiliser"}),
    "machinery": ("service", {"plough": "plough", "plow": "plough", "tillage": "plough", "耕地": "plough",
                              "翻耕": "plough", "旋耕": "plough", "sow": "sow", "sowing": "sow", "播种": "sow",
                              "harvest": "harvest", "收获": "harvest", "机收": "harvest"}),
    "sales": (None, {}),
}
_BASE_COLUMNS = ("partner_id", "date", "crop", "quantity", "unit")
CUSTOMER_MAP_COLUMNS = ("partner_id", "customer_id", "borrower_id")
#: Review codes partners' evidence may settle: what grows on the plot, which the satellite could not tell.
SETTLEABLE = frozenset({"CROP_MISMATCH", "CLOUD_INSUFFICIENT", "NO_COVERAGE", "TILE_UNREADABLE", "TOO_FEW_PIXELS",
                        "PARTIAL_COVERAGE", "SEASON_UNRECOGNISED", "NOT_CULTIVATED_UNCONFIRMED"})
#: Chain codes against a plot: any of them rules out corroboration.
_AGAINST = ("INPUTS_BELOW_DECLARED", "CHAIN_OTHER_CROP", "MACHINERY_AREA_MISMATCH")


@functools.cache
def load_norms() -> dict[tuple[str, str], float]:
    """``(crop, input)`` → kg per mu, from ``seeds/chain_norms.csv`` (sources and confirmation in the file)."""
    path = SEEDS_DIR / "chain_norms.csv"
    crops = load_crops()
    norms = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                value = float(row["kg_per_mu"])
            except (KeyError, TypeError, ValueError) as error:
                raise SeedDataError("kg_per_mu is not a number", path=path, record=f"row {number}") from error
            if row.get("crop") not in crops or row.get("input") not in ("seed", "fertiliser") or not value > 0:
                raise SeedDataError("unknown crop or input, or a non-positive norm", path=path, record=f"row {number}")
            if not row.get("source") or row.get("confirmed") not in ("yes", "no"):
                raise SeedDataError("every norm needs a source and confirmed yes/no", path=path, record=f"row {number}")
            norms[row["crop"], row["input"]] = value
    return norms


def read_customer_map(path: str | os.PathLike[str], encoding: str | None = None, *,
                      isolate: bool = False) -> pd.DataFrame:
    """Read a customer map: a partner's own customer IDs → borrower IDs.

    Parameters
    ----------
    path
        CSV, ``.xlsx`` or Parquet with ``partner_id, customer_id, borrower_id``.
    encoding
        Text encoding of a CSV; ``None`` detects it (UTF-8, else GB18030).
    isolate
        Keep bad rows, marked in a ``problem`` column, instead of raising.

    Returns
    -------
    pandas.DataFrame
        Sorted by ``(partner_id, customer_id)``; a pair mapped twice is a problem.
    """
    raw = read_raw_table(path, encoding)
    require_columns(raw, CUSTOMER_MAP_COLUMNS)
    first: dict[tuple[str, str], int] = {}
    for row, rec in raw.rows:
        require_values(raw, row, rec, CUSTOMER_MAP_COLUMNS)
        pair = (rec["partner_id"], rec["customer_id"])
        if pair in first:
            add_problem(raw, row, "customer_id", f"customer mapped twice (same as row {first[pair]})")
        first.setdefault(pair, row)
    return finish_table(raw, CUSTOMER_MAP_COLUMNS, (), ("partner_id", "customer_id"), isolate=isolate)


def read_chain_table(path: str | os.PathLike[str], kind: str, encoding: str | None = None, *,
                     customers: Mapping[tuple[str, str], str] | None = None, isolate: bool = False) -> pd.DataFrame:
    """Read one chain table and convert its quantities.

    Parameters
    ----------
    path
        CSV, ``.xlsx`` or Parquet (see the module notes for the columns).
    kind
        ``input_purchases``, ``machinery`` or ``sales``.
    encoding
        Text encoding of a CSV; ``None`` detects it.
    customers
        ``(partner_id, customer_id)`` → ``borrower_id``, for rows that name the
        partner's customer instead of the borrower.
    isolate
        Keep bad rows, marked in a ``problem`` column, instead of raising.

    Returns
    -------
    pandas.DataFrame
        One row per record with ``partner_id, borrower_id, date, crop, item``
        (input, service or ``""``), ``plot_ids`` (``;``-joined, sorted),
        ``season`` (``""`` when not given) and ``amount``: kg for purchases and
        sales, mu for services; ``source_row``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown chain table {kind!r} (expected one of {list(KINDS)})")
    item_column, item_aliases = _ITEMS[kind]
    raw = read_raw_table(path, encoding)
    require_columns(raw, _BASE_COLUMNS + ((item_column,) if item_column else ()))
    if "borrower_id" not in raw.columns and "customer_id" not in raw.columns:
        add_problem(raw, raw.header_row, "borrower_id", "required column is missing (borrower_id, or customer_id with a "
                                                     "customer map)")
        require_columns(raw, ())
    aliases, norms, units = crop_aliases(), load_norms(), AREA_UNITS if kind == "machinery" else MASS_UNITS
    for row, rec in raw.rows:
        require_values(raw, row, rec, _BASE_COLUMNS)
        rec["borrower_id"] = _borrower_of(raw, row, rec, customers or {})
        rec["date"] = _iso_date(raw, row, rec["date"])
        crop = aliases.get(rec["crop"].lower())
        if rec["crop"] and crop is None:
            add_problem(raw, row, "crop", f"not a known crop (known: {', '.join(sorted(set(aliases.values())))})")
        rec["crop"] = crop or ""
        item = item_aliases.get(rec.get(item_column, "").lower(), "") if item_column else ""
        if item_column and not item:
            add_problem(raw, row, item_column, f"expected one of {', '.join(sorted(set(item_aliases.values())))}")
        rec["item"] = item
        factor = units.get(rec["unit"].lower(), units.get(rec["unit"]))
        if factor is None:
            add_problem(raw, row, "unit", f"not a known unit (expected one of {', '.join(units)})")
        quantity = _positive(raw, row, rec["quantity"])
        amount = quantity * factor if factor is not None else math.nan
        if kind == "input_purchases" and crop and item and (crop, item) not in norms:
            add_problem(raw, row, "crop", f"no {item} norm for {crop} in seeds/chain_norms.csv")
        rec["amount"] = repr(amount)
        rec["plot_ids"] = ";".join(sorted({p.strip() for p in rec.get("plot_ids", "").split(";") if p.strip()}))
        season = rec.get("season", "")
        if season and not (season.isdigit() and len(season) == 4):
            add_problem(raw, row, "season", "season is a harvest year (YYYY)")
        rec["season"] = season
    columns = ("partner_id", "borrower_id", "date", "crop", "item", "amount", "plot_ids", "season")
    frame = finish_table(raw, columns, (), ("partner_id", "date"), isolate=isolate)
    frame["amount"] = frame["amount"].astype(float)
    return frame.drop(columns=[c for c in ("quantity", "unit", "customer_id", item_column) if c in frame])


def _borrower_of(raw: Any, row: int, rec: dict[str, str], customers: Mapping[tuple[str, str], str]) -> str:
    if rec.get("borrower_id"):
        return rec["borrower_id"]
    customer = rec.get("customer_id", "")
    if not customer:
        add_problem(raw, row, "borrower_id", "value is empty (give borrower_id or customer_id)")
        return ""
    borrower = customers.get((rec["partner_id"], customer))
    if borrower is None:
        add_problem(raw, row, "customer_id", "customer is not in the customer map")
        return ""
    return borrower


def _iso_date(raw: Any, row: int, text: str) -> str:
    """``YYYY-MM-DD`` (an Excel date cell reads as ``YYYY-MM-DDT00:00:00``)."""
    try:
        if not text:
            return ""
        return (dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text).date()).isoformat()
    except ValueError:
        add_problem(raw, row, "date", "not a date (YYYY-MM-DD)")
        return ""


def _positive(raw: Any, row: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if text and not (math.isfinite(value) and value > 0):
        add_problem(raw, row, "quantity", "quantity must be a positive number")
    return value


@dataclass(frozen=True)
class ChainTables:
    """The chain tables of a case (sound rows only), and the problems of the rows set aside."""

    input_purchases: pd.DataFrame | None = None
    machinery: pd.DataFrame | None = None
    sales: pd.DataFrame | None = None
    problems: tuple[Problem, ...] = field(default=())

    def rows(self) -> list[tuple[str, dict[str, Any]]]:
        """Every sound row as ``(kind, record)``, in table order."""
        return [(kind, record) for kind in KINDS if (table := getattr(self, kind)) is not None
                for record in table.to_dict("records")]


def read_chain_tables(paths: Mapping[str, Path | None], encoding_of: Callable[[str], str | None], *,
                      isolate: bool = False) -> ChainTables:
    """Read the chain tables of a case.

    Parameters
    ----------
    paths
        ``input_purchases``, ``machinery``, ``sales``, ``customer_map`` → file (or None).
    encoding_of
        Table name → text encoding (None: detect).
    isolate
        Set bad rows aside (listed in :attr:`ChainTables.problems`) instead of raising.
    """
    problems: list[Problem] = []
    customers: dict[tuple[str, str], str] = {}
    if paths.get("customer_map") is not None:
        table = read_customer_map(paths["customer_map"], encoding_of("customer_map"), isolate=isolate)
        problems.extend(table.attrs.get("problems", []))
        sound = table.loc[table["problem"] == ""] if "problem" in table else table
        customers = {(p, c): b for p, c, b in zip(sound["partner_id"], sound["customer_id"], sound["borrower_id"])}
    tables = {}
    for kind in KINDS:
        if paths.get(kind) is None:
            continue
        table = read_chain_table(paths[kind], kind, encoding_of(kind), customers=customers, isolate=isolate)
        problems.extend(table.attrs.get("problems", []))
        tables[kind] = table.loc[table["problem"] == ""].drop(columns="problem") if "problem" in table else table
    return ChainTables(**tables, problems=tuple(problems))


# --------------------------------------------------------------------------- seasons

def purchase_season(date: dt.date, crop: str, grace_days: int) -> int:
    """Harvest year of the first season of ``crop`` that ends no earlier than ``grace_days`` before ``date``."""
    year = date.year - 1
    while load_crops()[crop].season_window(year)[1] + dt.timedelta(days=grace_days) < date:
        year += 1
    return year


def sale_season(date: dt.date, crop: str, grace_days: int) -> int:
    """Harvest year of the last season of ``crop`` that ends no later than ``grace_days`` after ``date``."""
    year = date.year + 1
    while load_crops()[crop].season_window(year)[1] > date + dt.timedelta(days=grace_days):
        year -= 1
    return year


def _season(kind: str, record: Mapping[str, Any], grace_days: int) -> int:
    if record["season"]:
        return int(record["season"])
    date = dt.date.fromisoformat(record["date"])
    return (sale_season if kind == "sales" else purchase_season)(date, record["crop"], grace_days)


# --------------------------------------------------------------------------- evidence per plot

@dataclass(frozen=True)
class PlotRef:
    """What :func:`chain_facts` needs of an assessed plot (IDs as in the tables, not pseudonyms)."""

    plot_id: str
    borrower_id: str
    declared_crop: str
    declared_mu: float
    verified_mu: float  # once any review is settled (``mu_if_confirmed``)


def chain_facts(tables: ChainTables, plots: Iterable[PlotRef], season: int, partner_alias: Callable[[str], str],
                policy: Policy) -> dict[tuple[str, str], dict[str, Any]]:
    """Gather the chain evidence of each plot's declared-crop group (see the module notes).

    Parameters
    ----------
    tables
        From :func:`read_chain_tables`.
    plots
        The assessed plots.
    season
        The assessed season (harvest year): purchases and services count in it,
        sales in the ``[chain] sales_seasons`` seasons before it.
    partner_alias
        Partner ID → pseudonym (partners appear in no output in clear).
    policy
        The validated policy (``[chain] season_grace_days``, ``sales_seasons``).

    Returns
    -------
    dict
        ``(borrower ID, plot ID)`` → the group's evidence (JSON-ready, partners pseudonymous):
        ``season, crop, plot_ids, declared_mu, verified_mu, inputs, machinery,
        sales``; only the plots of groups some row speaks for.
    """
    groups: dict[tuple[str, str], list[PlotRef]] = {}
    for plot in plots:
        groups.setdefault((plot.borrower_id, plot.declared_crop), []).append(plot)
    group_of = {(p.borrower_id, p.plot_id): key for key, members in groups.items() for p in members}
    crops_of: dict[str, set[str]] = {}
    for borrower, crop in groups:
        crops_of.setdefault(borrower, set()).add(crop)
    grace, first_sale = policy.chain.season_grace_days, season - policy.chain.sales_seasons
    evidence: dict[tuple[str, str], dict[str, list]] = {}
    for kind, record in tables.rows():
        borrower = record["borrower_id"]
        if borrower not in crops_of:
            continue
        year = _season(kind, record, grace)
        if (kind == "sales" and not first_sale <= year < season) or (kind != "sales" and year != season):
            continue
        named = [p for p in record["plot_ids"].split(";") if p]
        if named:
            targets = {group_of[borrower, p] for p in named if (borrower, p) in group_of}
        elif record["crop"] in crops_of[borrower]:
            targets = {(borrower, record["crop"])}
        else:
            targets = {(borrower, crop) for crop in crops_of[borrower]}
        for target in targets:
            if kind == "sales" and record["crop"] != target[1]:
                continue
            evidence.setdefault(target, {k: [] for k in KINDS})[kind].append(
                (partner_alias(record["partner_id"]), record["crop"], record["item"], year, record["amount"]))
    facts = {}
    norms = load_norms()
    for key, found in sorted(evidence.items()):
        members = sorted(groups[key], key=lambda p: p.plot_id)
        inputs: dict[tuple[str, str, str], float] = {}
        for partner, crop, item, _, kg in found["input_purchases"]:
            inputs[partner, crop, item] = inputs.get((partner, crop, item), 0.0) + kg
        services: dict[tuple[str, str, str], float] = {}
        for partner, crop, item, _, mu in found["machinery"]:
            services[partner, crop, item] = services.get((partner, crop, item), 0.0) + mu
        sales: dict[int, dict[str, Any]] = {}
        for partner, _, _, year, kg in found["sales"]:
            entry = sales.setdefault(year, {"season": year, "kg": 0.0, "partners": set()})
            entry["kg"] += kg
            entry["partners"].add(partner)
        group = {
            "season": season, "crop": key[1], "plot_ids": [p.plot_id for p in members],
            "declared_mu": math.fsum(p.declared_mu for p in members),
            "verified_mu": math.fsum(p.verified_mu for p in members),
            "inputs": [{"partner": p, "crop": c, "input": i, "kg": kg, "kg_per_mu": norms[c, i], "mu": kg / norms[c, i]}
                       for (p, c, i), kg in sorted(inputs.items())],
            "machinery": [{"partner": p, "crop": c, "service": s, "mu": mu}
                          for (p, c, s), mu in sorted(services.items())],
            "sales": [{**entry, "partners": sorted(entry["partners"])} for _, entry in sorted(sales.items())],
        }
        for plot in members:
            facts[plot.borrower_id, plot.plot_id] = group
    return facts


# --------------------------------------------------------------------------- checks

def _evidence(group: Mapping[str, Any]) -> list[tuple[str, str, str, float]]:
    """Every purchase and service of a group as ``(partner, crop, source, mu)`` (source ``input:seed``, ``service:sow`` ...)."""
    return ([(r["partner"], r["crop"], f"input:{r['input']}", r["mu"]) for r in group["inputs"]]
            + [(r["partner"], r["crop"], f"service:{r['service']}", r["mu"]) for r in group["machinery"]])


def _best_by_crop(group: Mapping[str, Any], partner: str | None = None) -> dict[str, tuple[float, list[str]]]:
    """Crop → (largest area any one kind of evidence gives it, that source), optionally of one partner only.

    Purchases of one input add up across partners; so do services of one kind;
    the crop's area is the largest of these sums (seed and fertiliser, or
    ploughing and harvest, are two views of one area, not two areas).
    """
    sums: dict[tuple[str, str], float] = {}
    for who, crop, source, mu in _evidence(group):
        if partner is None or who == partner:
            sums[crop, source] = sums.get((crop, source), 0.0) + mu
    best: dict[str, tuple[float, list[str]]] = {}
    for (crop, source), mu in sorted(sums.items()):
        if mu > best.get(crop, (-1.0, []))[0]:
            best[crop] = (mu, [source])
    return best


def chain_checks(group: Mapping[str, Any], prior: Mapping[str, tuple[str, Mapping[str, Any]]], best_crop: str | None,
                 policy: Policy) -> tuple[list[tuple[str, dict[str, Any]]], frozenset[str]]:
    """Check a plot's chain evidence (see the module notes for the rules).

    Parameters
    ----------
    group
        The plot's evidence, from :func:`chain_facts` (as recorded in its facts).
    prior
        The plot's other failed checks: code → (severity, figures).
    best_crop
        The satellite's best-fitting crop, if any.
    policy
        The validated policy (``[chain]``).

    Returns
    -------
    tuple
        The failed chain checks as ``(code, figures)``, and the codes of
        ``prior`` settled by corroboration (to be taken off the plot's checks).
    """
    rules, crop = policy.chain, group["crop"]
    verified, declared = float(group["verified_mu"]), float(group["declared_mu"])
    found: list[tuple[str, dict[str, Any]]] = []
    if group["inputs"]:
        implied = {row["input"]: 0.0 for row in group["inputs"] if row["crop"] == crop}
        for row in group["inputs"]:
            if row["crop"] == crop:
                implied[row["input"]] += row["mu"]
        implied_mu = max(implied.values(), default=0.0)
        if implied_mu < rules.inputs_min_share * declared:
            found.append(("INPUTS_BELOW_DECLARED", {
                "implied_mu": implied_mu, "declared_mu": declared, "min_share": rules.inputs_min_share,
                "by_input": dict(sorted(implied.items())),
                "partners": sorted({r["partner"] for r in group["inputs"]})}))
    best = _best_by_crop(group)
    others = sorted(((mu, c, sources) for c, (mu, sources) in best.items() if c != crop), reverse=True)
    if others and others[0][0] >= rules.other_crop_min_share * verified:
        mu, other, sources = others[0]
        found.append(("CHAIN_OTHER_CROP", {
            "declared_crop": crop, "chain_crop": other, "chain_mu": mu, "sources": sources, "verified_mu": verified,
            "min_share": rules.other_crop_min_share, "satellite_best_crop": best_crop,
            "supports_crop_mismatch": "CROP_MISMATCH" in prior and best_crop == other}))
    serviced: dict[str, float] = {}
    for row in group["machinery"]:
        if row["crop"] == crop:
            serviced[row["service"]] = serviced.get(row["service"], 0.0) + row["mu"]
    off = [(abs(mu - verified), service, mu) for service, mu in sorted(serviced.items())
           if abs(mu - verified) > rules.machinery_tolerance * verified]
    if off:
        _, service, mu = max(off)
        found.append(("MACHINERY_AREA_MISMATCH", {"service": service, "serviced_mu": mu, "verified_mu": verified,
                                                  "tolerance": rules.machinery_tolerance}))
    found.extend(_yield_checks(group, policy))
    if any(code in _AGAINST for code, _ in found):
        return found, frozenset()
    confirming = {}
    for partner in sorted({who for who, _, _, _ in _evidence(group)}):
        own = _best_by_crop(group, partner)
        if crop in own and own[crop][0] >= rules.corroboration_min_share * verified and set(own) == {crop}:
            confirming[partner] = own[crop][0]
    if verified <= 0 or len(confirming) < rules.corroboration_min_partners:
        return found, frozenset()
    reviews = {code for code, (severity, _) in prior.items() if severity == "review"}
    settled = frozenset(reviews) if reviews and reviews <= SETTLEABLE else frozenset()
    found.append(("CHAIN_CORROBORATED", {
        "partners": sorted(confirming), "partner_mu": [confirming[p] for p in sorted(confirming)],
        "verified_mu": verified, "min_partners": rules.corroboration_min_partners,
        "min_share": rules.corroboration_min_share,
        "settled": [{"code": code, "figures": dict(prior[code][1])} for code in sorted(settled)]}))
    return found, settled


def _yield_checks(group: Mapping[str, Any], policy: Policy) -> list[tuple[str, dict[str, Any]]]:
    """OWN_YIELD_HISTORY and SALES_BELOW_EXPECTED_YIELD from the sales of earlier seasons."""
    rules, verified = policy.chain, float(group["verified_mu"])
    seasons = {str(entry["season"]): entry["kg"] / verified for entry in group["sales"] if entry["kg"] > 0}
    if verified <= 0 or len(seasons) < rules.sales_min_seasons:
        return []
    table = load_crops()[group["crop"]].yield_kg_per_mu
    median = statistics.median(seasons.values())
    bound = table * rules.own_yield_max_factor
    found = [("OWN_YIELD_HISTORY", {
        "seasons_kg_per_mu": dict(sorted(seasons.items())), "median_kg_per_mu": median, "table_kg_per_mu": table,
        "max_factor": rules.own_yield_max_factor, "yield_kg_per_mu": min(median, bound), "verified_mu": verified})]
    if median < rules.sales_below_share * table:
        found.append(("SALES_BELOW_EXPECTED_YIELD", {"median_kg_per_mu": median, "table_kg_per_mu": table,
                                                     "below_share": rules.sales_below_share}))
    return found

