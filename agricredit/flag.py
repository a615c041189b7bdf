"""A satellite check's finding (:class:`Flag`), shared by the season checks (:mod:`agricredit.season`) and peer
vigor (:mod:`agricredit.vigor`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Flag"]


@dataclass(frozen=True)
class Flag:
    """A satellite check that failed: its reason code and the figures behind it."""

    code: str
    figures: dict[str, float | str | None] = field(default_factory=dict)
