"""Table ingestion: formats, encodings, units, ids and one clear error per problem."""

from __future__ import annotations

import codecs
import csv
import io
import logging
from fractions import Fraction

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agricredit.errors import EncodingError, SchemaError
from agricredit.tables import (
    national_id_is_valid,
    read_borrowers,
    read_declarations,
    read_registry,
    read_text,
)

REGISTRY_ROWS = [
    ["plot_id", "holder_id", "registered_area", "area_unit", "land_use", "source"],
    ["P0002", "B001", "2", "ha", "耕地", "农村土地承包经营权确权登记"],
    ["007", "0042", "12.5", "亩", "园地", "确权"],
    ["P0003", "B002", "0.1", "公顷", "耕地", "农村土地承包经营权确权登记"],
    ["P0004", "B002", "3.25", "mu", "耕地", "确权"],
]

# Examples of valid IDs printed in GB 11643-1999 itself (independent of our check-digit code).
VALID_IDS = ("11010519491231002X", "440524188001010014")

BORROWER_ROWS = [
    ["borrower_id", "national_id", "name", "phone", "village"],
    ["B001", VALID_IDS[0], "王小明", "13812345678", "王家村"],
    ["0042", VALID_IDS[1], "李秀英", "15900001111", "李庄"],
]


def write_table(path, rows, fmt):
    """Write ``rows`` (header first, all text) as CSV in an encoding, xlsx or Parquet."""
    if fmt in ("utf8", "utf8-bom", "gbk"):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n" if fmt == "gbk" else "\n").writerows(rows)
        text = buffer.getvalue()
        data = {"utf8": text.encode("utf-8"), "utf8-bom": codecs.BOM_UTF8 + text.encode("utf-8"), "gbk": text.encode("gbk")}[fmt]
        path.write_bytes(data)
    elif fmt == "xlsx":
        workbook = openpyxl.Workbook()
        sheet = workbook.active
        for row in rows:
            # Areas as numbers, as Excel keeps them; ids as text cells.
            sheet.append([_number_or_text(v) if h.endswith("_area") else v for h, v in zip(rows[0], row)])
        workbook.save(path)
    elif fmt == "parquet":
        columns = {
            h: pa.array([float(r[i]) for r in rows[1:]]) if h.endswith("_area") else pa.array([r[i] for r in rows[1:]])
            for i, h in enumerate(rows[0])
        }
        pq.write_table(pa.table(columns), path)
    else:
        raise ValueError(fmt)
    return path


def _number_or_text(value):
    try:
        return float(value)
    except ValueError:
        return value


FORMATS = {"utf8": "csv", "utf8-bom": "csv", "gbk": "csv", "xlsx": "xlsx", "parquet": "parquet"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_registry_same_frame_in_every_format(tmp_path, fmt):
    path = write_table(tmp_path / f"registry.{FORMATS[fmt]}", REGISTRY_ROWS, fmt)
    if fmt == "gbk":
        with pytest.raises(UnicodeDecodeError, match="'utf-8' codec can't decode"):
            path.read_bytes().decode("utf-8")  # the test really exercises the fallback
    frame = read_registry(path)
    expected = pd.DataFrame(
        {
            "plot_id": ["007", "P0002", "P0003", "P0004"],
            "holder_id": ["0042", "B001", "B002", "B002"],
            "registered_area": [12.5, 2.0, 0.1, 3.25],
            "area_unit": ["mu", "ha", "ha", "mu"],
            "land_use": ["园地", "耕地", "耕地", "耕地"],
            "source": ["确权", "农村土地承包经营权确权登记", "农村土地承包经营权确权登记", "确权"],
            "registered_mu": [12.5, 30.0, 1.5, 3.25],
            "source_row": [3, 2, 4, 5],
        }
    ).astype({"plot_id": str, "holder_id": str, "area_unit": str, "land_use": str, "source": str})
    pd.testing.assert_frame_equal(frame, expected)


def test_ids_with_leading_zeros_and_excel_numbers(tmp_path):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["plot_id", "holder_id", "registered_area", "area_unit", "land_use", "source"])
    sheet.append(["0001", 7.0, 3, "MU", None, None])  # a numeric holder cell, as Excel stores typed numbers
    path = tmp_path / "registry.xlsx"
    workbook.save(path)
    frame = read_registry(path)
    assert frame.loc[0, "plot_id"] == "0001"
    assert frame.loc[0, "holder_id"] == "7"
    assert frame.loc[0, "land_use"] == ""
    assert frame.loc[0, "registered_mu"] == 3.0


def test_whitespace_stripped_and_header_normalised(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        " Borrower_ID ,PLOT_ID,declared_crop,declared_area,area_unit\n  B001 , 0007 , Maize , 1.5 , Hectare \n",
        encoding="utf-8",
    )
    frame = read_declarations(path)
    row = frame.iloc[0]
    assert (row.borrower_id, row.plot_id, row.declared_crop, row.area_unit) == ("B001", "0007", "maize", "ha")
    assert row.declared_mu == 22.5


@settings(max_examples=60, deadline=None)
@given(st.decimals(min_value="0.0001", max_value="100000", places=4))
def test_ha_to_mu_is_exact(tmp_path_factory, area):
    path = tmp_path_factory.mktemp("ha") / "r.csv"
    path.write_text(f"plot_id,holder_id,registered_area,area_unit,land_use,source\nP1,B1,{area},ha,,\n", encoding="utf-8")
    frame = read_registry(path)
    # Reference: the exact rational product, rounded once to the nearest float.
    assert frame.loc[0, "registered_mu"] == float(Fraction(str(area)) * 15)


def test_row_numbers_count_blank_lines_and_multiline_cells(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(
        "plot_id,holder_id,registered_area,area_unit,land_use,source\n"
        'P1,B1,1,mu,"耕地\n（水田）",x\n'  # rows 2-3
        "\n"  # row 4
        "P2,B1,1,acre,耕地,x\n",  # row 5
        encoding="utf-8",
    )
    with pytest.raises(SchemaError) as info:
        read_registry(path)
    assert [str(p) for p in info.value.problems] == [f"{path}:5:area_unit: not a known area unit (expected one of mu, 亩, ha, hectare, 公顷)"]


def test_encoding_override_and_read_text(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes("plot_id,holder_id,registered_area,area_unit,land_use,source\nP1,B1,1,mu,耕地,确权\n".encode("gb18030"))
    assert read_registry(path, encoding="gbk").loc[0, "land_use"] == "耕地"
    assert read_text(path).endswith("确权\n")
    with pytest.raises(EncodingError) as info:
        read_registry(path, encoding="utf-8")
    offset = len(HEADER_R.encode() + b"P1,B1,1,mu,")
    assert info.value.one_line().startswith(f"{path}: byte {offset}: not valid utf-8")


def test_undecodable_bytes_name_file_and_offset(tmp_path):
    path = tmp_path / "r.csv"
    data = "plot_id,holder_id\nP1,".encode() + b"\xff\xfe\x80"
    path.write_bytes(data)
    with pytest.raises(EncodingError) as info:
        read_registry(path)
    message = info.value.one_line()
    offset = data.index(b"\xff")
    assert message.startswith(f"{path}: byte {offset}:")
    assert "UTF-8" in message and "GB18030" in message


def test_utf16_gets_a_hint(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes((HEADER_R + "P1,B1,1,亩,耕地,确权\n").encode("utf-16"))
    with pytest.raises(EncodingError, match="UTF-16"):
        read_registry(path)
    assert read_registry(path, encoding="utf-16").loc[0, "area_unit"] == "mu"


def test_strict_detection_prefers_utf8(tmp_path):
    # Valid UTF-8 is never re-read as GB18030, even though GB18030 would also decode it.
    text = "plot_id,holder_id,registered_area,area_unit,land_use,source\nP1,B1,1,亩,耕地,确权\n"
    path = tmp_path / "r.csv"
    path.write_text(text, encoding="utf-8")
    assert read_registry(path).loc[0, "source"] == "确权"


HEADER_R = "plot_id,holder_id,registered_area,area_unit,land_use,source\n"
HEADER_D = "borrower_id,plot_id,declared_crop,declared_area,area_unit\n"
HEADER_B = "borrower_id,national_id,name,phone,village\n"
BAD_ID = VALID_IDS[0][:-1] + "5"  # wrong check digit

BAD_TABLES = {
    "missing column": (read_registry, "plot_id,holder_id,registered_area,land_use,source\nP1,B1,1,耕地,x\n", 1, "area_unit", "missing"),
    "unknown unit": (read_registry, HEADER_R + "P1,B1,1,mu,,\nP2,B1,1,acre,,\n", 3, "area_unit", "not a known area unit"),
    "negative area": (read_registry, HEADER_R + "P1,B1,-2,mu,,\n", 2, "registered_area", "positive"),
    "zero area": (read_declarations, HEADER_D + "B1,P1,maize,0,ha\n", 2, "declared_area", "positive"),
    "non-numeric area": (read_registry, HEADER_R + "P1,B1,十,mu,,\n", 2, "registered_area", "not a number"),
    "infinite area": (read_declarations, HEADER_D + "B1,P1,maize,1e400,mu\n", 2, "declared_area", "not a number"),
    "nan area": (read_declarations, HEADER_D + "B1,P1,maize,sNaN,mu\n", 2, "declared_area", "not a number"),
    "duplicate plot": (read_registry, HEADER_R + "P1,B1,1,mu,,\nP2,B1,1,mu,,\nP1,B2,2,mu,,\n", 4, "plot_id", "same as row 2"),
    "duplicate declaration": (read_declarations, HEADER_D + "B1,P1,maize,1,mu\nB1,P1,rice,1,mu\n", 3, "plot_id", "duplicate borrower_id, plot_id"),
    "duplicate borrower": (read_borrowers, HEADER_B + f"B1,{VALID_IDS[0]},王小明,13812345678,村\nB1,{VALID_IDS[1]},李秀英,13912345678,村\n", 3, "borrower_id", "duplicate"),
    "bad check digit": (read_borrowers, HEADER_B + f"B1,{BAD_ID},王小明,13812345678,王家村\n", 2, "national_id", "wrong check digit"),
    "short id": (read_borrowers, HEADER_B + "B1,11010519491231002,王小明,13812345678,王家村\n", 2, "national_id", "18 characters"),
    "empty key": (read_declarations, HEADER_D + " ,P1,maize,1,mu\n", 2, "borrower_id", "empty"),
    "extra field": (read_registry, HEADER_R + "P1,B1,1,mu,,,13812345678\n", 2, "#7", "7 fields"),
}
PERSONAL = ("王小明", "李秀英", "13812345678", "13912345678", BAD_ID, *VALID_IDS, "11010519491231002")


@pytest.mark.parametrize("case", BAD_TABLES)
def test_bad_table_names_file_row_column_and_no_personal_value(tmp_path, case, caplog):
    reader, text, row, column, reason = BAD_TABLES[case]
    path = tmp_path / "table.csv"
    path.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.ERROR), pytest.raises(SchemaError) as info:
        reader(path)
    error = info.value
    line = error.one_line()
    assert line.startswith(f"{path}: row {row}: column {column}: ")
    assert reason in line
    assert f"{path}:{row}:{column}: " in str(error.problems[0])
    for value in PERSONAL:
        assert value not in line and value not in caplog.text


def test_unknown_plots_and_crops(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(HEADER_D + "B1,P1,玉米,1,mu\nB1,P9,maize,1,mu\nB2,P2,cotton,1,mu\n", encoding="utf-8")
    with pytest.raises(SchemaError) as info:
        read_declarations(path, known_plots=["P1", "P2"], known_crops={"maize": "maize", "玉米": "maize", "rice": "rice"})
    assert [(p.row, p.column) for p in info.value.problems] == [(3, "plot_id"), (4, "declared_crop")]
    assert "(and 1 more problems in this file)" in info.value.one_line()
    frame = read_declarations(path, known_plots=None, known_crops=None)
    assert list(frame.declared_crop) == ["玉米", "maize", "cotton"]
    ok = tmp_path / "ok.csv"
    ok.write_text(HEADER_D + "B1,P1,玉米,1,mu\n", encoding="utf-8")
    assert read_declarations(ok, known_plots={"P1"}, known_crops={"玉米": "maize"}).loc[0, "declared_crop"] == "maize"


def test_all_problems_collected_and_logged(tmp_path, caplog):
    path = tmp_path / "r.csv"
    path.write_text(HEADER_R + "P1,B1,-1,acre,,\nP1,,x,mu,,\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="agricredit"), pytest.raises(SchemaError) as info:
        read_registry(path)
    lines = [str(p) for p in info.value.problems]
    assert lines == [
        f"{path}:2:area_unit: not a known area unit (expected one of mu, 亩, ha, hectare, 公顷)",
        f"{path}:2:registered_area: area must be positive",
        f"{path}:3:holder_id: value is empty",
        f"{path}:3:registered_area: area is not a number",
        f"{path}:3:plot_id: duplicate plot_id (same as row 2)",
    ]
    assert [r.getMessage() for r in caplog.records] == lines


def test_borrowers_read_and_id_validity(tmp_path):
    path = write_table(tmp_path / "b.xlsx", BORROWER_ROWS, "xlsx")
    frame = read_borrowers(path)
    assert list(frame.borrower_id) == ["0042", "B001"]
    assert list(frame.national_id) == [VALID_IDS[1], VALID_IDS[0]]
    assert all(national_id_is_valid(v) for v in VALID_IDS)
    assert national_id_is_valid(VALID_IDS[0].lower())
    assert not national_id_is_valid(BAD_ID)
    assert not national_id_is_valid("1101051949123100２X")  # a full-width digit


def test_same_person_twice_is_an_error(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text(HEADER_B + f"B1,{VALID_IDS[0]},a,1,v\nB2,{VALID_IDS[0].lower()},b,2,v\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="row 3: column national_id: the same national_id as row 2"):
        read_borrowers(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="empty"):
        read_registry(empty)
    with pytest.raises(FileNotFoundError, match="nope.csv: file not found"):
        read_registry(tmp_path / "nope.csv")
    header_only = tmp_path / "h.csv"
    header_only.write_text(HEADER_R, encoding="utf-8")
    assert read_registry(header_only).empty


def test_legacy_xls_and_broken_parquet(tmp_path):
    xls = tmp_path / "r.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100))
    with pytest.raises(SchemaError, match="xls"):
        read_registry(xls)
    broken = tmp_path / "r.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(SchemaError, match="Parquet"):
        read_registry(broken)


def test_semicolon_file_gets_a_hint(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(HEADER_R.replace(",", ";") + "P1;B1;1;mu;;\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="comma-separated"):
        read_registry(path)


SAMPLE = __import__("pathlib").Path(__file__).resolve().parents[1] / "sample_tiles"


@pytest.mark.skipif(not (SAMPLE / "borrowers.csv").is_file(), reason="sample_tiles/ tables not built in this checkout")
def test_sample_tables_read_cleanly():
    registry = read_registry(SAMPLE / "registry.csv")
    pd.testing.assert_frame_equal(read_registry(SAMPLE / "registry_gbk.csv"), registry)
    declarations = read_declarations(SAMPLE / "declarations.csv", known_plots=None)
    borrowers = read_borrowers(SAMPLE / "borrowers.csv")
    assert set(declarations.borrower_id) <= set(borrowers.borrower_id)
    assert (registry.registered_mu > 0).all() and (declarations.declared_mu > 0).all()


def test_isolate_keeps_bad_rows_marked_and_the_good_ones_intact(tmp_path):
    bad_check = VALID_IDS[1][:17] + ("5" if VALID_IDS[1][17] != "5" else "6")
    rows = [*BORROWER_ROWS, ["B003", bad_check, "张三", "13700000000", "张庄"]]
    path = write_table(tmp_path / "b.csv", rows, "utf8")
    with pytest.raises(SchemaError, match="row 4: column national_id: national_id has a wrong check digit"):
        read_borrowers(path)
    frame = read_borrowers(path, isolate=True)
    assert list(frame["borrower_id"]) == ["0042", "B001", "B003"]
    assert list(frame["problem"]) == ["", "", "national_id: national_id has a wrong check digit (GB 11643-1999)"]
    assert [str(p) for p in frame.attrs["problems"]] == [
        f"{path}:4:national_id: national_id has a wrong check digit (GB 11643-1999)"]
    assert bad_check not in "".join(frame["problem"])  # the reason never quotes the value

    declarations = tmp_path / "d.csv"
    declarations.write_text(HEADER_D + "B1,P1,maize,1,mu\nB1,P9,maize,1,mu\n", encoding="utf-8")
    frame = read_declarations(declarations, known_plots=["P1"], isolate=True)
    assert list(frame["problem"]) == ["", "plot_id: declaration for a plot that is not in the plot file"]
    assert list(frame["declared_mu"]) == [1.0, 1.0]


def test_isolate_still_raises_on_a_broken_header(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("plot_id,holder_id\nP1,B1\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="required column is missing"):
        read_registry(path, isolate=True)
