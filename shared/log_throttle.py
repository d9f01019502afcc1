"""When a failure that repeats (a database outage, a metrics flush that keeps failing) is due to
be logged again: at most once per interval, with a count of the repeats left out between."""

from __future__ import annotations

from time import monotonic


class LogThrottle:
    """Unlocked: two threads failing at the same instant may both be told to log, which costs
    a line, where a lock on a failure path could be copied held into a forked child."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next_at = 0.0
        self._left_out = 0

    def due(self) -> int | None:
        """None: not now (this repeat is counted as left out). Otherwise log it now: how many
        repeats were left out since the last line."""
        now = monotonic()
        if now < self._next_at:
            self._left_out += 1
            return None
        left_out, self._left_out, self._next_at = self._left_out, 0, now + self.interval_s
        return left_out
