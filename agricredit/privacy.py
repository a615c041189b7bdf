"""Keeping personal data out of outputs, logs and errors.

Borrowers appear in outputs only as keyed pseudonyms: ``HMAC-SHA256(key, kind
+ "\\x1f" + value)``, truncated to 64 bits and written as ``b_`` + 16 hex
characters (the prefix is the first letter of the kind: ``b_`` borrower,
``h_`` holder). A plain hash would not do: an 18-digit national ID has only
about 10^11 plausible values per county and birth year, and a borrower id like
``B001`` far fewer, so anyone could hash them all. With a secret key the
pseudonyms cannot be reversed or linked without the key.

Collisions: with 64-bit pseudonyms the chance that any two of ``n`` values
share one is about ``n² / 2^65``: 2.7e-10 for a county of 100 000 borrowers,
2.7e-8 for a million. :func:`pseudonymise_borrowers` checks anyway and raises
rather than merge two borrowers.

The key comes from the environment variable ``AGRICREDIT_PII_KEY`` (UTF-8
text, at least 16 bytes), see :meth:`PseudonymKey.from_env`. Without it the
tool refuses to run unless an ephemeral key is asked for (pseudonyms then
change every run). The bundled sample run uses :data:`DEMO_PII_KEY`, which is
public and **must never be used for real borrowers**: it is refused unless the
run is on the sample (``--sample``).

Outputs: each output's fields are an allow-list (:data:`OUTPUT_FIELDS`,
:func:`check_allowed_fields`); :func:`agricredit.outputs.staged_outputs` has the outputs
written into a staging folder, :meth:`PersonalDataGuard.check_folder` scans them
(whole field values and whole tokens against the borrower table, read as a
stream) and publishes them by rename only if nothing is found.

Other guards: :func:`escape_csv_cell` (spreadsheet formula injection),
:func:`find_pii` (the same scan on a text), :func:`redact` and the
:class:`RedactPII` logging filter (masks ID and phone patterns in log records).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agricredit.errors import PrivacyError
from agricredit.schema import ALERT_FIELDS, BORROWER_FIELDS, PLOT_FIELDS, RECOMMENDATION_FIELDS, SERIES_FIELDS

__all__ = [
    "KEY_ENV_VAR",
    "MIN_KEY_BYTES",
    "DEMO_PII_KEY",
    "PseudonymKey",
    "secret_from_env",
    "pseudonym",
    "pseudonymise_borrowers",
    "BORROWER_OUTPUT_COLUMNS",
    "escape_csv_cell",
    "escape_csv_frame",
    "OUTPUT_FIELDS",
    "check_allowed_fields",
    "Finding",
    "PersonalDataGuard",
    "find_pii",
    "redact",
    "RedactPII",
    "install_redaction",
]

logger = logging.getLogger(__name__)

#: The environment variable holding the pseudonym key.
KEY_ENV_VAR = "AGRICREDIT_PII_KEY"
#: Shortest accepted key, in UTF-8 bytes.
MIN_KEY_BYTES = 16
#: The key of the bundled sample run. It is published in the source code, so
#: pseudonyms made with it protect nothing: FOR THE SAMPLE DATA ONLY, NOT FOR PRODUCTION.
DEMO_PII_KEY = "agricredit-sample-demo-key-NOT-FOR-PRODUCTION"

#: Columns :func:`pseudonymise_borrowers` lets through (an allow-list).
BORROWER_OUTPUT_COLUMNS = ("pseudonym", "village")

_FIELD_SEPARATOR = "\x1f"  # ASCII unit separator: cannot occur in a kind
_PSEUDONYM_HEX = 16  # 64 bits


@dataclass(frozen=True)
class PseudonymKey:
    """A secret key for pseudonyms, and where it came from.

    Build it with :meth:`from_env`, :meth:`ephemeral` or :meth:`demo`; the
    secret never appears in ``repr`` and is not meant to be read.

    Attributes
    ----------
    source
        ``"environment"``, ``"ephemeral"`` or ``"demo"`` (the public demo key, accepted only for the sample).
    """

    secret: bytes = field(repr=False)
    source: str

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise PrivacyError(f"the pseudonym key is too short: at least {MIN_KEY_BYTES} bytes are needed")

    @classmethod
    def from_env(cls, *, allow_ephemeral: bool = False, sample: bool = False,
                 environ: Mapping[str, str] | None = None) -> PseudonymKey:
        """Return the key from ``AGRICREDIT_PII_KEY``.

        Parameters
        ----------
        allow_ephemeral
            If the variable is not set, return :meth:`ephemeral` instead of
            refusing (the CLI's ``--ephemeral-key``).
        sample
            The run is on the bundled sample (``--sample``): the public
            :data:`DEMO_PII_KEY` is accepted (source ``"demo"``).
        environ
            The environment to read (default ``os.environ``).

        Raises
        ------
        PrivacyError
            The variable is not set (and no ephemeral key is allowed), its
            value is shorter than 16 bytes in UTF-8, or it is the public demo
            key outside the sample.
        """
        found = secret_from_env(KEY_ENV_VAR, DEMO_PII_KEY, sample=sample, environ=environ)
        if found is not None:
            return cls.demo() if found[1] == "demo" else cls(*found)
        if allow_ephemeral:
            return cls.ephemeral()
        raise PrivacyError(
            f"no pseudonym key: set {KEY_ENV_VAR} (at least {MIN_KEY_BYTES} bytes of secret text), "
            "or ask for an ephemeral key (pseudonyms will then differ every run)"
        )

    @classmethod
    def ephemeral(cls) -> PseudonymKey:
        """Return a random key for this run only (logs a warning: pseudonyms will not be stable)."""
        logger.warning(
            "using an ephemeral pseudonym key: borrower pseudonyms will differ in every run; set %s for stable ones",
            KEY_ENV_VAR,
        )
        return cls(secrets.token_bytes(32), "ephemeral")

    @classmethod
    def demo(cls) -> PseudonymKey:
        """Return the public demo key of the sample run (logs a warning: not for real borrowers)."""
        logger.warning("using the public demo pseudonym key: for the sample data only, never for real borrowers")
        return cls(DEMO_PII_KEY.encode("utf-8"), "demo")

    @property
    def fingerprint(self) -> str:
        """A short public tag of the key (to record in audit files which key made the pseudonyms)."""
        return hmac.new(self.secret, b"agricredit key fingerprint", hashlib.sha256).hexdigest()[:12]


def secret_from_env(variable: str, demo_value: str, *, sample: bool = False,
                    environ: Mapping[str, str] | None = None) -> tuple[bytes, str] | None:
    """Read a secret key from an environment variable (the pseudonym key, the audit key).

    Parameters
    ----------
    variable
        The variable's name.
    demo_value
        The public demo key of the bundled sample for this variable.
    sample
        The run is on the bundled sample: ``demo_value`` is accepted.
    environ
        The environment to read (default ``os.environ``).

    Returns
    -------
    tuple or None
        ``(secret bytes, source)`` with source ``"environment"`` or ``"demo"``;
        ``None`` when the variable is not set.

    Raises
    ------
    PrivacyError
        The value is shorter than :data:`MIN_KEY_BYTES` in UTF-8, or it is the
        public demo key and ``sample`` is false (the key is printed in the
        README: pseudonyms or audit seals made with it protect nothing).
    """
    value = (os.environ if environ is None else environ).get(variable)
    if value is None:
        return None
    secret = value.encode("utf-8")
    if value == demo_value:
        if not sample:
            raise PrivacyError(f"{variable} holds the public demo key, accepted only with --sample: "
                               "set a secret of your own for real borrowers")
        return secret, "demo"
    if len(secret) < MIN_KEY_BYTES:
        raise PrivacyError(f"{variable} is too short: {len(secret)} bytes, at least {MIN_KEY_BYTES} are needed")
    return secret, "environment"


def pseudonym(key: PseudonymKey, kind: str, value: str) -> str:
    """Return the keyed pseudonym of ``value``.

    Parameters
    ----------
    key
        The secret key.
    kind
        What the value identifies: ``"borrower"``, ``"holder"`` ... (lower-case
        letters and underscores). The same value gets unrelated pseudonyms
        under different kinds.
    value
        The identifier, as text (normalise it first: ``" B001"`` and ``"B001"``
        differ).

    Returns
    -------
    str
        ``kind[0] + "_"`` and 16 hex characters of
        ``HMAC-SHA256(key, kind + "\\x1f" + value)``, e.g. ``b_3f9c0a7e12d45b68``.
    """
    if not re.fullmatch(r"[a-z][a-z_]*", kind):
        raise ValueError(f"pseudonym kind must be lower-case letters, got {kind!r}")
    if not isinstance(value, str):
        raise TypeError(f"pseudonym value must be str, got {type(value).__name__}")
    message = (kind + _FIELD_SEPARATOR + value).encode("utf-8")
    digest = hmac.new(key.secret, message, hashlib.sha256).hexdigest()
    return f"{kind[0]}_{digest[:_PSEUDONYM_HEX]}"


def pseudonymise_borrowers(borrowers: pd.DataFrame, key: PseudonymKey) -> pd.DataFrame:
    """Replace the borrower table by pseudonyms and the allow-listed columns.

    The pseudonym is that of ``borrower_id`` (kind ``"borrower"``), so other
    tables keyed by ``borrower_id`` (declarations, plots) get the same one with
    ``pseudonym(key, "borrower", borrower_id)``.

    Parameters
    ----------
    borrowers
        A frame from :func:`agricredit.tables.read_borrowers`.
    key
        The pseudonym key.

    Returns
    -------
    pandas.DataFrame
        Only :data:`BORROWER_OUTPUT_COLUMNS` (``pseudonym``, ``village``),
        sorted by pseudonym (so the row order does not leak the ids' order).

    Raises
    ------
    PrivacyError
        Two different borrower ids got the same pseudonym (see the module
        notes on collisions).
    """
    ids = borrowers["borrower_id"].astype(str)
    out = pd.DataFrame(
        {
            "pseudonym": [pseudonym(key, "borrower", v) for v in ids.tolist()],
            "village": borrowers["village"].astype(str).to_numpy() if "village" in borrowers else "",
        }
    )
    if out["pseudonym"].nunique() != ids.nunique():
        raise PrivacyError("two borrower ids share a pseudonym (a 64-bit collision); use another key")
    return out[list(BORROWER_OUTPUT_COLUMNS)].sort_values("pseudonym", ignore_index=True)


# --------------------------------------------------------------------------- #
# CSV formula injection

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def escape_csv_cell(value: Any) -> Any:
    """Make a cell safe to open in a spreadsheet (OWASP CSV injection guidance).

    A string starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return is
    prefixed with ``'`` so that spreadsheets show it as text instead of running
    it as a formula. Non-strings (numbers, ``None``) and strings that are a
    plain number (``"-12.5"``) are returned unchanged: they are not formulas.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def escape_csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``frame`` with :func:`escape_csv_cell` applied to its text cells (and column names)."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_numeric_dtype(column) or not _may_hold_formulas(column):
            continue
        out[name] = column.map(escape_csv_cell)
    out.columns = [escape_csv_cell(c) for c in out.columns]
    return out


def _may_hold_formulas(column: pd.Series) -> bool:
    """Whether a cell of ``column`` may be text starting as a formula does (a whole text column is checked at
    once; a column of other values, cell by cell)."""
    try:
        starts = column.str.startswith(_FORMULA_START)
    except (AttributeError, TypeError):  # not text: let escape_csv_cell judge each cell
        return True
    return bool(starts.fillna(False).to_numpy(dtype=bool).any())


# --------------------------------------------------------------------------- #
# Output allow-lists

#: The fields each output of ``assess`` may carry: columns of ``borrowers.csv``,
#: feature properties of the GeoJSON files, top-level keys of audit records and
#: of the manifest. Anything else is refused by :func:`check_allowed_fields`
#: before it is written: a new output field is added here, on purpose.
OUTPUT_FIELDS: dict[str, frozenset[str]] = {
    # The tables (every format: GeoJSON, CSV, xlsx, GeoParquet) are the fields of the one output schema.
    "plots": frozenset(f.name for f in PLOT_FIELDS),
    "borrowers": frozenset(f.name for f in BORROWER_FIELDS),
    "audit.jsonl": frozenset({"schema", "tool_version", "policy", "inputs", "borrower_id", "decision", "plots",
                              "seq", "prev_mac", "mac", "visits"}),  # visits: agricredit.visits.Visit.to_dict
    # The report's data (agricredit.report.data): the season series of the schema, and the NDVI chips.
    "series": frozenset(f.name for f in SERIES_FIELDS),
    "chips": frozenset({"plot_id", "date", "crs", "t0", "t1", "t2", "t3", "t4", "t5", "width", "height", "ndvi"}),
    # agricredit monitor: alerts and recommendations of the schema, one sealed record per alert.
    "alerts": frozenset(f.name for f in ALERT_FIELDS),
    "recommendations": frozenset(f.name for f in RECOMMENDATION_FIELDS),
    "alerts_audit.jsonl": frozenset({"schema", "tool_version", "policy", "inputs", "borrower_id", "alert",
                                     "recommendation", "seq", "prev_mac", "mac"}),
    "manifest.json": frozenset({"tool", "tool_version", "policy", "pseudonym_key_fingerprint", "language", "inputs",
                                "outputs", "counts", "audit"}),
}


def check_allowed_fields(output_name: str, fields: Iterable[str]) -> None:
    """Refuse to write a field that is not on the output's allow-list (:data:`OUTPUT_FIELDS`).

    Parameters
    ----------
    output_name
        The output's file name (``plots.geojson``, ``borrowers.csv`` ...).
    fields
        The field names about to be written.

    Raises
    ------
    PrivacyError
        The output has no allow-list, or a field is not on it (the message
        names the output and the field).
    """
    allowed = OUTPUT_FIELDS.get(output_name)
    if allowed is None:
        raise PrivacyError(f"{output_name} has no allow-list of fields in agricredit.privacy.OUTPUT_FIELDS")
    extra = sorted(set(map(str, fields)) - allowed)
    if extra:
        raise PrivacyError(f"field {extra[0]!r} is not on the allow-list of {output_name}"
                           + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))


# --------------------------------------------------------------------------- #
# Finding personal data: whole values and whole tokens

_CJK = "\u3400-\u9fff\uf900-\ufaff"
# Tokens: a decimal number as one token (so its fraction digits are never read as a phone), a run of
# CJK characters, a run of other letters and digits. Separators (space, punctuation, "_", "-") split.
_TOKEN = re.compile(rf"\d+(?:\.\d+)+|[{_CJK}]+|[^\W_{_CJK}]+")
# A mainland mobile number written in 3-4-4 groups ("138 1234 5678", "138-1234-5678"), not inside a longer number.
_GROUPED_PHONE = re.compile(r"(?<![\d.])1\d{2}[ -]\d{4}[ -]\d{4}(?![\d.]?\d)")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_SHAPE = re.compile(r"[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]")
# Redaction of logs masks broader patterns (masking too much in a log is harmless).
_REDACT_ID = re.compile(r"(?<!\d)(?:\d{17}[\dXx]|\d{15})(?![\dXx])")
_REDACT_MOBILE = re.compile(r"(?<!\d)1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)")


def _is_national_id(token: str) -> bool:
    """Whether an 18-character token is a GB 11643 ID: region, birth date, sequence, ISO 7064 MOD 11-2 check."""
    if len(token) != 18 or not _ID_SHAPE.fullmatch(token):
        return False
    total = sum(int(digit) * weight for digit, weight in zip(token, _ID_WEIGHTS))
    return "10X98765432"[total % 11] == token[17].upper()


def _phone_key(value: str) -> str:
    """A phone number's digits, without a leading 86 country code."""
    digits = re.sub(r"\D", "", value)
    return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits


@dataclass(frozen=True)
class Finding:
    """Where personal data was found: file, record and field, and what it is (never the value).

    Attributes
    ----------
    file
        The file's name.
    record
        ``row N`` (CSV, header is row 1), ``line N`` (JSON Lines, text),
        ``feature N`` (GeoJSON, from 1) or ``document``.
    field
        The column, or the JSON key the value belongs to.
    what
        E.g. ``borrower phone (borrowers row 5)`` or ``national ID pattern``.
    """

    file: str
    record: str
    field: str
    what: str

    def __str__(self) -> str:
        return f"{self.file}: {self.record}, field {self.field!r}: {self.what}"


class PersonalDataGuard:
    """The borrowers' national IDs, phones and names, to find them in outputs exactly.

    A value is a finding when one of its *tokens* equals a borrower's ID (any
    case), phone (with or without 86) or name: a token is a decimal number, a
    run of CJK characters or a run of other letters and digits; a name of
    several tokens (``Li Xiuying``) matches the same tokens in a row, a phone
    written in 3-4-4 groups matches too. So a whole field value holding the
    ID, phone or name is a finding. Any token shaped like a national ID with a
    valid check character is a finding too, known borrower or not. Nothing
    else is: a phone's digits inside a longer number or a decimal fraction, a
    2-character name inside a longer Chinese word, digits inside a hash are no
    findings — with tens of thousands of borrowers such chance matches are
    expected in every county run.

    Files are read in a stream. A first pass over the raw bytes (numpy, in
    4 MB blocks) looks for digit, letter and CJK runs that could be a finding;
    only the blocks (about 1 MB) of a file that hold such a candidate are read
    field by field, to confirm it and name the record and field.

    Build it with :meth:`from_borrowers`; scan files with :meth:`scan_file`.
    """

    def __init__(self, single: Mapping[str, str], multi: Mapping[str, Sequence[tuple[tuple[str, ...], str]]]):
        self._single = dict(single)  # casefolded token -> what
        self._multi = {first: list(names) for first, names in multi.items()}  # first token -> (tokens, what)
        keys = set(self._single) | set(self._multi)
        self._candidate_keys = {key.encode("utf-8") for key in keys}
        # Each key's kind (the first pattern it matches), its length kept by kind; one pass over tens of thousands.
        self._lengths: dict[str, set[int]] = {kind: set() for kind in _TOKEN_KIND}
        patterns = list(_TOKEN_KIND.items())
        # The byte pass knows ASCII digit, ASCII letter and BMP CJK runs; other tokens need the field-by-field pass.
        self._byte_pass_suffices = True
        for key in keys:
            for kind, pattern in patterns:
                if pattern.fullmatch(key):
                    self._lengths[kind].add(len(key))
                    break
            else:
                self._byte_pass_suffices = False

    @classmethod
    def from_borrowers(cls, borrowers: pd.DataFrame | None) -> PersonalDataGuard:
        """Build the guard from a borrower table (``national_id``, ``phone``, ``name``; ``source_row`` for labels).

        Values shorter than 2 characters are skipped (they cannot be told from anything else).
        """
        single: dict[str, str] = {}
        multi: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        if borrowers is None:
            return cls(single, multi)
        rows = borrowers["source_row"] if "source_row" in borrowers else pd.Series(range(1, len(borrowers) + 1))
        for column, label in (("national_id", "national ID"), ("phone", "phone"), ("name", "name")):
            if column not in borrowers:
                continue
            phone, findall = column == "phone", _TOKEN.findall
            for row, value in zip(rows.tolist(), borrowers[column].tolist()):
                value = _phone_key(value) if phone and isinstance(value, str) else value
                if not isinstance(value, str) or len(value.strip()) < 2:
                    continue
                what = f"borrower {label} (borrowers row {row})"
                tokens = [token.casefold() for token in findall(value)]
                if len(tokens) == 1:
                    single.setdefault(tokens[0], what)
                    if phone:
                        single.setdefault("86" + tokens[0], what)
                elif tokens:
                    multi.setdefault(tokens[0], []).append((tuple(tokens), what))
        return cls(single, multi)

    def find(self, value: str) -> Iterator[tuple[int, str]]:
        """Yield ``(offset, what)`` for each finding in one field value (offset of the token in ``value``)."""
        tokens: list[tuple[int, str]] | None = None
        for match in _TOKEN.finditer(value):
            token = match.group().casefold()
            what = self._single.get(token)
            if what is None and len(token) == 18 and _is_national_id(token):
                what = "national ID pattern"
            if what is None and token in self._multi:
                if tokens is None:
                    tokens = [(m.start(), m.group().casefold()) for m in _TOKEN.finditer(value)]
                index = next(i for i, (start, _) in enumerate(tokens) if start == match.start())
                following = tuple(t for _, t in tokens[index:index + 8])
                what = next((w for name, w in self._multi[token] if following[:len(name)] == name), None)
            if what is not None:
                yield match.start(), what
        if " " in value or "-" in value:
            for match in _GROUPED_PHONE.finditer(value):
                what = self._single.get(_phone_key(match.group()))
                if what is not None:
                    yield match.start(), what

    def may_hold(self, path: str | os.PathLike[str]) -> bool:
        """Whether a file has a candidate for a finding (the byte pass; ``True`` means: read it field by field)."""
        if not self._byte_pass_suffices:
            return True
        with open(path, "rb") as handle:
            data = b""
            while block := handle.read(_BLOCK):
                data = data[-_OVERLAP:] + block  # a token up to 64 bytes long cut by the block lies whole in the next
                if self._candidates(data):
                    return True
        return False

    def _text_may_hold(self, text: str) -> bool:
        """The byte pass on a piece of text (a block of lines, rows or JSON)."""
        return not self._byte_pass_suffices or self._candidates(text.encode("utf-8"))

    def _candidates(self, data: bytes) -> bool:
        if b"\\" in data and b"\\u" in data:  # JSON \uXXXX escapes hide characters from a pass over the raw bytes
            # (the one-byte search first: it is a memchr, many times faster than the two-byte one)
            return True
        array = np.frombuffer(data, dtype=np.uint8)
        keys = self._candidate_keys
        starts, ends = _runs((array >= 0x30) & (array <= 0x39))
        lengths = ends - starts
        # IDs, phones, 86-phones; ID patterns: a run of 11 digits or more, with the x/X after it, as long as a key
        # or an ID (the other runs cannot be one: the float digits of the audit records, say)
        followed_by_x = np.zeros(len(ends), dtype=bool)
        inside = ends < len(array)
        followed_by_x[inside] = (array[ends[inside]] | 0x20) == ord("x")
        wanted = (lengths >= 11) & np.isin(lengths + followed_by_x, [*self._lengths["digits"], 18])
        for start, end in zip(starts[wanted].tolist(), ends[wanted].tolist()):
            digits = data[start:end + (end < len(data) and data[end] in b"xX")].lower()
            if digits in keys or (len(digits) == 18 and _is_national_id(digits.decode())):
                return True
        grouped = np.flatnonzero((lengths[:-2] == 3) & (lengths[1:-1] == 4) & (lengths[2:] == 4)
                                 & (starts[1:-1] == ends[:-2] + 1) & (starts[2:] == ends[1:-1] + 1))
        for index in grouped:  # 3-4-4 phones
            if data[starts[index] : ends[index + 2]].replace(b" ", b"").replace(b"-", b"") in keys:
                return True
        if self._lengths["letters"]:
            lowered = array | ((array >= 0x41) & (array <= 0x5A)).astype(np.uint8) * 0x20
            word = ((lowered >= 0x61) & (lowered <= 0x7A)) | ((array >= 0x30) & (array <= 0x39))
            text = lowered.tobytes()
            if self._words_hit(word, text):
                return True
            if b"\\" in data:  # JSON escapes (\n, \t ...): the letter after a backslash is not one of a word
                word[np.flatnonzero(array[:-1] == 0x5C) + 1] = False
                if self._words_hit(word, text):
                    return True
        if self._lengths["cjk"]:
            lead = np.flatnonzero((array[:-2] & 0xF0) == 0xE0)
            points = ((array[lead].astype(np.int32) & 0x0F) << 12 | (array[lead + 1].astype(np.int32) & 0x3F) << 6
                      | (array[lead + 2].astype(np.int32) & 0x3F))
            cjk = lead[((points >= 0x3400) & (points <= 0x9FFF)) | ((points >= 0xF900) & (points <= 0xFAFF))]
            if len(cjk):
                breaks = np.flatnonzero(np.diff(cjk) != 3) + 1
                run_starts = cjk[np.r_[0, breaks]]
                run_chars = np.diff(np.r_[0, breaks, len(cjk)])
                wanted = np.isin(run_chars, list(self._lengths["cjk"]))
                if any(data[s:s + 3 * n] in keys for s, n in zip(run_starts[wanted], run_chars[wanted])):
                    return True
        return False

    def _words_hit(self, word: np.ndarray, text: bytes) -> bool:
        """Whether a run of ``word`` bytes of ``text`` (lower-cased) is a key of the letters' length."""
        starts, ends = _runs(word)
        wanted = np.isin(ends - starts, list(self._lengths["letters"]))
        return any(text[s:e] in self._candidate_keys for s, e in zip(starts[wanted], ends[wanted]))

    def check_folder(self, folder: str | os.PathLike[str],
                     scanned: Mapping[str, Finding | None] | None = None) -> None:
        """Raise :class:`PrivacyError` at the first finding in the files of ``folder``.

        ``folder`` is a staging folder inside the output folder
        (:func:`agricredit.outputs.staged_outputs`): a finding is named by the
        path the file would have been published at. Binary outputs (GeoParquet, xlsx) hold the same schema-conformed rows
        as the text outputs beside them and are not read again. ``scanned``: file name → its
        :meth:`first_finding`, for files already scanned (by another process).
        """
        scanned = scanned or {}
        for path in sorted(Path(folder).iterdir()):
            if path.suffix.lower() in (".parquet", ".xlsx"):
                continue
            finding = scanned[path.name] if path.name in scanned else self.first_finding(path)
            if finding is not None:
                raise PrivacyError(f"personal data in an output ({finding.record}, field {finding.field!r}: "
                                   f"{finding.what}); nothing was published", path=path.parent.parent / path.name)

    def first_finding(self, path: str | os.PathLike[str]) -> Finding | None:
        """The first finding of :meth:`scan_file` in a file, or ``None``."""
        return next(self.scan_file(path), None)

    def scan_file(self, path: str | os.PathLike[str], name: str | None = None) -> Iterator[Finding]:
        """Yield the findings of one file, reading it as a stream.

        After the byte pass (:meth:`may_hold`), a file with a candidate is read
        field by field, again skipping the blocks (about 1 MB) where the byte
        pass finds no candidate: ``.csv`` cell by cell (the header too), field
        = column; ``.json``, ``.geojson`` every string (keys too) and integer,
        field = the key the value belongs to, record = the GeoJSON feature;
        ``.jsonl`` the same, line by line; anything else line by line as text.

        Parameters
        ----------
        path
            The file.
        name
            The name to report (default: the file's name).
        """
        path = Path(path)
        if not self.may_hold(path):
            return
        name = name or path.name
        suffix = path.suffix.lower()
        if suffix == ".csv":
            yield from self._scan_csv(path, name)
        elif suffix in (".json", ".geojson"):
            yield from self._scan_json(path, name)
        else:
            json_lines = suffix == ".jsonl"
            with open(path, encoding="utf-8", errors="strict" if json_lines else "replace") as handle:
                for number, line in self._blocks(enumerate(handle, start=1), lambda item: item[1]):
                    values = _json_values([line]) if json_lines else [("text", line)]
                    for field_name, value in values:
                        yield from (Finding(name, f"line {number}", field_name, what) for _, what in self.find(value))

    def _blocks(self, items: Iterable[Any], text_of: Callable[[Any], str]) -> Iterator[Any]:
        """Yield the items (lines, rows) of the blocks of about 1 MB where the byte pass finds a candidate."""
        block: list[Any] = []
        texts: list[str] = []
        size = 0
        for item in itertools.chain(items, [None]):
            if item is not None:
                block.append(item)
                texts.append(text_of(item))
                size += len(texts[-1])
            if size >= _CHUNK or (item is None and block):
                if self._text_may_hold("\n".join(texts)):
                    yield from block
                block, texts, size = [], [], 0

    def _scan_csv(self, path: Path, name: str) -> Iterator[Finding]:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            for index, cell in enumerate(header):
                yield from (Finding(name, "row 1", f"column {index + 1} name", what) for _, what in self.find(cell))
            for number, row in self._blocks(enumerate(reader, start=2), lambda item: "\x1f".join(item[1])):
                for index, cell in enumerate(row):
                    column = header[index] if index < len(header) else f"column {index + 1}"
                    yield from (Finding(name, f"row {number}", column, what) for _, what in self.find(cell))

    def _scan_json(self, path: Path, name: str) -> Iterator[Finding]:
        feature = 0
        with open(path, encoding="utf-8") as handle:
            for field_name, value in _json_values(iter(lambda: handle.read(_CHUNK), ""), self._text_may_hold):
                if field_name == "type" and value == "Feature":
                    feature += 1
                    continue
                for _, what in self.find(value):
                    yield Finding(name, f"feature {feature}" if feature else "document", field_name, what)


#: Kinds of tokens the byte pass of :meth:`PersonalDataGuard.may_hold` finds (the first that fits).
_TOKEN_KIND = {"digits": re.compile(r"[0-9]+x?"), "cjk": re.compile(rf"[{_CJK}]+"), "letters": re.compile(r"[a-z0-9]+")}
_BLOCK = 4 << 20
_OVERLAP = 64


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of the runs of ``True`` in a boolean array."""
    padded = np.zeros(len(mask) + 2, dtype=bool)
    padded[1:-1] = mask
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[0::2], edges[1::2]


_CHUNK = 1 << 20
# A JSON string (group 1; group 2 holds the colon when it is a key) or a JSON number (group 3).
_STRING = r'"([^"\\\n]*(?:\\.[^"\\\n]*)*)"'
_JSON_TOKEN = re.compile(_STRING + r'(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)')
_JSON_STRING = re.compile(_STRING + r'(\s*:)?')


def _json_values(chunks: Iterable[str], wanted: Callable[[str], bool] | None = None) -> Iterator[tuple[str, str]]:
    """Yield ``(field, value)`` for every string and every integer of 11+ digits of a JSON text given in chunks.

    ``field`` is the last key seen before the value (for a key: ``key after <previous key>``,
    so the report never quotes a key that is itself personal data). Strings
    never span lines in JSON, so a chunk boundary inside one is carried over to
    the next chunk. With ``wanted``, a chunk for which it is false is only
    followed (its last key, its ``"Feature"`` values, which are yielded), not read value by value.
    """
    buffer, key = "", "document"
    chunks = iter(chunks)
    while True:
        chunk = next(chunks, None)
        final = chunk is None
        buffer += chunk or ""
        if wanted is not None and not wanted(buffer):
            carry, key, features = _follow(buffer, key, final)
            for _ in range(features):
                yield "type", "Feature"
        else:
            carry, key = yield from _read(buffer, key, final)
        if final:
            return
        buffer = buffer[carry:]


def _read(buffer: str, key: str, final: bool) -> Generator[tuple[str, str], None, tuple[int, str]]:
    """Yield the values of a buffer of JSON text; return where the part to carry to the next chunk starts, and the last key."""
    matches = list(_JSON_TOKEN.finditer(buffer))
    previous_end = 0
    for index, match in enumerate(matches):
        quote = buffer.find('"', previous_end, match.start())
        if quote >= 0:  # an unterminated string (cut by the chunk): lex it again with the next chunk
            return quote, key
        if index == len(matches) - 1 and not final:  # may be cut by the chunk boundary: lex it again
            return match.start(), key
        previous_end = match.end()
        text, is_key, number = match.groups()
        if number is not None:
            if len(number) >= 11 and number.isdigit():
                yield key, number
            continue
        if "\\" in text:
            text = json.loads(f'"{text}"')
        if is_key:
            yield f"key after {key}", text
            key = text
        else:
            yield key, text
    quote = buffer.find('"', previous_end)
    return (quote if quote >= 0 else len(buffer)), key


def _follow(buffer: str, key: str, final: bool) -> tuple[int, str, int]:
    """Follow a buffer of JSON text without reading its values: (where to carry from, last key, "Feature" count)."""
    end = _COMPLETE.match(buffer).end()  # stops at an unterminated string
    tokens = list(_JSON_STRING.finditer(buffer, 0, end))
    if not final and tokens:  # lex again from the last string: its colon, the numbers after it may be cut
        end = tokens.pop().start()
    while not final and end > 0 and buffer[end - 1] in _NUMBER_CHARACTERS:
        end -= 1  # never resume inside a number: a window of its digits is not a value
    last_key = next((token for token in reversed(tokens) if token[2]), None)
    if last_key is not None:
        key = json.loads(f'"{last_key[1]}"') if "\\" in last_key[1] else last_key[1]
    return end, key, sum(1 for token in tokens if token[1] == "Feature" and not token[2])


# Characters of a JSON number (a chunk boundary inside one is carried to the next chunk).
_NUMBER_CHARACTERS = frozenset("0123456789+-.eE")
# Complete strings and what lies between them, up to the first unterminated string.
_COMPLETE = re.compile(r'(?:[^"]+|"[^"\\\n]*(?:\\.[^"\\\n]*)*")*')


def _where(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def find_pii(text: str, borrowers: pd.DataFrame | None = None) -> list[str]:
    """Find personal data in a text (a log, a message); say what and where, never the value.

    Each line is a field value for :class:`PersonalDataGuard` (whole values and
    whole tokens; national-ID patterns with a valid check character always).

    Parameters
    ----------
    text
        The text of a log or an output.
    borrowers
        A frame with any of the columns ``national_id``, ``phone``, ``name``
        (e.g. from :func:`agricredit.tables.read_borrowers`).

    Returns
    -------
    list of str
        One entry per finding, in text order, e.g. ``"borrower name (borrowers
        row 5) at line 9, column 2"``. Empty when the text is clean.
    """
    guard = PersonalDataGuard.from_borrowers(borrowers)
    findings, start = [], 0
    for line in text.split("\n"):
        findings.extend((start + offset, what) for offset, what in guard.find(line))
        start += len(line) + 1
    return [f"{what} at {_where(text, offset)}" for offset, what in sorted(findings)]


# --------------------------------------------------------------------------- #
# Publishing outputs only once they are clean


def redact(message: str) -> str:
    """Mask national-ID and mobile-number patterns in a log or error message.

    IDs (18 characters, or old 15-digit ones) become ``[ID]`` and mobile
    numbers ``[PHONE]``. Names cannot be told from other words without the
    borrower table: never put them in a message.
    """
    return _REDACT_MOBILE.sub("[PHONE]", _REDACT_ID.sub("[ID]", message))


class RedactPII(logging.Filter):
    """A logging filter that applies :func:`redact` to the message and traceback of every record.

    Attach it to a handler (a filter on a logger does not see the records of
    its child loggers); :func:`install_redaction` does that for the
    ``agricredit`` logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_redaction(logger_name: str = "agricredit") -> None:
    """Add a :class:`RedactPII` filter to every handler of ``logger_name`` (once).

    Call it after the handlers are configured (the CLI group configures them);
    records of child loggers (``agricredit.tables`` ...) pass through these
    handlers and are redacted too.
    """
    for handler in logging.getLogger(logger_name).handlers:
        if not any(isinstance(f, RedactPII) for f in handler.filters):
            handler.addFilter(RedactPII())
