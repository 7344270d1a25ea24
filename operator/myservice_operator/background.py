"""The reconciler's work off the event loop: blocking API calls on threads, and tasks
started in the background (a step for another session, a pool pod's create, an Event).

The `kubernetes` client is blocking: each call runs on one of a few threads, so
that the loop keeps taking watch events meanwhile; the threads bound the requests
in flight at once. Background tasks are kept until done, so that tests (and
nothing else) can wait for them all: settle().
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Coroutine
from typing import Any

# Threads for the blocking `kubernetes` client calls: the requests in flight at once.
API_THREADS = 8


class Background:
    def __init__(self, executor: concurrent.futures.Executor | None = None) -> None:
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(API_THREADS, thread_name_prefix="kube")
        self._tasks: set[asyncio.Task] = set()

    async def call(self, blocking: Callable[..., Any], *args: Any) -> Any:
        """Run one blocking API call on the API threads; its result (or its exception)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(blocking, *args))

    def spawn(self, work: Coroutine) -> None:
        """Start `work` as a task of its own; nobody awaits it but settle()."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait until no task is left, those started meanwhile included (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
