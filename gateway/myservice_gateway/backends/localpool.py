"""The local warm pool's decisions: pure functions over counts, no processes.

The pool is N idle instance processes, started and unbound, so that a new
session's first call takes one that already answers instead of waiting for a
Python process to start. `--max-instances` bounds every process, idle or bound:
pool members are spare capacity, never reserved against sessions. A session
always takes a pool member before the table counts as full, so a new session is
never refused while an idle pool process exists.
"""
from __future__ import annotations

import enum
import os


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
    WARM = "warm"            # a ready pool member: no wait
    POOL_STARTING = "pool-starting"  # a pool member still starting: wait for the rest of its start
    COLD = "cold"            # a process started for this session
    BUSY = "busy"            # every process slot is taken by a session


def source_for_new_session(*, ready: int, starting: int, processes: int, max_instances: int) -> Source:
    """`ready`/`starting`: unclaimed pool members; `processes`: every live process
    (sessions' and the pool's). A starting member goes before a cold start: it is
    already part way through the same start, and the pool refills either way."""
    if ready:
        return Source.WARM
    if starting:
        return Source.POOL_STARTING
    if processes < max_instances:
        return Source.COLD
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
