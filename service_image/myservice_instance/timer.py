"""The one timer that ends an instance at its limits (limits.Activity decides)."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from .limits import Activity, Ending


class LimitTimer:
    """Sleeps until the next moment the limits could be reached (Activity.next_check),
    asks Activity.expired() then, and sleeps again if not: no task per call, no poll."""

    def __init__(self, activity: Activity, *, loop: asyncio.AbstractEventLoop,
                 on_expiry: Callable[[Ending], None]) -> None:
        self._activity = activity
        self._loop = loop
        self._on_expiry = on_expiry
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        when = self._activity.next_check(self._loop.time())
        self._handle = None if when is None else self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        ending = self._activity.expired(self._loop.time())
        if ending is None:
            self.start()
        else:
            self._handle = None
            self._on_expiry(ending)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
