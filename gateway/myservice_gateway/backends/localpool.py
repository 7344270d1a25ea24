"""The local warm pool: its decisions as pure functions over counts, and its
state (WarmPool: members, pacing), with no processes of its own.

The pool is N idle instance processes, started and unbound, so that a new
session's first call takes one that already answers instead of waiting for a
Python process to start. `--max-instances` bounds every process, idle or bound:
pool members are spare capacity, never reserved against sessions. A session
always takes a pool member before the table counts as full, so a new session is
never refused while an idle pool process exists.
"""
from __future__ import annotations

import asyncio
import enum
import os
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

M = TypeVar("M", bound=Hashable)


def starts_at_once(cores: int | None = None) -> int:
    """Pool members started at once: half the usable cores, at least one. Each start
    takes a core for ~0.3 s (Python and gRPC imports); refilling faster would take
    every core from the calls of live sessions while a drained pool refills."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
    return max(1, cores // 2)

# A claim holds the pool's starts back this long: a process start takes a core for
# ~0.3 s, and one begun at the claim delays that session's first call (measured:
# 3.5 ms without, 30-40 ms with, on 2 cores); a burst of claims is served first.
CLAIM_QUIET_SECONDS = 0.25
# After consecutive failed pool starts (a broken interpreter, a full disk) the
# pool waits this long, doubling, before it tries again (cold starts still try).
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


class Source(enum.Enum):
    """Where a new session's instance comes from."""
    READY_MEMBER = enum.auto()     # a ready pool member: no wait (a warm start)
    STARTING_MEMBER = enum.auto()  # a pool member still starting: wait for the rest of its start
    NEW_PROCESS = enum.auto()      # a process started for this session
    BUSY = enum.auto()             # every process slot is taken by a session


def source_for_new_session(*, ready: int, starting: int, processes: int, max_instances: int) -> Source:
    """`ready`/`starting`: unclaimed pool members; `processes`: every live process
    (sessions' and the pool's). A starting member goes before a cold start: it is
    already part way through the same start, and the pool refills either way."""
    if ready:
        return Source.READY_MEMBER
    if starting:
        return Source.STARTING_MEMBER
    if processes < max_instances:
        return Source.NEW_PROCESS
    return Source.BUSY


def pool_starts_due(*, pool_size: int, members: int, starting: int, processes: int, max_instances: int,
                    at_once: int) -> int:
    """How many pool members to start now: up to `pool_size` unclaimed members
    (`members` counts ready and starting ones), within the process bound, at most
    `at_once` starting at a time."""
    wanted = pool_size - members
    room = max_instances - processes
    concurrency = at_once - starting
    return max(0, min(wanted, room, concurrency))


def retry_delay(failures: int) -> float:
    """Seconds before the next pool start after `failures` consecutive failed ones (0: none failed)."""
    if failures <= 0:
        return 0.0
    return min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (failures - 1))


class WarmPool(Generic[M]):
    """The pool's members and pacing (no processes: `start_member` makes one start).

    `ready` and `starting` are unclaimed members, oldest first (dicts as ordered
    sets). Starts are held back after a claim (CLAIM_QUIET_SECONDS) and after
    failed starts (retry_delay), then resumed by a timer."""

    def __init__(self, *, size: int, max_instances: int, processes: Callable[[], int],
                 start_member: Callable[[], M], at_once: int | None = None) -> None:
        self.size = size  # 0: off
        self.max_instances = max_instances
        self.at_once = starts_at_once() if at_once is None else at_once
        self.ready: dict[M, None] = {}
        self.starting: dict[M, None] = {}
        self._processes = processes  # every live process, sessions' and the pool's
        self._start_member = start_member
        self._failures = 0  # consecutive failed starts
        self._not_before = 0.0  # monotonic time before which no member is started
        self._timer: asyncio.TimerHandle | None = None
        self.closing = False

    def __len__(self) -> int:
        return len(self.ready) + len(self.starting)

    def source_for_new_session(self) -> Source:
        return source_for_new_session(ready=len(self.ready), starting=len(self.starting),
                                      processes=self._processes(), max_instances=self.max_instances)

    def take_ready(self) -> M:
        member = next(iter(self.ready))
        del self.ready[member]
        return member

    def take_starting(self) -> M:
        member = next(iter(self.starting))
        del self.starting[member]
        return member

    def claimed(self) -> None:
        """A session took a ready member: hold starts back, once per series of claims
        (steady claims still refill)."""
        if time.monotonic() >= self._not_before:
            self._hold(CLAIM_QUIET_SECONDS)

    def started(self, member: M) -> None:
        del self.starting[member]
        self.ready[member] = None
        self._failures = 0

    def failed(self, member: M) -> None:
        """A member's start failed (call before any await: nobody may take it now)."""
        self.starting.pop(member, None)
        self._failures += 1
        self._hold(retry_delay(self._failures))

    def exited(self, member: M) -> None:
        self.ready.pop(member, None)

    def refill(self) -> None:
        """Start members as pool_starts_due says; not while held back."""
        if self.closing or not self.size:
            return
        wait = self._not_before - time.monotonic()
        if wait > 0:
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(wait, self._timed_refill)
            return
        due = pool_starts_due(pool_size=self.size, members=len(self), starting=len(self.starting),
                              processes=self._processes(), max_instances=self.max_instances, at_once=self.at_once)
        for _ in range(due):
            self.starting[self._start_member()] = None

    def close(self) -> None:
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()

    def _hold(self, seconds: float) -> None:
        self._not_before = max(self._not_before, time.monotonic() + seconds)

    def _timed_refill(self) -> None:
        self._timer = None
        self.refill()
