"""The exception hierarchy of agricredit.

Every error the library raises on purpose derives from :class:`AgricreditError`.
Specific errors also derive from the matching builtin (``ValueError``,
``FileNotFoundError`` ...) so callers can catch either. The CLI turns any
:class:`AgricreditError` into one line on stderr and :attr:`exit_code`.

Messages name the file, record and reason, and never carry personal data
(national ID, phone, name): pass pseudonyms or row numbers instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "AgricreditError",
    "InputError",
    "InputNotFoundError",
    "MissingTileError",
    "CorruptInputError",
    "CRSError",
    "CRSMismatchError",
    "MissingBandError",
    "GridMismatchError",
    "SensorError",
    "MissingMetadataError",
    "GeometryError",
    "SchemaError",
    "EncodingError",
    "PolicyError",
    "SeedDataError",
    "ModelError",
    "PrivacyError",
    "AuditMismatchError",
    "OutputError",
]


class AgricreditError(Exception):
    """Root of all errors raised by agricredit.

    Parameters
    ----------
    message
        What went wrong and why, in one sentence.
    path
        The file concerned, if any; it prefixes the message.
    record
        The record concerned (row number, plot id ...), if any.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, path: str | Path | None = None, record: str | int | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.record = record
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Return ``file: record: reason`` on one line (newlines folded)."""
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if self.record is not None:
            parts.append(str(self.record))
        parts.append(self.message)
        return ": ".join(parts).replace("\r", " ").replace("\n", " ")


class InputError(AgricreditError, ValueError):
    """An input file or value cannot be used."""


class InputNotFoundError(AgricreditError, FileNotFoundError):
    """An input path does not exist or cannot be read."""


class MissingTileError(InputNotFoundError):
    """A tile that a manifest or a STAC item lists is not there.

    Parameters
    ----------
    message, path, record
        As :class:`AgricreditError`.
    footprint
        Where the tile lies, when its listing says so (a STAC item's geometry, a shapely geometry in WGS84
        longitude/latitude); ``None`` when unknown (a manifest row holds only a path).
    """

    def __init__(self, message: str, *, path: str | Path | None = None, record: str | int | None = None,
                 footprint: Any = None):
        super().__init__(message, path=path, record=record)
        self.footprint = footprint


class CorruptInputError(InputError):
    """A file exists but is empty, truncated or not in the expected format."""


class CRSError(InputError):
    """A coordinate reference system is missing or unusable."""


class CRSMismatchError(CRSError):
    """Two inputs that must share a CRS do not."""


class MissingBandError(InputError):
    """A band needed for the computation (red, NIR, mask) is not in the product."""


class GridMismatchError(InputError):
    """Rasters that must share a pixel grid do not."""


class SensorError(InputError):
    """The sensor or product type cannot be determined or is not supported."""


class MissingMetadataError(InputError):
    """Metadata needed to compute a number (processing baseline, date ...) is missing."""


class GeometryError(InputError):
    """A plot geometry cannot be used."""


class SchemaError(InputError):
    """A table misses columns, has bad values or duplicate keys."""


class EncodingError(InputError):
    """A text file's encoding cannot be determined or decoded."""


class PolicyError(InputError):
    """A policy file has unknown keys or values out of range."""


class SeedDataError(AgricreditError, RuntimeError):
    """The bundled reference tables in ``seeds/`` are missing or inconsistent."""


class ModelError(InputError):
    """A trained model cannot be loaded or does not match its card."""


class PrivacyError(AgricreditError, RuntimeError):
    """A privacy rule would be broken (no pseudonym key, PII in an output)."""


class AuditMismatchError(AgricreditError, RuntimeError):
    """A replayed decision differs from its audit record."""


class OutputError(AgricreditError, OSError):
    """An output cannot be written."""
