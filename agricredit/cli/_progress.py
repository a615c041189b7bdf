"""The one way commands report progress: tqdm bars (count, rate, ETA) and stage lines on stderr.

On by default when stderr is a terminal, off when it is not or with ``-q`` /
``--no-progress`` (:func:`agricredit.cli.options.progress_enabled`). When
progress is off, stage lines go to the log at INFO (shown with ``-v``), so
each stage line appears once whatever the flags.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

log = logging.getLogger("agricredit")


class Reporter:
    """Stage lines and counting bars for one command run.

    Parameters
    ----------
    enabled
        Draw bars and print stage lines on stderr; otherwise stage lines are
        INFO log records and counters do nothing.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bars: list = []

    def stage(self, message: str) -> None:
        """Announce a stage once: on stderr when progress is on, else in the log (INFO)."""
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)
        else:
            log.info(message)

    def counter(self, label: str, unit: str) -> Callable[[int, int], None] | None:
        """A ``(done, total)`` callback drawing a bar with count, rate and ETA; ``None`` when progress is off.

        The bar opens at the first call and closes when ``done`` reaches ``total``.
        """
        if not self.enabled:
            return None
        state: dict = {}

        def update(done: int, total: int) -> None:
            from tqdm import tqdm

            bar = state.get("bar")
            if bar is None:
                bar = state["bar"] = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, dynamic_ncols=True,
                                          mininterval=0.2)
                self._bars.append(bar)
            bar.total = total
            bar.update(done - bar.n)
            if done >= total:
                bar.close()
                state.pop("bar")

        return update

    def close(self) -> None:
        """Close any bar left open (an error or Ctrl-C in the middle of a step)."""
        for bar in self._bars:
            bar.close()
        self._bars.clear()
