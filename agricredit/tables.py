"""Reading the registry, declaration and borrower tables.

Field offices keep these tables in Excel or export them as CSV, often in GBK;
lenders' systems may hand over Parquet. Every reader here accepts all three,
validates the schema and returns a :class:`pandas.DataFrame` with normalised
columns:

* column names stripped and lower-cased; every value stripped of whitespace;
* identifiers kept as text exactly as written (``007`` stays ``007``; an Excel
  number cell ``7.0`` becomes ``7``);
* areas converted to mu in ``registered_mu`` / ``declared_mu`` (1 ha = 15 mu
  exactly, computed in decimal so ``0.1 ha`` is ``1.5`` mu, not
  ``1.5000000000000002``); ``area_unit`` normalised to ``mu`` or ``ha``;
* ``source_row``: the row of the record in the file (header = row 1), so later
  stages can point back at the file;
* rows sorted by the table's key, so the frame does not depend on the row
  order of the file.

Format detection
----------------
The format is taken from the file's first bytes, not its name: ``PK\\x03\\x04``
is an ``.xlsx`` workbook (first sheet, read with openpyxl), ``PAR1`` is Parquet,
anything else is CSV text (comma-separated, ``"`` quoted). CSV text is decoded
**strictly**: UTF-8 (a leading BOM is dropped) and, only if that fails,
GB18030 (a superset of GBK and GB2312). If neither decodes the bytes, an
:class:`~agricredit.errors.EncodingError` names the file and the first byte
offset UTF-8 could not decode. ``encoding=`` overrides the detection.

Errors
------
Every problem of a table is collected. With ``isolate=True`` a problem of a
row does not stop the reading: the row is kept with its first problem in the
``problem`` column (empty for sound rows; areas of a bad row may be NaN) and
every problem is in ``frame.attrs["problems"]``, so the caller can reject or
review that row's records alone (design §9, per-record isolation). A problem
of the header (missing columns) always raises. Otherwise the reader raises one
:class:`~agricredit.errors.SchemaError` about the first problem, saying how
many more there are, and attaches all of them as ``error.problems`` (a list of
:class:`Problem`, each printing as one ``file:row:column: reason`` line). When
there is more than one problem each is also logged on its own line at ERROR
level. Messages name the file, row and column, never a value of the cell:
a misaligned column could put a national ID or a phone where a unit was
expected.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import logging
import math
import operator
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agricredit.errors import EncodingError, InputError, InputNotFoundError, SchemaError
from agricredit.seeds import SLOTS
from agricredit.units import MU_PER_HA

__all__ = [
    "UNIT_ALIASES",
    "REGISTRY_COLUMNS",
    "DECLARATION_COLUMNS",
    "BORROWER_COLUMNS",
    "Problem",
    "RawTable",
    "read_raw_table",
    "add_problem",
    "require_columns",
    "require_values",
    "finish_table",
    "read_registry",
    "read_declarations",
    "read_borrowers",
    "read_labels",
    "declared_crop_by_plot",
    "read_text",
    "national_id_is_valid",
]

logger = logging.getLogger(__name__)

#: Accepted spellings of the area units (compared after strip and lower-case).
UNIT_ALIASES: Mapping[str, str] = {"mu": "mu", "亩": "mu", "ha": "ha", "hectare": "ha", "公顷": "ha"}
_UNIT_FACTOR = {"mu": Decimal(1), "ha": Decimal(MU_PER_HA)}
_UNIT_COLUMN = {unit: k for k, unit in enumerate(_UNIT_FACTOR)}
_UNIT_HELP = "expected one of mu, 亩, ha, hectare, 公顷"

REGISTRY_COLUMNS = ("plot_id", "holder_id", "registered_area", "area_unit", "land_use", "source")
DECLARATION_COLUMNS = ("borrower_id", "plot_id", "declared_crop", "declared_area", "area_unit")
BORROWER_COLUMNS = ("borrower_id", "national_id", "name", "phone", "village")

_UTF8_BOM = codecs.BOM_UTF8
_XLSX_MAGIC = b"PK\x03\x04"
_PARQUET_MAGIC = b"PAR1"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls (and other OLE2 files)

# GB 11643-1999 check digit: weights of the first 17 digits, and the check
# character indexed by (weighted sum mod 11).
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_CHARACTERS = "national_id must be 17 digits and a check digit or X"


@dataclass(frozen=True)
class Problem:
    """One problem of a table: where it is and what is wrong (never the cell's value)."""

    path: str
    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.row}:{self.column}: {self.reason}"


class Problems(tuple):
    """A table's problems, kept in ``frame.attrs``: a tuple that pandas' copy of ``attrs`` at every column access
    shares instead of deep-copying (tens of thousands of bad rows would make each access take seconds)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Problems:
        return self


@dataclass
class RawTable:
    """A table as text: normalised column names and one dict of stripped strings per row."""

    path: Path
    header_row: int
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]
    problems: list[Problem]


# --------------------------------------------------------------------------- #
# Public readers


def read_registry(path: str | os.PathLike[str], encoding: str | None = None, *, isolate: bool = False) -> pd.DataFrame:
    """Read the land registry: one record per plot.

    Parameters
    ----------
    path
        CSV (UTF-8, UTF-8 with BOM, GBK/GB18030), ``.xlsx`` or Parquet file with
        the columns ``plot_id, holder_id, registered_area, area_unit, land_use,
        source`` (more columns are kept).
    encoding
        Text encoding of a CSV file; ``None`` detects it strictly (UTF-8, else
        GB18030).
    isolate
        Keep bad rows, marked in a ``problem`` column, instead of raising (see
        the module notes).

    Returns
    -------
    pandas.DataFrame
        The registry sorted by ``plot_id``, with ``registered_area`` and
        ``registered_mu`` as floats, ``area_unit`` as ``mu``/``ha`` and
        ``source_row``.

    Raises
    ------
    SchemaError
        Missing columns, empty key fields, unknown units, non-numeric or
        non-positive areas, duplicate ``plot_id``.
    EncodingError
        The CSV bytes are neither UTF-8 nor GB18030 (or not ``encoding``).
    """
    raw = read_raw_table(path, encoding)
    require_columns(raw, REGISTRY_COLUMNS)
    values = _Columns(raw)
    values.require(("plot_id", "holder_id"))
    values["registered_mu"] = values.area_to_mu("registered_area")
    values.add_problems()
    _check_unique(raw, ("plot_id",), values)
    return finish_table(raw, REGISTRY_COLUMNS, ("registered_mu",), ("plot_id",), isolate=isolate, values=values)


def read_declarations(
    path: str | os.PathLike[str],
    encoding: str | None = None,
    known_plots: Iterable[str] | None = None,
    known_crops: Iterable[str] | Mapping[str, str] | None = None,
    *,
    isolate: bool = False,
) -> pd.DataFrame:
    """Read the borrowers' declarations: which plot, which crop, how large.

    Parameters
    ----------
    path
        CSV, ``.xlsx`` or Parquet file with the columns ``borrower_id, plot_id,
        declared_crop, declared_area, area_unit`` and an optional ``season``
        (``winter``, ``summer``, ``spring``, ``single`` or empty): a plot cropped
        twice a year may have one row per crop season.
    encoding
        Text encoding of a CSV file; ``None`` detects it strictly.
    known_plots
        If given, the plot ids that exist (e.g. those of the plot file); a
        declaration for any other plot is an error.
    known_crops
        If given, the crops that may be declared. A mapping translates aliases
        to crop codes (e.g. ``{"玉米": "maize", "maize": "maize"}``, see
        :func:`agricredit.seeds.load_crops`); ``declared_crop`` then holds the
        code. Crops are compared after strip and lower-case.
    isolate
        Keep bad rows, marked in a ``problem`` column, instead of raising.

    Returns
    -------
    pandas.DataFrame
        The declarations sorted by ``(borrower_id, plot_id)``, with
        ``declared_area`` and ``declared_mu`` as floats and ``source_row``.

    Raises
    ------
    SchemaError
        As :func:`read_registry`, plus duplicate ``(borrower_id, plot_id[, season])``,
        unknown plots and unknown crops.
    EncodingError
        The CSV bytes cannot be decoded.
    """
    raw = read_raw_table(path, encoding)
    require_columns(raw, DECLARATION_COLUMNS)
    plots = None if known_plots is None else {str(p) for p in known_plots}
    crops = _crop_lookup(known_crops)
    values = _Columns(raw)
    values.require(("borrower_id", "plot_id", "declared_crop"))
    values["declared_mu"] = values.area_to_mu("declared_area")
    if plots is not None:
        values.flag("plot_id", [bool(p) and p not in plots for p in values["plot_id"]],
                    "declaration for a plot that is not in the plot file")
    lowered = [crop.lower() for crop in values["declared_crop"]]  # empty stays empty (reported above)
    if crops is not None:
        known = ", ".join(sorted(set(crops.values())))
        values.flag("declared_crop", [bool(crop) and crop not in crops for crop in lowered],
                    f"not a known crop (known: {known})")
        lowered = [crops.get(crop, crop) if crop else crop for crop in lowered]
    values["declared_crop"] = lowered
    if "season" in raw.columns:  # optional: one row per crop season of a double-cropped plot
        values["season"] = [slot.strip().lower() for slot in values["season"]]
        values.flag("season", [bool(slot) and slot not in SLOTS for slot in values["season"]],
                    f"not a season slot (one of {', '.join(SLOTS)}, or empty)")
    values.add_problems()
    key = ("borrower_id", "plot_id", "season") if "season" in raw.columns else ("borrower_id", "plot_id")
    _check_unique(raw, key, values)
    return finish_table(raw, DECLARATION_COLUMNS, ("declared_mu",), key, isolate=isolate, values=values)


def read_borrowers(path: str | os.PathLike[str], encoding: str | None = None, *, isolate: bool = False) -> pd.DataFrame:
    """Read the borrower table (personal data: see :mod:`agricredit.privacy`).

    Parameters
    ----------
    path
        CSV, ``.xlsx`` or Parquet file with the columns ``borrower_id,
        national_id, name, phone, village``.
    encoding
        Text encoding of a CSV file; ``None`` detects it strictly.
    isolate
        Keep bad rows, marked in a ``problem`` column, instead of raising.

    Returns
    -------
    pandas.DataFrame
        The borrowers sorted by ``borrower_id``; ``national_id`` with an
        upper-case ``X`` check character; ``source_row``.

    Raises
    ------
    SchemaError
        Missing columns, empty ``borrower_id``/``national_id``, a national ID
        of the wrong length or with a wrong GB 11643-1999 check digit,
        duplicate ``borrower_id``, the same national ID under two borrower ids.
        Messages never hold the ID, name or phone.
    EncodingError
        The CSV bytes cannot be decoded.
    """
    raw = read_raw_table(path, encoding)
    require_columns(raw, BORROWER_COLUMNS)
    values = _Columns(raw)
    values.require(("borrower_id", "national_id"))
    values["national_id"] = [nid.upper() for nid in values["national_id"]]
    values.flag_each("national_id", [reason if nid else None for nid, reason in
                                     zip(values["national_id"], _national_id_problems(values["national_id"]))])
    values.add_problems()
    _check_unique(raw, ("borrower_id",), values)
    _check_unique(raw, ("national_id",), values, what="the same national_id as row {first}")
    return finish_table(raw, BORROWER_COLUMNS, (), ("borrower_id",), isolate=isolate, values=values)


def read_labels(path: str | os.PathLike[str], label_field: str = "crop", encoding: str | None = None) -> pd.DataFrame:
    """Read field-visit labels for training the crop classifier.

    Parameters
    ----------
    path
        CSV, ``.xlsx`` or Parquet file with ``plot_id`` and the label column
        (more columns are kept, e.g. a grouping column such as ``borrower_id``).
    label_field
        The label column (matched after strip and lower-case, like every column name).
    encoding
        Text encoding of a CSV file; ``None`` detects it strictly.

    Returns
    -------
    pandas.DataFrame
        Sorted by ``plot_id``, with ``source_row``. A row with an empty label
        is kept (the plot is unlabelled).

    Raises
    ------
    SchemaError
        Missing columns, an empty or duplicate ``plot_id``.
    EncodingError
        The CSV bytes cannot be decoded.
    """
    columns = ("plot_id", label_field.strip().lower())
    raw = read_raw_table(path, encoding)
    require_columns(raw, columns)
    for row, rec in raw.rows:
        require_values(raw, row, rec, ("plot_id",))
    _check_unique(raw, ("plot_id",))
    return finish_table(raw, columns, (), ("plot_id",))


def declared_crop_by_plot(
    declarations: pd.DataFrame,
    borrower_of: Mapping[str, str] | None = None,
    plot_ids: Iterable[str] | None = None,
) -> dict[str, str]:
    """``plot_id`` → declared crop, from :func:`read_declarations`' frame.

    A plot declared by one borrower takes that declaration. A plot declared by
    several borrowers takes the declaration of the borrower ``borrower_of``
    names for it (the plot file's ``borrower_id``).

    Parameters
    ----------
    declarations
        As :func:`read_declarations` returns.
    borrower_of
        ``plot_id`` → the borrower who holds the plot, if known.
    plot_ids
        If given, only these plots (declarations of other plots are ignored).

    Returns
    -------
    dict
        One entry per declared plot, in plot order.

    Raises
    ------
    SchemaError
        A plot declared by several borrowers, none of them the plot's borrower
        (or the plot's borrower is not known); the error names the row, not the borrowers.
    """
    source = declarations.attrs.get("source")
    borrower_of = {str(k): str(v) for k, v in (borrower_of or {}).items()}
    if plot_ids is not None:
        declarations = declarations.loc[declarations["plot_id"].isin({str(p) for p in plot_ids})]
    result: dict[str, str] = {}
    for plot_id, group in declarations.groupby("plot_id", sort=True):
        if len(group) > 1:
            group = group.loc[group["borrower_id"] == borrower_of.get(str(plot_id))]
            if len(group) != 1:
                first, second = sorted(declarations.loc[declarations["plot_id"] == plot_id, "source_row"])[:2]
                why = ("the plot's borrower_id is not among them" if str(plot_id) in borrower_of
                       else "give the plot file a borrower_id column to choose")
                raise SchemaError(f"plot {plot_id} is declared by several borrowers (rows {first} and {second}); {why}",
                                  path=source, record=f"row {second}")
        result[str(plot_id)] = str(group["declared_crop"].iloc[0])
    return result


def national_id_is_valid(value: str) -> bool:
    """Return whether ``value`` is an 18-character GB 11643-1999 ID with a correct check digit."""
    return _national_id_problems([value.strip().upper()])[0] is None


def read_text(path: str | os.PathLike[str], encoding: str | None = None) -> str:
    """Return the text of a file decoded strictly (UTF-8 with or without BOM, else GB18030).

    Parameters
    ----------
    path
        The file.
    encoding
        A Python codec name to use instead of the detection.

    Raises
    ------
    EncodingError
        The bytes do not decode; the message names the file and byte offset.
    """
    return _decode(_read_bytes(Path(path)), Path(path), encoding)


# --------------------------------------------------------------------------- #
# Reading any format into a RawTable


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise InputNotFoundError("file not found", path=path) from error
    except IsADirectoryError as error:
        raise InputError("is a folder, expected a table file", path=path) from error
    except OSError as error:
        raise InputNotFoundError(f"cannot read: {error.strerror}", path=path) from error


def _decode(data: bytes, path: Path, encoding: str | None) -> str:
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError as error:
            raise InputError(f"unknown text encoding {encoding!r}", path=path) from error
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as error:
            raise EncodingError(f"not valid {encoding} ({error.reason})", path=path, record=f"byte {error.start}") from error
    offset = 0
    if data.startswith(_UTF8_BOM):
        data, offset = data[len(_UTF8_BOM) :], len(_UTF8_BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError as gb_error:
            hint = " (it starts like UTF-16: save it as CSV UTF-8)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
            raise EncodingError(
                f"neither UTF-8 ({utf8_error.reason}) nor GB18030 (fails at byte {gb_error.start + offset}){hint}; "
                "give the encoding explicitly",
                path=path,
                record=f"byte {utf8_error.start + offset}",
            ) from utf8_error
        if _reads_as_big5(data, text):
            raise EncodingError("looks like Big5 (Traditional Chinese), not GBK/GB18030: read as GB18030 most of its "
                                "characters are rare ones; save it as UTF-8 or give the encoding (big5)", path=path)
        logger.info("%s: not UTF-8 (byte %d), read as GB18030", path, utf8_error.start + offset)
        return text


#: Share of non-ASCII characters outside GB2312 above which GB18030 text is taken for misread Big5.
_BIG5_RARE_SHARE = 0.3


def _reads_as_big5(data: bytes, text: str) -> bool:
    """True when ``data`` is valid Big5 and its GB18030 reading ``text`` is mostly rare characters.

    GB18030 decodes almost any byte string, so Big5 bytes come out as
    "text": rare hanzi, kana and box-drawing signs outside GB2312 (the 6,763
    common simplified characters), where real GBK tables are almost all
    inside it. The error then names the encoding rather than a column.
    """
    try:
        data.decode("big5")
    except UnicodeDecodeError:
        return False
    wide = [c for c in text if ord(c) > 0x7F]
    rare = 0
    for character in wide:
        try:
            character.encode("gb2312")
        except UnicodeEncodeError:
            rare += 1
    return bool(wide) and rare > _BIG5_RARE_SHARE * len(wide)


def read_raw_table(path: str | os.PathLike[str], encoding: str | None) -> RawTable:
    """Read a CSV (UTF-8 or GBK, or ``encoding``) or XLSX table as text, for the ``require_*`` checks.

    Raises
    ------
    InputNotFoundError, EncodingError, SchemaError
        The file is missing, not in a known encoding, or has no header.
    """
    path = Path(path)
    data = _read_bytes(path)
    if data.startswith(_XLSX_MAGIC):
        header_row, header, records = _records_xlsx(path)
    elif data.startswith(_OLE_MAGIC):
        raise SchemaError("legacy Excel .xls workbooks are not supported: save the sheet as .xlsx or CSV", path=path)
    elif data.startswith(_PARQUET_MAGIC):
        header_row, header, records = _records_parquet(path)
    else:
        header_row, header, records = _records_csv(_decode(data, path, encoding), path)
    if header is None:
        raise SchemaError("the table is empty (no header row)", path=path)
    return _to_raw(path, header_row, header, records)


def _records_csv(text: str, path: Path) -> tuple[int, list[str] | None, list[tuple[int, list[str]]]]:
    """Parse CSV text into (header row, header, [(row, cells)]), rows as line numbers of the file."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_row = 0
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            if header is None:
                if any(c.strip() for c in cells):
                    header, header_row = cells, start
            else:
                records.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as error:
        raise SchemaError(f"CSV syntax error ({error})", path=path, record=f"row {reader.line_num}") from error
    return header_row, header, records


def _records_xlsx(path: Path) -> tuple[int, list[str] | None, list[tuple[int, list[str]]]]:
    import openpyxl  # imported lazily: only needed for workbooks

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many types for a damaged workbook
        raise SchemaError(f"cannot read the Excel workbook ({type(error).__name__})", path=path) from error
    try:
        sheet = workbook.worksheets[0]
        header: list[str] | None = None
        header_row = 0
        records: list[tuple[int, list[str]]] = []
        for row_number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            cells = [_excel_text(v) for v in values]
            if header is None:
                if any(cells):
                    header, header_row = cells, row_number
            else:
                records.append((row_number, cells))
    finally:
        workbook.close()
    return header_row, header, records


def _excel_text(value: object) -> str:
    """Cell value as text: integral numbers without ``.0``, floats by shortest repr."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).upper()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _records_parquet(path: Path) -> tuple[int, list[str] | None, list[tuple[int, list[str]]]]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        columns = []
        for column in table.columns:
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            columns.append(pc.fill_null(pc.cast(column, pa.string()), "").to_pylist())
    except (pa.ArrowException, OSError) as error:
        raise SchemaError(f"cannot read the Parquet file ({type(error).__name__})", path=path) from error
    # Parquet has no header line; rows are numbered as if it had one (header = row 1).
    records = [(i + 2, list(cells)) for i, cells in enumerate(zip(*columns))]
    return 1, list(table.column_names), records


def _to_raw(path: Path, header_row: int, header: list[str], records: list[tuple[int, list[str]]]) -> RawTable:
    raw = RawTable(path=path, header_row=header_row, columns=[], rows=[], problems=[])
    names = [str(h).strip().lower() for h in header]
    # Trailing unnamed columns (an Excel sheet's used range, a trailing comma) are dropped if empty.
    while names and not names[-1] and all(len(c) < len(names) or not c[len(names) - 1].strip() for _, c in records):
        names.pop()
    seen: set[str] = set()
    for index, name in enumerate(names, start=1):
        if not name:
            add_problem(raw, header_row, f"#{index}", "column has no name in the header")
        elif name in seen:
            add_problem(raw, header_row, name, "column name appears twice in the header")
        seen.add(name)
    raw.columns = names
    width = len(names)
    rows = raw.rows
    for row, cells in records:
        cells = list(map(str.strip, cells))
        if not any(cells):
            continue  # blank line / empty sheet row
        if len(cells) != width:
            if len(cells) > width and any(cells[width:]):
                add_problem(raw, row, f"#{width + 1}", f"row has {len(cells)} fields, the header has {width}")
            cells = cells[:width] + [""] * (width - len(cells))
        rows.append((row, dict(zip(names, cells))))
    return raw


# --------------------------------------------------------------------------- #
# Validation helpers


def add_problem(raw: RawTable, row: int, column: str, reason: str) -> None:
    """Record a problem of ``raw`` at ``row`` / ``column``: raised or isolated by :func:`finish_table`."""
    raw.problems.append(Problem(str(raw.path), row, column, reason))


def require_columns(raw: RawTable, required: Iterable[str]) -> None:
    """Record each missing column (with a hint for a file not separated by commas); raise if the header is broken."""
    for name in required:
        if name not in raw.columns:
            hint = ""
            if len(raw.columns) == 1 and any(sep in raw.columns[0] for sep in ";\t|"):
                hint = " (the header has one column: is the file comma-separated?)"
            add_problem(raw, raw.header_row, name, f"required column is missing{hint}")
    if any(p.row == raw.header_row for p in raw.problems):  # rows cannot be checked against a broken header
        _raise(raw)


def require_values(raw: RawTable, row: int, rec: dict[str, str], columns: Iterable[str]) -> None:
    """Record a problem for each of ``columns`` empty in the record ``rec`` of ``row``."""
    for name in columns:
        if not rec[name]:
            add_problem(raw, row, name, "value is empty")


class _Columns(dict):
    """The columns of a table's rows as lists or arrays (a column is taken from ``raw.rows`` when first asked for),
    checked and normalised column by column, with the problems found.

    :meth:`add_problems` adds the problems to the table in the order a row-by-row reading finds them: by row, and
    within a row in the order of the checks (a check is one call of :meth:`flag`, :meth:`flag_each` or
    :meth:`flag_at`, one column of :meth:`require`, the unit then the area of :meth:`area_to_mu`).
    """

    def __init__(self, raw: RawTable) -> None:
        super().__init__()
        self.raw = raw
        self.rows = [row for row, _ in raw.rows]
        self._found: list[tuple[int, int, str, str]] = []  # (position, check, column, reason)
        self._checks = 0

    def __missing__(self, name: str) -> list[Any]:
        values = self[name] = [rec[name] for _, rec in self.raw.rows]
        return values

    def flag_each(self, column: str, reasons: Sequence[str | None]) -> None:
        """One check of ``column``: the problem of each row, or None."""
        check, self._checks = self._checks, self._checks + 1
        self._found.extend((i, check, column, reasons[i]) for i in itertools.compress(itertools.count(), reasons))

    def flag(self, column: str, where: Iterable[Any], reason: str) -> None:
        """One check of ``column``: ``reason`` at the rows where ``where`` is true."""
        check, self._checks = self._checks, self._checks + 1
        self._found.extend((i, check, column, reason) for i in itertools.compress(itertools.count(), where))

    def flag_at(self, column: str, codes: np.ndarray, reasons: Sequence[str | None]) -> None:
        """One check of ``column``: the problem of each row is ``reasons[codes[row]]`` (None for none)."""
        check, self._checks = self._checks, self._checks + 1
        bad = np.array([bool(reason) for reason in reasons], dtype=bool)
        self._found.extend((i, check, column, reasons[codes[i]]) for i in np.flatnonzero(bad[codes]).tolist())

    def require(self, columns: Iterable[str]) -> None:
        """A problem for each of ``columns`` empty in a row (as :func:`require_values`)."""
        for name in columns:
            self.flag(name, map(operator.not_, self[name]), "value is empty")

    def area_to_mu(self, area_column: str) -> np.ndarray:
        """Check ``area_column`` and ``area_unit``; the areas become floats, the units ``mu``/``ha`` (an unknown
        one stays as written); returns the areas in mu (NaN if bad). Each distinct text is read once."""
        unit_codes, unit_texts = pd.factorize(np.asarray(self["area_unit"], dtype=object))
        units = [UNIT_ALIASES.get(text.lower()) for text in unit_texts]
        self.flag_at("area_unit", unit_codes,
                     [None if unit else f"{'not a known area unit' if text else 'value is empty'} ({_UNIT_HELP})"
                      for unit, text in zip(units, unit_texts)])
        self["area_unit"] = np.array([unit or text for unit, text in zip(units, unit_texts)], dtype=object)[unit_codes]
        area_codes, area_texts = pd.factorize(np.asarray(self[area_column], dtype=object))
        measured = [_area_in_mu(text) for text in area_texts]
        self.flag_at(area_column, area_codes, [why for _, _, why in measured])
        self[area_column] = np.array([value for value, _, _ in measured], dtype=float)[area_codes]
        in_mu = np.array([mu for _, mu, _ in measured], dtype=float).reshape(-1, len(_UNIT_FACTOR))[area_codes]
        unit_at = np.array([_UNIT_COLUMN.get(unit, -1) for unit in units], dtype=int)[unit_codes]  # -1: unknown
        return np.where(unit_at >= 0, in_mu[np.arange(len(unit_at)), np.maximum(unit_at, 0)], np.nan)

    def add_problems(self) -> None:
        """Add the problems found to the table (see the class notes), and forget them."""
        for position, _, column, reason in sorted(self._found, key=lambda found: found[:2]):
            add_problem(self.raw, self.rows[position], column, reason)
        self._found = []


def _area_in_mu(text: str) -> tuple[float, tuple[float, ...], str | None]:
    """An area cell as written (a float, NaN if not a number), in mu if its unit is each of :data:`_UNIT_FACTOR`'s
    (NaN if bad), and its problem (None if sound)."""
    try:
        area = Decimal(text)
        value = float(area)
    except (InvalidOperation, ValueError):  # ValueError: a signalling NaN
        value = math.nan
    not_in_mu = (math.nan,) * len(_UNIT_FACTOR)
    if not math.isfinite(value):
        return value, not_in_mu, "value is empty" if not text else "area is not a number"
    if value <= 0:
        return value, not_in_mu, "area must be positive"
    return value, tuple(float(area * factor) for factor in _UNIT_FACTOR.values()), None


def _check_unique(raw: RawTable, key: tuple[str, ...], values: _Columns | None = None,
                  what: str = "duplicate {key} (same as row {first})") -> None:
    """A problem at each row whose ``key`` (all values non-empty; an empty one is reported already) is that of an
    earlier row, naming the first; on the values of ``values`` (default: the rows')."""
    values = values if values is not None else _Columns(raw)
    frame = pd.DataFrame({str(k): values[name] for k, name in enumerate(key)}, dtype=object)
    complete = np.flatnonzero(frame.ne("").all(axis=1).to_numpy())
    keyed = frame.iloc[complete]
    if not keyed.duplicated().any():
        return
    group = keyed.groupby(list(keyed.columns), sort=False).ngroup().to_numpy()  # numbered by first appearance
    first = np.unique(group, return_index=True)[1]  # each group's first position in ``keyed``
    for at in np.flatnonzero(np.arange(len(group)) != first[group]).tolist():
        add_problem(raw, values.rows[complete[at]], key[-1],
                    what.format(key=", ".join(key), first=values.rows[complete[first[group[at]]]]))


def _national_id_problems(ids: Sequence[str]) -> list[str | None]:
    """What is wrong with each (upper-case) national ID, or None: its length, its characters, its GB 11643-1999
    check digit (the 18-character ASCII ones checked as one byte array)."""
    problems: list[str | None] = [None if len(nid) == 18 else f"national_id must have 18 characters, it has {len(nid)}"
                                  for nid in ids]
    ascii18 = []
    for i, nid in enumerate(ids):
        if len(nid) == 18:
            if nid.isascii():
                ascii18.append(i)
            else:
                problems[i] = _ID_CHARACTERS
    if not ascii18:
        return problems
    codes = np.frombuffer("".join(ids[i] for i in ascii18).encode("ascii"), dtype=np.uint8).reshape(-1, 18)
    digits = codes[:, :17].astype(np.int64) - ord("0")
    well_formed = ((digits >= 0) & (digits <= 9)).all(axis=1) & np.isin(codes[:, 17], list(b"0123456789X"))
    check = np.frombuffer(_ID_CHECK.encode("ascii"), dtype=np.uint8)[(digits @ np.array(_ID_WEIGHTS)) % 11]
    for at, shape_ok, check_ok in zip(ascii18, well_formed.tolist(), (check == codes[:, 17]).tolist()):
        if not shape_ok:
            problems[at] = _ID_CHARACTERS
        elif not check_ok:
            problems[at] = "national_id has a wrong check digit (GB 11643-1999)"
    return problems


def _crop_lookup(known_crops: Iterable[str] | Mapping[str, str] | None) -> dict[str, str] | None:
    if known_crops is None:
        return None
    if isinstance(known_crops, Mapping):
        return {str(k).strip().lower(): str(v) for k, v in known_crops.items()}
    return {str(c).strip().lower(): str(c).strip().lower() for c in known_crops}


#: Problems of one file listed on the log; the rest are counted (all are in ``error.problems``).
MAX_LOGGED_PROBLEMS = 20


def _raise(raw: RawTable) -> None:
    problems = sorted(raw.problems, key=lambda p: p.row)  # stable: file order of columns within a row
    if len(problems) > 1:
        for problem in problems[:MAX_LOGGED_PROBLEMS]:
            logger.error("%s", problem)
        if len(problems) > MAX_LOGGED_PROBLEMS:
            logger.error("%s: %d more problems not listed", raw.path, len(problems) - MAX_LOGGED_PROBLEMS)
    first = problems[0]
    more = f" (and {len(problems) - 1} more problems in this file)" if len(problems) > 1 else ""
    error = SchemaError(f"column {first.column}: {first.reason}{more}", path=raw.path, record=f"row {first.row}")
    error.problems = problems  # type: ignore[attr-defined]
    raise error


def finish_table(
    raw: RawTable, columns: tuple[str, ...], added: tuple[str, ...], key: tuple[str, ...], *, isolate: bool = False,
    values: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
) -> pd.DataFrame:
    """Raise the collected problems (unless ``isolate``), or build the frame: known columns, added, extras, source_row.

    ``values``: column → its values (a list or an array), one per row of ``raw.rows``, instead of the rows' own
    (checked column by column); the added columns are taken from it, or else from the rows.
    """
    if raw.problems and not isolate:
        _raise(raw)
    first_problem: dict[int, str] = {}
    for problem in sorted(raw.problems, key=lambda p: p.row):
        logger.warning("%s", problem)
        first_problem.setdefault(problem.row, f"{problem.column}: {problem.reason}")
    if not raw.rows:
        logger.warning("%s: the table has no rows", raw.path)
    extras = [c for c in raw.columns if c not in columns]
    order = [*columns, *added, *extras]
    values = values or {}
    data: dict[str, Any] = {name: values[name] if name in values else [rec[name] for _, rec in raw.rows]
                            for name in order}
    data["source_row"] = [row for row, _ in raw.rows]
    numeric = {name for name in (*columns, *added) if name.endswith(("_area", "_mu"))}
    dtypes = {name: ("float64" if name in numeric else str) for name in order}
    frame = pd.DataFrame(data).astype({**dtypes, "source_row": "int64"})
    if isolate:
        frame["problem"] = [first_problem.get(row, "") for row, _ in raw.rows]
        frame.attrs["problems"] = Problems(sorted(raw.problems, key=lambda p: p.row))
    frame = frame.sort_values(list(key), kind="stable", ignore_index=True)
    frame.attrs["source"] = str(raw.path)
    return frame

