"""Who gets a slot (pure): capacity and the order of the waiting sessions.

A slot is a live instance pod: any of ours not Succeeded or Failed (a terminating
pod still uses its node), or one being created right now. Free slots go to the
waiting sessions first come, first served, by (creationTimestamp, name), so a
new session never jumps the queue.
"""
from __future__ import annotations

import heapq
from collections.abc import Container, Iterable

# A waiting session as the index keeps it: (creationTimestamp, name). RFC 3339
# UTC strings of one format sort in time order.
QueueEntry = tuple[str, str]


def free_slots(max_sessions: int, live_pods: int, being_created: int) -> int:
    return max(0, max_sessions - live_pods - being_created)


def next_admitted(waiting: Iterable[QueueEntry], free: int, skip: Container[str]) -> list[str]:
    """The names of the oldest `free` waiting sessions, leaving out those in `skip`
    (already being admitted, or with a pod already). O(waiting · log free)."""
    if free <= 0:
        return []
    return [name for _, name in heapq.nsmallest(free, (entry for entry in waiting if entry[1] not in skip))]
