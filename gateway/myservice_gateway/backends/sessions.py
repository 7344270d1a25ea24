"""The session table both backends share: whose each session is, how many live
sessions each user holds and the per-user limit, which sessions have ended, and
the first call's wait for its instance. The local and Kubernetes backends keep
only what differs: how an instance is started and found.

No I/O: bounded in-memory state and plain decisions, event loop only."""
from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

from myservice import errors
from myservice_api.crd import PodSource

K = TypeVar("K", bound=Hashable)

# Sessions whose end is remembered (so that their calls are told "has ended" at
# once), when the settings do not say: about 100 bytes each.
ENDED_REMEMBERED = 100_000

StartListener = Callable[[float, PodSource], None]
"""Told how long a new session's first call waited for its instance, and how the
instance was had (PodSource.WARM: a warm pool member; COLD: started for it)."""


def no_listener(seconds: float, source: PodSource) -> None:
    pass


class EndedSessions(Generic[K]):
    """The sessions that have ended, the most recent `size` of them (an LRU)."""

    def __init__(self, size: int = ENDED_REMEMBERED) -> None:
        if size < 1:
            raise ValueError(f"must remember at least one ended session, got {size}")
        self.size = size
        self._keys: collections.OrderedDict[K, None] = collections.OrderedDict()
        # Told each session that ends, as it ends (the front drops its route: front/).
        self.on_end: Callable[[K], None] = lambda key: None

    def add(self, key: K) -> None:
        self.on_end(key)
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def discard(self, key: K) -> None:
        """The session exists again (made anew under the same name)."""
        self._keys.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


class UserSlots(Generic[K]):
    """The live sessions of each user: what the per-user limit counts. O(1) per change."""

    def __init__(self) -> None:
        self._by_user: dict[str, set[K]] = {}
        self.total = 0

    def hold(self, user: str, key: K) -> None:
        held = self._by_user.setdefault(user, set())
        if key not in held:
            held.add(key)
            self.total += 1

    def release(self, user: str, key: K) -> None:
        held = self._by_user.get(user)
        if held is not None and key in held:
            held.discard(key)
            self.total -= 1
            if not held:
                del self._by_user[user]

    def count(self, user: str) -> int:
        return len(self._by_user.get(user, ()))

    def held(self, user: str) -> frozenset[K]:
        """The user's live sessions (a copy: safe to end them while iterating)."""
        return frozenset(self._by_user.get(user, ()))

    def users(self) -> Iterable[str]:
        return self._by_user.keys()

    def clear(self) -> None:
        self._by_user.clear()
        self.total = 0


def admit(slots: UserSlots, user: str, max_per_user: int) -> None:
    """Raises the per-user limit's error if `user` may not start another session
    (`max_per_user` 0: no limit)."""
    if max_per_user and slots.count(user) >= max_per_user:
        raise errors.per_user_limit(max_per_user)


def check_owner(owner: str | None, user: str) -> None:
    """Raises unless the session's recorded owner is `user`. Names are derived from
    (user, session_id), so a mismatch takes a hash collision or a resource made by
    hand: never route a token to another user's instance."""
    if owner != user:
        raise errors.session_of_another_user()


def wait_limit(call_timeout: float | None, ready_timeout: float | None) -> float | None:
    """How long a first call waits for its instance: its own deadline, at most the
    backend's ready timeout (None: no limit of that kind)."""
    if call_timeout is None:
        return ready_timeout
    if ready_timeout is None:
        return call_timeout
    return min(call_timeout, ready_timeout)


class SessionTable:
    """One backend's sessions: slots per user, ended sessions, the start wait."""

    def __init__(self, *, max_per_user: int = 0, ready_timeout: float | None = None,
                 slots: UserSlots | None = None, ended: EndedSessions | None = None,
                 ended_remembered: int = ENDED_REMEMBERED) -> None:
        self.max_per_user = max_per_user  # 0: no per-user limit
        self.ready_timeout = ready_timeout  # None: the backend's own start failure ends the wait
        self.slots: UserSlots = slots if slots is not None else UserSlots()
        self.ended: EndedSessions = ended if ended is not None else EndedSessions(ended_remembered)
        self.on_session_start: StartListener = no_listener

    def admit(self, user: str) -> None:
        admit(self.slots, user, self.max_per_user)

    def started(self, seconds: float, source: PodSource) -> None:
        self.on_session_start(seconds, source)

    async def wait_for_start(self, instance: Awaitable[tuple[object, PodSource]], *,
                             call_timeout: float | None):
        """The first call's wait: `instance` resolves to (endpoint, source) or raises
        a ContractError; past the wait limit the call gets DEADLINE_EXCEEDED."""
        limit = wait_limit(call_timeout, self.ready_timeout)
        begun = time.monotonic()
        try:
            endpoint, source = await asyncio.wait_for(instance, limit)
        except asyncio.TimeoutError:
            raise errors.not_ready_in_time(limit) from None
        self.started(time.monotonic() - begun, source)
        return endpoint
