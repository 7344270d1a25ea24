"""The operator's one timer: sleeps until the earliest deadline of all (deadlines.py),
or until a new, earlier one is set, then hands over what is due.

The reconciler sets each session's deadline (and the warm pool's) and says what to
do with those that came; this holds the heap, the clock and the sleep.
"""
from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable

from .deadlines import Deadlines
from .times import utcnow


class DeadlineTimer:
    def __init__(self, clock: Callable[[], datetime.datetime] = utcnow) -> None:
        self._clock = clock
        self._deadlines = Deadlines()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._deadlines)

    def get(self, name: str) -> float | None:
        return self._deadlines.get(name)

    def set(self, name: str, when: float | None) -> None:
        """Make `when` (epoch seconds) the deadline of `name`, or drop it (None)."""
        if self._deadlines.set(name, when):
            self._wake.set()  # earlier than the one the sleeper waits for

    def pop_due(self) -> list[str]:
        """The names whose deadline has come, oldest first; their deadlines are dropped."""
        return self._deadlines.pop_due(self._clock().timestamp())

    async def run(self, run_due: Callable[[], Awaitable[None]]) -> None:
        """Forever: `run_due()` (which takes what came with pop_due()), then sleep until
        the next deadline or a new, earlier one."""
        while True:
            await run_due()
            earliest = self._deadlines.earliest()
            timeout = None if earliest is None else max(0.0, earliest - self._clock().timestamp())
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
