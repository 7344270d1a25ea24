"""The reconciler's work off the event loop: blocking API calls on threads, and tasks
started in the background (a step for another session, a pool pod's create, an Event).

The `kubernetes` client is blocking: each call runs on one of a few threads, so
that the loop keeps taking watch events meanwhile; the threads bound the requests
in flight at once. When they are all busy, a call a session waits for (its status,
its pod) goes before the warm pool's upkeep (labels, refills): in a burst of warm
claims, a refill's create must not delay the claim that made it necessary (the scale
run's claim burst: one pod create per claim shared the threads with the claims, and
halved their rate). Background tasks are kept until done, so that tests (and nothing
else) can wait for them all: settle().
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import functools
import heapq
import itertools
import threading
from collections.abc import Callable, Coroutine
from typing import Any

# Threads for the blocking `kubernetes` client calls: the requests in flight at once.
API_THREADS = 8


class Urgency(enum.IntEnum):
    """Which call gets a free API thread first (the lower first)."""
    SESSION = 0   # a session waits for it: its status, its pod, its end
    UPKEEP = 1    # nobody waits: the warm pool's labels, creates and deletes


class PriorityGate:
    """`permits` holders at once; a free permit goes to the most urgent waiter, and among
    equals to the first come. Cancelled waiters give up their place."""

    def __init__(self, permits: int) -> None:
        self._free = permits
        self._waiting: list[tuple[int, int, asyncio.Future]] = []
        self._order = itertools.count()

    async def acquire(self, urgency: Urgency) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (int(urgency), next(self._order), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed a permit just as it was cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)  # the permit passes straight to the waiter
                return
        self._free += 1


class Background:
    def __init__(self, executor: concurrent.futures.Executor | None = None, threads: int = API_THREADS) -> None:
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="kube")
        self._gate = PriorityGate(threads)
        self._tasks: set[asyncio.Task] = set()

    async def call(self, blocking: Callable[..., Any], *args: Any, urgency: Urgency = Urgency.SESSION) -> Any:
        """Run one blocking API call on the API threads, when one is free for its urgency;
        its result (or its exception)."""
        await self._gate.acquire(urgency)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(blocking, *args))
        finally:
            self._gate.release()

    def spawn(self, work: Coroutine) -> None:
        """Start `work` as a task of its own; nobody awaits it but settle()."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self, timeout: float) -> bool:
        """No more calls; wait up to `timeout` s for those on the threads to end (queued ones
        are dropped). True when none is left: only then may this replica give up the Lease,
        since a status write still in flight could land after a new leader has read the
        sessions and hand their pods out again. False: let the Lease expire instead."""
        done = threading.Event()

        def shutdown() -> None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            done.set()
        threading.Thread(target=shutdown, name="kube-close", daemon=True).start()
        return done.wait(timeout)

    async def settle(self) -> None:
        """Wait until no task is left, those started meanwhile included (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
