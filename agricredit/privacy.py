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
public and **must never be used for real borrowers**.

Other guards: :func:`escape_csv_cell` (spreadsheet formula injection),
:func:`find_pii` (the self-check scanner of outputs and logs), :func:`redact`
and the :class:`RedactPII` logging filter (masks ID and phone patterns in log
records).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from agricredit.errors import PrivacyError

__all__ = [
    "KEY_ENV_VAR",
    "MIN_KEY_BYTES",
    "DEMO_PII_KEY",
    "PseudonymKey",
    "pseudonym",
    "pseudonymise_borrowers",
    "BORROWER_OUTPUT_COLUMNS",
    "escape_csv_cell",
    "escape_csv_frame",
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
        ``"environment"``, ``"ephemeral"`` or ``"demo"``.
    """

    secret: bytes = field(repr=False)
    source: str

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise PrivacyError(f"the pseudonym key is too short: at least {MIN_KEY_BYTES} bytes are needed")

    @classmethod
    def from_env(cls, *, allow_ephemeral: bool = False, environ: Mapping[str, str] | None = None) -> PseudonymKey:
        """Return the key from ``AGRICREDIT_PII_KEY``.

        Parameters
        ----------
        allow_ephemeral
            If the variable is not set, return :meth:`ephemeral` instead of
            refusing (the CLI's ``--ephemeral-key``).
        environ
            The environment to read (default ``os.environ``).

        Raises
        ------
        PrivacyError
            The variable is not set (and no ephemeral key is allowed), or its
            value is shorter than 16 bytes in UTF-8.
        """
        value = (os.environ if environ is None else environ).get(KEY_ENV_VAR)
        if value is None:
            if allow_ephemeral:
                return cls.ephemeral()
            raise PrivacyError(
                f"no pseudonym key: set {KEY_ENV_VAR} (at least {MIN_KEY_BYTES} bytes of secret text), "
                "or ask for an ephemeral key (pseudonyms will then differ every run)"
            )
        secret = value.encode("utf-8")
        if len(secret) < MIN_KEY_BYTES:
            raise PrivacyError(f"{KEY_ENV_VAR} is too short: {len(secret)} bytes, at least {MIN_KEY_BYTES} are needed")
        return cls(secret, "environment")

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
            "pseudonym": [pseudonym(key, "borrower", v) for v in ids],
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
        if not pd.api.types.is_numeric_dtype(out[name]):
            out[name] = out[name].map(escape_csv_cell)
    out.columns = [escape_csv_cell(c) for c in out.columns]
    return out


# --------------------------------------------------------------------------- #
# Finding and masking personal data

# An 18-character GB 11643 national ID: 6-digit region, birth date 19xx/20xx,
# 3-digit sequence, check character; not inside a longer number nor after a
# decimal point (the fraction of a float is not an ID).
_NATIONAL_ID = re.compile(
    r"(?<![\d.])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![\dXx])"
)
# An 11-digit mainland mobile number, optionally written 3-4-4 with spaces or dashes.
_MOBILE = re.compile(r"(?<![\d.])1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)")
# Broader patterns for redaction (masking too much in a log is harmless):
# any 17 digits + check character, old 15-digit IDs, mobile numbers after a dot.
_REDACT_ID = re.compile(r"(?<!\d)(?:\d{17}[\dXx]|\d{15})(?![\dXx])")
_REDACT_MOBILE = re.compile(r"(?<!\d)1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)")
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_HEX = frozenset("0123456789abcdefABCDEF")
_HEX_LETTERS = frozenset("abcdefABCDEF")


#: Hex tokens at least this long holding a letter are digests, pseudonyms or key fingerprints
#: (12 hex characters and more): digit runs inside them are chance, not phone numbers.
_MIN_HASH_TOKEN = 12


def _in_hash(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] lies inside a hex token (a sha256, a pseudonym ...), where digit runs are chance."""
    while start > 0 and text[start - 1] in _HEX:
        start -= 1
    while end < len(text) and text[end] in _HEX:
        end += 1
    token = text[start:end]
    return len(token) >= _MIN_HASH_TOKEN and any(c in _HEX_LETTERS for c in token)


def _where(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def find_pii(text: str, borrowers: pd.DataFrame | None = None) -> list[str]:
    """Find personal data in ``text``; say what and where, never the value.

    Looks for any national-ID pattern (18 characters with a birth date) and
    any mobile-number pattern (digit runs inside long hex tokens such as sha256
    digests, or after a decimal point, are not taken for these), and, if
    ``borrowers`` is given, for each borrower's national ID, phone (its digits,
    anywhere in a run of digits) and name (exact substring; names shorter than
    2 characters are skipped).

    Parameters
    ----------
    text
        The text of an output file or log.
    borrowers
        A frame with any of the columns ``national_id``, ``phone``, ``name``
        (e.g. from :func:`agricredit.tables.read_borrowers`).

    Returns
    -------
    list of str
        One entry per finding, in text order, e.g. ``"national ID pattern at
        line 3, column 17"`` or ``"borrower name (borrowers row 5) at line 9,
        column 2"``. Empty when the text is clean.
    """
    ids: dict[str, str] = {}
    phones: dict[str, str] = {}
    names: dict[str, str] = {}
    if borrowers is not None:
        rows = borrowers["source_row"] if "source_row" in borrowers else pd.Series(range(len(borrowers)))
        for column, target, norm in (
            ("national_id", ids, lambda v: v.upper()),
            ("phone", phones, lambda v: re.sub(r"^86(?=\d{11}$)", "", re.sub(r"\D", "", v))),
            ("name", names, lambda v: v),
        ):
            if column in borrowers:
                for row, value in zip(rows, borrowers[column].astype(str)):
                    value = norm(value.strip())
                    if len(value) >= 2:
                        target.setdefault(value, f"borrowers row {row}")
    findings: list[tuple[int, str]] = []

    # Known IDs and phones: every window of every digit run (catches them inside longer numbers too).
    for run in re.finditer(r"\d{11,}[Xx]?", text):
        digits = run.group().upper()
        for size, known, label in ((18, ids, "national ID"), (11, phones, "phone")):
            for start in range(len(digits) - size + 1):
                row = known.get(digits[start : start + size])
                if row:
                    findings.append((run.start() + start, f"borrower {label} ({row})"))
    found_at = {offset for offset, _ in findings}
    for pattern, label in ((_NATIONAL_ID, "national ID pattern"), (_MOBILE, "mobile number pattern")):
        for match in pattern.finditer(text):
            if match.start() in found_at or _in_hash(text, match.start(), match.end()):
                continue
            row = phones.get(re.sub(r"\D", "", match.group())) if pattern is _MOBILE else None
            findings.append((match.start(), f"borrower phone ({row})" if row else label))

    # Names: CJK names by looking up every substring of CJK runs; others by one regex.
    cjk_names = {n for n in names if _CJK_RUN.fullmatch(n)}
    lengths = sorted({len(n) for n in cjk_names})
    for run in _CJK_RUN.finditer(text):
        chunk = run.group()
        for start in range(len(chunk)):
            for size in lengths:
                row = names.get(chunk[start : start + size])
                if row:
                    findings.append((run.start() + start, f"borrower name ({row})"))
    other_names = sorted((n for n in names if n not in cjk_names), key=len, reverse=True)
    if other_names:
        for match in re.finditer("|".join(map(re.escape, other_names)), text):
            findings.append((match.start(), f"borrower name ({names[match.group()]})"))

    return [f"{label} at {_where(text, offset)}" for offset, label in sorted(findings)]


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
