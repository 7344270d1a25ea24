"""Removed users lose their sessions: the users file (a mounted Secret on
Kubernetes) is re-read off the event loop every `period` seconds when it changed
(one stat; a re-read may hash plain-password entries, users.py). A user no longer
in it is refused at once on every forwarded call (UNAUTHENTICATED "invalid token",
checked after the token, auth.py), and each of their live sessions is ended
(backend.end_sessions_of: the local instance gets SIGTERM, the Kubernetes resource
is deleted). A user added back may log in again: their old sessions stay ended.

So a removed user's token stops working within `period` seconds of the file's
change reaching this gateway (on Kubernetes the kubelet refreshes a mounted
Secret within about a minute). A users file that cannot be read changes nothing:
the last good list stays, the error is logged once."""
from __future__ import annotations

import asyncio
import logging

from .backends.base import Backend
from .users import UserStore, UserStoreError

log = logging.getLogger("myservice.gateway.users")

PERIOD_SECONDS = 1.0


def removed(before: frozenset[str], after: frozenset[str]) -> list[str]:
    return sorted(before - after)


class UserWatch:
    def __init__(self, users: UserStore, backend: Backend, *, period: float = PERIOD_SECONDS) -> None:
        self._users = users
        self._backend = backend
        self._period = period
        self.names = users.names()  # at start-up, before any call: blocking is fine here
        self._task: asyncio.Task | None = None
        self._failing = False

    def exists(self, username: str) -> bool:
        """Whether the user is in the users file as last read: per call, a set look-up."""
        return username in self.names

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="user-watch")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            await self.check()

    async def check(self) -> list[str]:
        """Re-read the file if it changed; end the sessions of users that are gone."""
        try:
            names = await asyncio.to_thread(self._users.names)
        except UserStoreError as e:
            if not self._failing:
                log.error("users file: %s (keeping the last good list of %d users)", e, len(self.names))
            self._failing = True
            return []
        self._failing = False
        gone = removed(self.names, names)
        self.names = names
        for username in gone:
            ended = await self._backend.end_sessions_of(username)
            log.warning("user %r was removed from the users file: tokens refused, %d live session(s) ended",
                        username, ended)
        return gone
