"""The threads that hash passwords: a few, at a lower CPU priority, and the line
of Logins waiting for them, served in a fair order.

The number of threads bounds both the CPU and the memory Login can take (argon2id
holds 64 MiB per hash while it runs; users.py computes each hash on one thread).
The hashing library releases the GIL, so a hash competes with the event loop for
a core, not for the interpreter: the workers lower their own scheduling priority
(Linux keeps a nice value per thread) so that the loop's calls come first when
both want the same core, as in a pod whose CPU limit is below its thread count
(docs/benchmarks.md, login storm).

How many may wait is LoginGuard's decision (its queue bound); in what order they
are served too (`LoginGuard.rank`, given to each job): this module serves the
lowest rank first, newest first among equals. So that no one waits
forever under a sustained flood, a Login that has waited max_wait seconds
(MYSERVICE_LOGIN_QUEUE_MAX_WAIT_SECONDS) is refused (LoginQueueTimeout).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("myservice.gateway.hashpool")

THREAD_NAME_PREFIX = "login-hash"
MAX_WAIT_SECONDS = 10.0


class LoginQueueTimeout(Exception):
    """Waited max_wait seconds for a hashing thread without getting one."""


@dataclasses.dataclass(eq=False)
class Waiting:
    """A job in line: what to run, since when, where its result goes, and its place
    in the order (`rank()`: lowest first; evaluated when a worker frees up, as the
    ranks of those waiting change while they wait)."""
    fn: Callable[..., Any]
    args: tuple
    since: float
    result: asyncio.Future
    on_end: Callable[[concurrent.futures.Future | None], None]
    rank: Callable[[], tuple] = lambda: ()
    on_start: Callable[[], None] = lambda: None
    # Asked when its turn comes: an exception to answer with instead of running it
    # (e.g. failures while it waited have throttled its address), or None.
    refused: Callable[[], BaseException | None] = lambda: None


class WaitingLine:
    """Jobs waiting for a worker: the lowest rank is served first, the newest among
    equals (after a burst, whoever comes next is not queued behind it; the older
    ones have most likely given up); those that waited longer than max_wait are
    given up. Pure: time is
    passed in. A scan per served job: the line is bounded (LoginGuard's queue) and a
    scan of a thousand is far below one hash."""

    def __init__(self, max_wait: float = MAX_WAIT_SECONDS) -> None:
        self.max_wait = max_wait
        self._jobs: list[Waiting] = []  # in arrival order

    def __len__(self) -> int:
        return len(self._jobs)

    def push(self, job: Waiting) -> None:
        self._jobs.append(job)

    def remove(self, job: Waiting) -> bool:
        try:
            self._jobs.remove(job)
            return True
        except ValueError:
            return False

    def expired(self, now: float) -> list[Waiting]:
        """Take out the jobs that have waited too long (oldest first)."""
        gone = [job for job in self._jobs if now - job.since > self.max_wait]
        if gone:
            self._jobs = [job for job in self._jobs if now - job.since <= self.max_wait]
        return gone

    def next(self) -> Waiting | None:
        if not self._jobs:
            return None
        best = min(range(len(self._jobs)), key=lambda i: (self._jobs[i].rank(), -i))
        return self._jobs.pop(best)


def _lower_priority(nice: int) -> None:
    if nice <= 0:
        return
    try:
        # PRIO_PROCESS with a thread id sets that one thread's nice value on Linux.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError) as e:  # not Linux, or a sandbox refusing it: hashing still works
        log.warning("cannot lower the priority of password hashing threads: %s", e)


def _timed(fn: Callable[..., Any], args: tuple) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


class HashPool:
    """Runs jobs on `workers` threads; the rest wait in a WaitingLine. Use from the
    event loop only (start() and the callbacks run there)."""

    def __init__(self, *, workers: int, nice: int, max_wait: float = MAX_WAIT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = workers
        self.nice = nice
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=THREAD_NAME_PREFIX,
            initializer=_lower_priority, initargs=(nice,))
        self._line = WaitingLine(max_wait)
        self.running = 0

    @property
    def waiting(self) -> int:
        return len(self._line)

    def start(self, fn: Callable[..., Any], *args: Any,
              on_end: Callable[[concurrent.futures.Future | None], None],
              rank: Callable[[], tuple] = lambda: (), on_start: Callable[[], None] = lambda: None,
              refused: Callable[[], BaseException | None] = lambda: None) -> asyncio.Future:
        """fn(*args) on a worker, now or when one is free; the returned future gets
        (fn's result, seconds it ran), or LoginQueueTimeout. `on_end` is called once,
        on the loop, when the job is over: with its finished concurrent future, or
        with None if it never ran (its caller went away, or it waited too long).
        Cancelling the returned future drops a waiting job; a running one runs on.
        `rank` orders waiting jobs (lowest first); `on_start` is called when the job
        gets a worker; `refused`, asked when a waiting job's turn comes, may answer it
        with an exception instead (on_end then gets None)."""
        loop = asyncio.get_running_loop()
        job = Waiting(fn, args, self._clock(), loop.create_future(), on_end, rank, on_start, refused)
        if self.running < self.workers:
            self._run(job)
        else:
            self._line.push(job)
            job.result.add_done_callback(lambda _f: self._left(job))
        return job.result

    def _left(self, job: Waiting) -> None:
        if job.result.cancelled() and self._line.remove(job):  # its caller went away while waiting
            job.on_end(None)

    def _run(self, job: Waiting) -> None:
        loop = asyncio.get_running_loop()
        self.running += 1
        job.on_start()
        work = self._executor.submit(_timed, job.fn, job.args)

        def finished(done: concurrent.futures.Future) -> None:  # on the worker thread
            try:
                loop.call_soon_threadsafe(self._ended, job, done)
            except RuntimeError:  # the loop is closed: the gateway has stopped
                pass

        work.add_done_callback(finished)

    def _ended(self, job: Waiting, done: concurrent.futures.Future) -> None:
        self.running -= 1
        if not job.result.done():  # else its caller has gone; the result is dropped
            if done.cancelled():
                job.result.cancel()
            elif done.exception() is not None:
                job.result.set_exception(done.exception())
            else:
                job.result.set_result(done.result())
        job.on_end(done)
        for stale in self._line.expired(self._clock()):
            stale.result.set_exception(LoginQueueTimeout())
            stale.on_end(None)
        while self.running < self.workers:
            nxt = self._line.next()
            if nxt is None:
                break
            problem = nxt.refused()
            if problem is None:
                self._run(nxt)
                continue
            if not nxt.result.done():
                nxt.result.set_exception(problem)
            nxt.on_end(None)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
