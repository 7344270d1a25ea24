"""The threads that hash passwords: a few, at a lower CPU priority.

Their number bounds both the CPU and the memory Login can take (argon2id holds
64 MiB per hash while it runs); how many may wait for them is LoginGuard's
business. The hashing library releases the GIL, so a hash competes with the
event loop for a core, not for the interpreter: the workers lower their own
scheduling priority (Linux keeps a nice value per thread) so that the loop's
calls come first when both want a core (docs/benchmarks.md, login storm).
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("myservice.gateway.hashpool")

THREAD_NAME_PREFIX = "login-hash"


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
    def __init__(self, *, workers: int, nice: int) -> None:
        self.workers = workers
        self.nice = nice
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=THREAD_NAME_PREFIX,
            initializer=_lower_priority, initargs=(nice,))

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Run fn(*args) on a worker; the future's result is (fn's result, seconds it ran)."""
        return self._executor.submit(_timed, fn, args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
