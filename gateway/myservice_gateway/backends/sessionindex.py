"""The gateway's in-memory view of the namespace's MyServiceSessions, as the watch
delivers them (backends/kubernetes.py feeds it; no I/O here, event loop only).

Every operation costs O(1) in the number of sessions: a change wakes only the
calls waiting for that session, the per-user count is an index kept per event,
and a deleted session is remembered (bounded) so that its calls are told "has
ended" at once instead of waiting for a resource that will not come back."""
from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from myservice_api import crd

from .. import routes

# Names of deleted sessions remembered for an immediate "has ended" (~100 bytes each).
DELETED_REMEMBERED = 100_000


class SessionIndex:
    def __init__(self, on_finished: Callable[[dict | None], None] = lambda resource: None,
                 deleted_remembered: int = DELETED_REMEMBERED) -> None:
        self.items: dict[str, dict] = {}
        self.slots_by_user: dict[str, set[str]] = {}
        self._on_finished = on_finished
        self._deleted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._deleted_remembered = deleted_remembered
        self._waiters: dict[str, set[asyncio.Future]] = {}

    # ------------------------------------------------------------------ fed by the watch

    def replace(self, items: dict[str, dict]) -> None:
        """A full listing (start, or a re-list after the watch expired)."""
        for name in self.items.keys() - items.keys():
            self._remember_deleted(name)
        self.items = dict(items)
        self.slots_by_user = {}
        for name, resource in self.items.items():
            self._deleted.pop(name, None)
            self._count(name, resource)
        for name in list(self._waiters):  # rare: anything may have changed
            self._wake(name)

    def upsert(self, name: str, resource: dict) -> None:
        self.items[name] = resource
        self._deleted.pop(name, None)
        self._count(name, resource)
        if crd.is_terminal((resource.get("status") or {}).get("phase")):
            self._on_finished(resource)
        self._wake(name)

    def delete(self, name: str) -> None:
        gone = self.items.pop(name, None)
        self._count(name, None, gone)
        self._remember_deleted(name)
        self._on_finished(gone)
        self._wake(name)

    # ------------------------------------------------------------------ asked by calls

    def was_deleted(self, name: str) -> bool:
        """Whether the watch saw this session deleted (and not created again since)."""
        return name in self._deleted

    def live_sessions(self, user: str) -> int:
        """How many of the user's sessions count against the per-user limit."""
        return len(self.slots_by_user.get(user, ()))

    def reserve(self, user: str, name: str) -> None:
        """Count a session being created before its watch event arrives (two
        concurrent Logins of one user must not both pass the limit). A name made
        again after a deletion is no longer "deleted" from here on: its first call
        may come before the watch brings it."""
        self._deleted.pop(name, None)
        self.slots_by_user.setdefault(user, set()).add(name)

    def unreserve(self, user: str, name: str) -> None:
        """Undo reserve() when the create failed (unless the watch has it by now)."""
        if name not in self.items:
            self._count(name, None, {"spec": {"user": user}})

    def change_of(self, name: str) -> asyncio.Future:
        """A future completed at the next change of this session (and only of it).
        Pass it to forget() when done waiting."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, set()).add(future)
        return future

    def forget(self, name: str, future: asyncio.Future) -> None:
        waiting = self._waiters.get(name)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiters[name]

    def waiting(self) -> int:
        """Calls waiting for a change, all sessions together (for tests and metrics)."""
        return sum(len(w) for w in self._waiters.values())

    # ------------------------------------------------------------------ internals

    def _wake(self, name: str) -> None:
        for future in self._waiters.pop(name, ()):
            if not future.done():
                future.set_result(None)

    def _remember_deleted(self, name: str) -> None:
        self._deleted[name] = None
        self._deleted.move_to_end(name)
        while len(self._deleted) > self._deleted_remembered:
            self._deleted.popitem(last=False)

    def _count(self, name: str, resource: dict | None, previous: dict | None = None) -> None:
        """Count `name` for its user while it holds a slot (routes.holds_a_slot)."""
        user = ((resource or previous or {}).get("spec") or {}).get("user")
        if user is None:
            return
        names = self.slots_by_user.setdefault(user, set())
        if routes.holds_a_slot(resource):
            names.add(name)
        else:
            names.discard(name)
            if not names:
                del self.slots_by_user[user]
