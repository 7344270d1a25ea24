"""Who holds or waits for a slot, beyond what the pod index knows: the reconciler's
admission bookkeeping, over admission.py's pure queue and count.

A session's slot is its live pod once the pod is indexed. Before that the index
cannot count it, so it is held here:
- granted: given a slot, its pod not created (or claimed) yet;
- unindexed: its pod created (or claimed), the pod's event not indexed yet.
Both count as being created, so concurrent admissions cannot both take the last
slot. The waiting sessions queue oldest first (admission.WaitingQueue).
"""
from __future__ import annotations

from collections.abc import Callable

from . import admission


class Admission:
    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._waiting = admission.WaitingQueue()
        self._granted: set[str] = set()
        self._unindexed: set[str] = set()

    def is_granted(self, name: str) -> bool:
        return name in self._granted

    def is_unindexed(self, name: str) -> bool:
        """Its pod was created (or claimed) and is not in the index yet: starting, not missing."""
        return name in self._unindexed

    def holds_slot(self, name: str) -> bool:
        return name in self._granted or name in self._unindexed

    def wait(self, name: str, created_at: str) -> None:
        """Queue the session for a slot (once; it keeps its place if queued already)."""
        self._waiting.add((created_at, name))

    def grant(self, *, live_pods: int, passed_over: Callable[[str], bool]) -> list[str]:
        """Give the free slots to the oldest waiting sessions; those given one.

        `passed_over(name)`: the session leaves the queue without a slot (it has a pod,
        or no longer waits): only the caller's index and writes know."""
        if not self._waiting:
            return []
        free = admission.free_slots(self.max_sessions, live_pods, len(self._granted) + len(self._unindexed))
        granted = self._waiting.take(free, _Where(lambda name: self.holds_slot(name) or passed_over(name)))
        self._granted.update(granted)
        return granted

    def created(self, name: str, *, indexed: bool) -> None:
        """The granted session's pod exists now: it holds the slot until indexed (unless it
        already is: an event that came before the create's answer counts for itself)."""
        self._granted.discard(name)
        if not indexed:
            self._unindexed.add(name)

    def pod_indexed(self, name: str) -> None:
        """The session's pod is in the index now (or gone): it counts for itself."""
        self._unindexed.discard(name)

    def release(self, name: str) -> bool:
        """Give back a slot the session holds here (a failed create, no longer waiting, a
        pod never seen); True when it held one: the next waiting session may have it."""
        held = self.holds_slot(name)
        self._granted.discard(name)
        self._unindexed.discard(name)
        return held

    def forget(self, name: str) -> bool:
        """The session is gone: out of the queue, its slot (if any) given back; True then."""
        self._waiting.discard(name)
        return self.release(name)


class _Where:
    """A predicate as a container: WaitingQueue.take() asks `name in not_waiting`."""

    def __init__(self, test: Callable[[str], bool]) -> None:
        self._test = test

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._test(name)
