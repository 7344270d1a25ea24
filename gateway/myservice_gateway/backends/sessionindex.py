"""The gateway's in-memory view of the namespace's MyServiceSessions, as the watch
delivers them (backends/kubernetes.py feeds it; no I/O here, event loop only).

Every operation costs O(1) in the number of sessions: a change wakes only the
calls waiting for that session, the per-user count (the session table's slots,
keyed by resource name) is kept per event, and a deleted session goes into the
table's ended sessions, so that its calls are told "has ended" at once instead
of waiting for a resource that will not come back."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from myservice_api import crd

from . import routes
from .sessions import SessionTable


class SessionIndex:
    def __init__(self, table: SessionTable | None = None,
                 on_finished: Callable[[dict | None], None] = lambda resource: None,
                 on_ready: Callable[[str, dict], None] = lambda name, resource: None) -> None:
        self.items: dict[str, dict] = {}
        self.table = table if table is not None else SessionTable()
        self._slots = self.table.slots
        self._ended = self.table.ended
        self._on_finished = on_finished
        self._on_ready = on_ready  # told every event of a Ready session (the front's map)
        self._waiters: dict[str, set[asyncio.Future]] = {}

    # ------------------------------------------------------------------ fed by the watch

    def replace(self, items: dict[str, dict]) -> None:
        """A full listing (start, or a re-list after the watch expired)."""
        for name in self.items.keys() - items.keys():
            self._ended.add(name)
        self.items = dict(items)
        self._slots.clear()
        for name, resource in self.items.items():
            self._ended.discard(name)
            self._count(name, resource)
            self._told(name, resource)  # what changed while the watch was away, as if seen
        for name in list(self._waiters):  # rare: anything may have changed
            self._wake(name)

    def upsert(self, name: str, resource: dict) -> None:
        self.items[name] = resource
        self._ended.discard(name)
        self._count(name, resource)
        self._told(name, resource)
        self._wake(name)

    def delete(self, name: str) -> None:
        gone = self.items.pop(name, None)
        self._count(name, None, gone)
        self._ended.add(name)
        self._on_finished(gone)
        self._wake(name)

    # ------------------------------------------------------------------ asked by calls

    def reserve(self, user: str, name: str) -> None:
        """Count a session being created before its watch event arrives (two
        concurrent Logins of one user must not both pass the limit). A name made
        again after a deletion is no longer "deleted" from here on: its first call
        may come before the watch brings it."""
        self._ended.discard(name)
        self._slots.hold(user, name)

    def unreserve(self, user: str, name: str) -> None:
        """Undo reserve() when the create failed or the resource is another user's
        (unless the watch has it by now as this user's)."""
        resource = self.items.get(name)
        if resource is None or routes.owner_of(resource) != user:
            self._slots.release(user, name)

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

    def _told(self, name: str, resource: dict) -> None:
        if crd.is_terminal((resource.get("status") or {}).get("phase")):
            self._on_finished(resource)
        elif routes.ready_address(resource):
            self._on_ready(name, resource)

    def _wake(self, name: str) -> None:
        for future in self._waiters.pop(name, ()):
            if not future.done():
                future.set_result(None)

    def _count(self, name: str, resource: dict | None, previous: dict | None = None) -> None:
        """Count `name` for its user while it holds a slot (routes.holds_a_slot)."""
        user = ((resource or previous or {}).get("spec") or {}).get("user")
        if user is None:
            return
        if routes.holds_a_slot(resource):
            self._slots.hold(user, name)
        else:
            self._slots.release(user, name)
