"""Who a pseudonym is, for those who hold the pseudonym key (``agricredit lookup``, ``report --reveal``).

The only code that turns pseudonyms back into people: it recomputes the
pseudonym of every row of the borrower table with the key (the keyed hash
cannot be inverted) and matches. Nothing here writes a file by itself;
``report --reveal`` marks what it writes as personal data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from agricredit.errors import InputError, PrivacyError
from agricredit.privacy import PseudonymKey, pseudonym

__all__ = ["LOOKUP_COLUMNS", "borrowers_by_pseudonym", "lookup", "names_by_pseudonym"]

#: Columns printed by ``agricredit lookup`` (the pseudonym, then the borrower table's own columns).
LOOKUP_COLUMNS = ("pseudonym", "borrower_id", "name", "national_id", "phone", "village")


def borrowers_by_pseudonym(table: str | Path, key: PseudonymKey) -> pd.DataFrame:
    """The borrower table with each row's pseudonym (column ``pseudonym``), indexed by it."""
    from agricredit.tables import read_borrowers

    borrowers = read_borrowers(table)
    borrowers["pseudonym"] = [pseudonym(key, "borrower", str(b)) for b in borrowers["borrower_id"]]
    return borrowers.set_index("pseudonym", drop=False)


def _check_key(key: PseudonymKey, manifest: Mapping[str, Any] | None) -> None:
    expected = (manifest or {}).get("pseudonym_key_fingerprint")
    if expected and expected != key.fingerprint:
        raise PrivacyError("AGRICREDIT_PII_KEY is not the key that made this run's pseudonyms "
                           f"(fingerprint {key.fingerprint}, the run's {expected})")


def lookup(pseudonyms: Iterable[str], table: str | Path, key: PseudonymKey) -> pd.DataFrame:
    """The borrower-table rows behind ``pseudonyms``, in the order asked (:data:`LOOKUP_COLUMNS`).

    Raises
    ------
    InputError
        A pseudonym matches no row of the table (with this key).
    """
    found = borrowers_by_pseudonym(table, key)
    asked = list(pseudonyms)
    missing = [p for p in asked if p not in found.index]
    if missing:
        raise InputError(f"pseudonym {missing[0]} matches no borrower of the table with this key", path=table)
    return found.loc[asked, [c for c in LOOKUP_COLUMNS if c in found.columns]].reset_index(drop=True)


def names_by_pseudonym(table: str | Path, key: PseudonymKey, manifest: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Pseudonym → name for ``report --reveal``; refuses a key other than the run's (``manifest``)."""
    _check_key(key, manifest)
    found = borrowers_by_pseudonym(table, key)
    return dict(zip(found["pseudonym"], found["name"].astype(str))) if "name" in found else {}
