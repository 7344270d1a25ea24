"""The hashing pool (hashpool.py) with real threads: bounded workers at a lower
priority, the waiting line served lowest rank first (first come among equals),
callers that leave, waits that expire."""
import asyncio
import os
import threading

import pytest

from myservice_gateway.hashpool import HashPool, LoginQueueTimeout, Waiting, WaitingLine

from ..conftest import eventually


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_waiting_line_serves_lowest_rank_first_newest_among_equals_and_expires():
    line = WaitingLine(max_wait=5.0)
    ranks = {0.0: (1,), 1.0: (0,), 2.0: (0,), 3.0: (0,), 4.0: (2,), 4.5: (0,)}
    jobs = [Waiting(print, (), since, None, print, rank=lambda r=rank: r) for since, rank in ranks.items()]
    for job in jobs:
        line.push(job)
    assert line.remove(jobs[2]) and not line.remove(jobs[2])
    assert line.expired(6.5) == [jobs[0], jobs[1]]  # waited 6.5 and 5.5 s
    assert line.next() is jobs[5]  # rank 0, the newest
    assert line.next() is jobs[3]  # rank 0, before rank 2
    assert line.next() is jobs[4] and line.next() is None and len(line) == 0


def test_ranks_are_read_when_a_worker_frees_up():
    line = WaitingLine()
    rank = {"a": (0,), "b": (1,)}
    a = Waiting(print, (), 0.0, None, print, rank=lambda: rank["a"])
    b = Waiting(print, (), 1.0, None, print, rank=lambda: rank["b"])
    line.push(a)
    line.push(b)
    rank["a"] = (5,)  # e.g. a failure of a's address while it waited
    assert line.next() is b


class Gate:
    """A job function that blocks until released, recording the order jobs ran in."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.release = threading.Event()

    def job(self, name: str) -> str:
        self.ran.append(name)
        assert self.release.wait(10)
        return name


async def test_workers_bound_the_running_jobs_and_the_waiting_go_in_rank_order():
    pool = HashPool(workers=1, nice=0)
    gate, ended, started = Gate(), [], []
    ranks = {"first": (0,), "old": (2,), "middle": (1,), "new": (1,)}  # among equals: newest first
    try:
        results = [pool.start(gate.job, name, on_end=lambda done, n=name: ended.append((n, done is not None)),
                              rank=lambda n=name: ranks[n], on_start=lambda n=name: started.append(n))
                   for name in ("first", "old", "middle", "new")]
        assert await eventually(lambda: gate.ran == ["first"])
        assert (pool.running, pool.waiting, started) == (1, 3, ["first"])
        gate.release.set()
        values = [await r for r in results]
        assert [value for value, _seconds in values] == ["first", "old", "middle", "new"]
        assert gate.ran == started == ["first", "new", "middle", "old"]
        assert ended == [("first", True), ("new", True), ("middle", True), ("old", True)]
    finally:
        gate.release.set()
        pool.close()


async def test_a_caller_that_leaves_while_waiting_is_dropped_at_once():
    pool = HashPool(workers=1, nice=0)
    gate, ended = Gate(), []
    try:
        running = pool.start(gate.job, "running", on_end=lambda done: ended.append(("running", done is not None)))
        waiting = pool.start(gate.job, "waiting", on_end=lambda done: ended.append(("waiting", done is not None)))
        assert await eventually(lambda: gate.ran == ["running"])
        waiting.cancel()
        await asyncio.sleep(0)
        assert (pool.waiting, ended) == (0, [("waiting", False)])  # never ran: on_end(None)
        running.cancel()  # a running job runs on; its end is still reported
        gate.release.set()
        assert await eventually(lambda: len(ended) == 2)
        assert ended[1] == ("running", True) and gate.ran == ["running"] and pool.running == 0
    finally:
        gate.release.set()
        pool.close()


async def test_a_job_that_waited_too_long_is_refused_when_a_worker_frees_up():
    clock = Clock()
    pool = HashPool(workers=1, nice=0, max_wait=5.0, clock=clock)
    gate, ended = Gate(), []
    try:
        first = pool.start(gate.job, "first", on_end=lambda done: ended.append("first"))
        stale = pool.start(gate.job, "stale", on_end=lambda done: ended.append(("stale", done)))
        clock.now = 4.0
        fresh = pool.start(gate.job, "fresh", on_end=lambda done: ended.append("fresh"))
        clock.now = 5.5
        gate.release.set()
        assert (await first)[0] == "first" and (await fresh)[0] == "fresh"
        with pytest.raises(LoginQueueTimeout):
            await stale
        assert ended == ["first", ("stale", None), "fresh"] and gate.ran == ["first", "fresh"]
    finally:
        gate.release.set()
        pool.close()


async def test_workers_run_at_the_lowered_priority_and_errors_reach_the_caller():
    pool = HashPool(workers=2, nice=7)
    try:
        def nice_of_this_thread():
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        nice, _seconds = await pool.start(nice_of_this_thread, on_end=lambda d: None)
        assert nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != nice  # the loop's thread is untouched

        def broken():
            raise RuntimeError("users file gone")

        with pytest.raises(RuntimeError, match="users file gone"):
            await pool.start(broken, on_end=lambda d: None)
        assert pool.running == 0
    finally:
        pool.close()


async def test_a_job_refused_when_its_turn_comes_never_runs():
    pool = HashPool(workers=1, nice=0)
    gate, ended = Gate(), []
    try:
        first = pool.start(gate.job, "first", on_end=lambda done: ended.append(("first", done is not None)))
        refused = pool.start(gate.job, "refused", on_end=lambda done: ended.append(("refused", done is not None)),
                             refused=lambda: ValueError("throttled meanwhile"))
        assert await eventually(lambda: gate.ran == ["first"])
        gate.release.set()
        assert (await first)[0] == "first"
        with pytest.raises(ValueError, match="throttled meanwhile"):
            await refused
        assert gate.ran == ["first"] and ended == [("first", True), ("refused", False)]
    finally:
        gate.release.set()
        pool.close()
