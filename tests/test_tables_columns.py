"""The table readers check and normalise whole columns at once: the same frames, problems and errors as a plain
row-by-row reading (written here, as the readers were before, on the module's public row helpers)."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

import pandas as pd
import pytest

from agricredit.errors import SchemaError
from agricredit.seeds import SLOTS
from agricredit.tables import (BORROWER_COLUMNS, DECLARATION_COLUMNS, REGISTRY_COLUMNS, UNIT_ALIASES, add_problem,
                               finish_table, national_id_is_valid, read_borrowers, read_declarations, read_raw_table,
                               read_registry, require_columns, require_values)

UNIT_HELP = "expected one of mu, 亩, ha, hectare, 公顷"
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)  # GB 11643-1999


# --------------------------------------------------------------------------- the plain row-by-row reference


def _area_to_mu(raw, row, rec, area_column):
    unit = UNIT_ALIASES.get(rec["area_unit"].lower())
    if unit is None:
        reason = "value is empty" if not rec["area_unit"] else "not a known area unit"
        add_problem(raw, row, "area_unit", f"{reason} ({UNIT_HELP})")
    else:
        rec["area_unit"] = unit
    text = rec[area_column]
    try:
        area = Decimal(text)
        value = float(area)
    except (InvalidOperation, ValueError):
        value = math.nan
    rec[area_column] = value
    if not math.isfinite(value):
        add_problem(raw, row, area_column, "value is empty" if not text else "area is not a number")
        return math.nan
    if value <= 0:
        add_problem(raw, row, area_column, "area must be positive")
        return math.nan
    return math.nan if unit is None else float(area * {"mu": Decimal(1), "ha": Decimal(15)}[unit])


def _check_unique(raw, key, what="duplicate {key} (same as row {first})"):
    first_row = {}
    for row, rec in raw.rows:
        value = tuple(rec[k] for k in key)
        if not all(value):
            continue
        if value in first_row:
            add_problem(raw, row, key[-1], what.format(key=", ".join(key), first=first_row[value]))
        else:
            first_row[value] = row


def _id_problem(nid):
    if len(nid) != 18:
        return f"national_id must have 18 characters, it has {len(nid)}"
    if not (nid[:17].isascii() and nid[:17].isdigit()) or nid[17] not in "0123456789X":
        return "national_id must be 17 digits and a check digit or X"
    if "10X98765432"[sum(int(d) * w for d, w in zip(nid[:17], WEIGHTS)) % 11] != nid[17]:
        return "national_id has a wrong check digit (GB 11643-1999)"
    return None


def plain_registry(path, isolate):
    raw = read_raw_table(path, None)
    require_columns(raw, REGISTRY_COLUMNS)
    for row, rec in raw.rows:
        require_values(raw, row, rec, ("plot_id", "holder_id"))
        rec["registered_mu"] = _area_to_mu(raw, row, rec, "registered_area")
    _check_unique(raw, ("plot_id",))
    return finish_table(raw, REGISTRY_COLUMNS, ("registered_mu",), ("plot_id",), isolate=isolate)


def plain_declarations(path, isolate, known_plots, known_crops):
    raw = read_raw_table(path, None)
    require_columns(raw, DECLARATION_COLUMNS)
    for row, rec in raw.rows:
        require_values(raw, row, rec, ("borrower_id", "plot_id", "declared_crop"))
        rec["declared_mu"] = _area_to_mu(raw, row, rec, "declared_area")
        if rec["plot_id"] and rec["plot_id"] not in known_plots:
            add_problem(raw, row, "plot_id", "declaration for a plot that is not in the plot file")
        if rec["declared_crop"]:
            crop = rec["declared_crop"].lower()
            if crop not in known_crops:
                known = ", ".join(sorted(set(known_crops.values())))
                add_problem(raw, row, "declared_crop", f"not a known crop (known: {known})")
            else:
                crop = known_crops[crop]
            rec["declared_crop"] = crop
        if "season" in raw.columns:
            rec["season"] = (rec["season"] or "").strip().lower()
            if rec["season"] and rec["season"] not in SLOTS:
                add_problem(raw, row, "season", f"not a season slot (one of {', '.join(SLOTS)}, or empty)")
    key = ("borrower_id", "plot_id", "season") if "season" in raw.columns else ("borrower_id", "plot_id")
    _check_unique(raw, key)
    return finish_table(raw, DECLARATION_COLUMNS, ("declared_mu",), key, isolate=isolate)


def plain_borrowers(path, isolate):
    raw = read_raw_table(path, None)
    require_columns(raw, BORROWER_COLUMNS)
    for row, rec in raw.rows:
        require_values(raw, row, rec, ("borrower_id", "national_id"))
        nid = rec["national_id"] = rec["national_id"].upper()
        if nid and _id_problem(nid):
            add_problem(raw, row, "national_id", _id_problem(nid))
    _check_unique(raw, ("borrower_id",))
    _check_unique(raw, ("national_id",), what="the same national_id as row {first}")
    return finish_table(raw, BORROWER_COLUMNS, (), ("borrower_id",), isolate=isolate)


# --------------------------------------------------------------------------- tables with bad rows of every kind

REGISTRY = """plot_id,holder_id,registered_area,area_unit,land_use,source
P1,H1,2,ha,耕地,确权
P2,H1,0.1,公顷,耕地,确权
007,0042,12.5,亩,园地,确权
P3,,3,mu,,
,H2,3,mu,,
P4,H2,3,acre,,
P5,H2,3,,,
P6,H2,,mu,,
P7,H2,十,mu,,
P8,H2,-2,mu,,
P9,H2,0,ha,,
P10,H2,1e400,mu,,
P11,H2,sNaN,mu,,
P12,H2,nan,HA,,
P1,H3,2,ha,,
P13,H3,1,mu,,,13812345678

P14,,x,acre,,
P1,H4,1,MU,,
P15,H5," 2.5 ",Hectare,"multi
line",确权
P16,H5,1_000,mu,,
"""

DECLARATIONS = """borrower_id,plot_id,declared_crop,declared_area,area_unit,season
B1,P1,maize,30,mu,
B1,P1,Wheat,20,mu,winter
B1,P1,玉米,20,mu,summer
B1,P2,maize,1,ha,
B1,P2,maize,1,ha,
B1,P1,rice,1,mu,winter
B2,P9,maize,1,mu,
B2,P3,cotton,1,mu,
B2,P3,,1,mu,single
,P4,maize,1,mu,
B2,,maize,1,mu,
B3,P5,maize,1,mu, Autumn
B3,P6,maize,-1,acre,SUMMER
B3,P7,MAIZE,1,,
"""

BORROWERS = """borrower_id,national_id,name,phone,village
B001,11010519491231002x,王小明,13812345678,王家村
0042,440524188001010014,李秀英,15900001111,李庄
B002,440524188001010015,张三,13700000000,张庄
B003,4405241880010100,李四,13700000001,李庄
B004,44052418800101001A,王五,13700000002,李庄
B005,４40524188001010014,赵六,13700000003,李庄
B006,,孙七,13700000004,李庄
B001,440524188001010014,周八,13700000005,李庄
,11010519491231002X,吴九,13700000006,李庄
B007,X10519491231002X10,郑十,13700000007,李庄
"""

KNOWN_PLOTS = {"P1", "P2", "P3", "P4", "P5", "P6", "P7"}
KNOWN_CROPS = {"maize": "maize", "玉米": "maize", "wheat": "wheat", "rice": "rice", "cotton": "cotton"}


def _write(tmp_path, name, text, encoding):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _same(fast, plain):
    pd.testing.assert_frame_equal(fast, plain, check_exact=True)
    assert fast.attrs["source"] == plain.attrs["source"]
    assert [str(p) for p in fast.attrs.get("problems", ())] == [str(p) for p in plain.attrs.get("problems", ())]


def _same_error(read, plain):
    with pytest.raises(SchemaError) as fast_error:
        read()
    with pytest.raises(SchemaError) as plain_error:
        plain()
    assert fast_error.value.one_line() == plain_error.value.one_line()
    assert [str(p) for p in fast_error.value.problems] == [str(p) for p in plain_error.value.problems]


@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])
def test_registry_columns_as_rows(tmp_path, encoding):
    path = _write(tmp_path, "r.csv", REGISTRY, encoding)
    fast = read_registry(path, isolate=True)
    _same(fast, plain_registry(path, True))
    assert len(fast.attrs["problems"]) == 17 and (fast["problem"] != "").sum() == 15  # every kind is there
    _same_error(lambda: read_registry(path), lambda: plain_registry(path, False))
    sound = _write(tmp_path, "ok.csv", "\n".join(REGISTRY.splitlines()[:4]) + "\n", encoding)
    _same(read_registry(sound), plain_registry(sound, False))


@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])
def test_declarations_columns_as_rows(tmp_path, encoding):
    path = _write(tmp_path, "d.csv", DECLARATIONS, encoding)
    fast = read_declarations(path, known_plots=KNOWN_PLOTS, known_crops=KNOWN_CROPS, isolate=True)
    _same(fast, plain_declarations(path, True, KNOWN_PLOTS, KNOWN_CROPS))
    assert {p.column for p in fast.attrs["problems"]} == {"plot_id", "declared_crop", "borrower_id", "season",
                                                          "declared_area", "area_unit"}
    # a duplicate (borrower, plot, season) with an empty season is not one: the key has an empty value
    assert sum("duplicate" in p.reason for p in fast.attrs["problems"]) == 1
    _same_error(lambda: read_declarations(path, known_plots=KNOWN_PLOTS, known_crops=KNOWN_CROPS),
                lambda: plain_declarations(path, False, KNOWN_PLOTS, KNOWN_CROPS))
    two = _write(tmp_path, "d2.csv", "\n".join(line.rsplit(",", 1)[0] for line in DECLARATIONS.splitlines()), encoding)
    _same(read_declarations(two, known_plots=KNOWN_PLOTS, known_crops=KNOWN_CROPS, isolate=True),
          plain_declarations(two, True, KNOWN_PLOTS, KNOWN_CROPS))


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_borrowers_columns_as_rows(tmp_path, encoding):
    path = _write(tmp_path, "b.csv", BORROWERS, encoding)
    fast = read_borrowers(path, isolate=True)
    _same(fast, plain_borrowers(path, True))
    reasons = [p.reason for p in fast.attrs["problems"]]
    for part in ("18 characters", "17 digits", "check digit", "value is empty", "duplicate", "same national_id"):
        assert any(part in reason for reason in reasons), part
    _same_error(lambda: read_borrowers(path), lambda: plain_borrowers(path, False))


@pytest.mark.parametrize("nid", ["11010519491231002X", "11010519491231002x", "440524188001010014",
                                 "440524188001010015", "44052418800101001", "4405241880010100144", "",
                                 "44052418800101001A", "４40524188001010014", "X10519491231002X10",
                                 "440524188001010０14"])
def test_national_id_validity_is_the_plain_check(nid):
    assert national_id_is_valid(nid) == (_id_problem(nid.strip().upper()) is None)


def test_an_empty_table_reads_as_before(tmp_path):
    path = _write(tmp_path, "r.csv", REGISTRY.splitlines()[0] + "\n", "utf-8")
    _same(read_registry(path, isolate=True), plain_registry(path, True))
