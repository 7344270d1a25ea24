"""One timer for all sessions: a heap of (when, session name).

Instead of a timer per session (kopf's @kopf.timer: a task, a finalizer and a
periodic run per session, Ready or not), each session has at most one deadline,
the next moment its state changes by itself (lifecycle.next_deadline), and one
task sleeps until the earliest. Setting a session's deadline is O(log N); a
replaced deadline stays in the heap as a stale entry and is skipped when popped.
"""
from __future__ import annotations

import heapq


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._when: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._when)

    def set(self, name: str, when: float | None) -> bool:
        """Make `when` (epoch seconds) the session's deadline, or drop it (None).
        True when the earliest deadline moved earlier (the sleeper must wake)."""
        if when is None:
            self._when.pop(name, None)
            return False
        if self._when.get(name) == when:
            return False
        earliest = self.earliest()
        self._when[name] = when
        heapq.heappush(self._heap, (when, name))
        return earliest is None or when < earliest

    def get(self, name: str) -> float | None:
        return self._when.get(name)

    def earliest(self) -> float | None:
        while self._heap and self._when.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale: replaced or dropped
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[str]:
        """The sessions whose deadline is at or before `now`, oldest first; they are dropped."""
        due = []
        while (when := self.earliest()) is not None and when <= now:
            _, name = heapq.heappop(self._heap)
            del self._when[name]
            due.append(name)
        return due
