"""Who gets a slot (pure): capacity and the order of the waiting sessions.

A slot is a live instance pod: any of ours not Succeeded or Failed (a terminating
pod still uses its node), or one being created right now. Free slots go to the
waiting sessions first come, first served, by (creationTimestamp, name), so a
new session never jumps the queue.

The queue is a heap kept up to date as sessions come and go, not a scan of every
waiting session at each admission: with thousands waiting, a scan per pod event
made a burst O(N²) (docs/benchmarks.md, Scale).
"""
from __future__ import annotations

import heapq
from collections.abc import Container

# A waiting session: (creationTimestamp, name). RFC 3339 UTC strings of one
# format sort in time order.
QueueEntry = tuple[str, str]


def free_slots(max_sessions: int, live_pods: int, being_created: int) -> int:
    return max(0, max_sessions - live_pods - being_created)


class WaitingQueue:
    """The sessions waiting for a slot, oldest first.

    A heap with lazy removal: add() and take() are O(log n) per session, discard()
    is O(1) (the entry is dropped when it reaches the top). A session is in it at
    most once; one taken or discarded can be added again."""

    def __init__(self) -> None:
        self._heap: list[QueueEntry] = []
        self._queued: set[str] = set()

    def __len__(self) -> int:
        return len(self._queued)

    def __contains__(self, name: object) -> bool:
        return name in self._queued

    def add(self, entry: QueueEntry) -> None:
        if entry[1] not in self._queued:
            self._queued.add(entry[1])
            heapq.heappush(self._heap, entry)

    def discard(self, name: str) -> None:
        self._queued.discard(name)

    def take(self, free: int, not_waiting: Container[str]) -> list[str]:
        """Remove and return the oldest `free` waiting sessions. Those in `not_waiting`
        (being admitted already, with a pod, no longer Pending) leave the queue on the
        way without using a slot."""
        taken: list[str] = []
        while self._heap and len(taken) < free:
            _, name = heapq.heappop(self._heap)
            if name not in self._queued:
                continue  # discarded earlier, or an older entry of a session added again
            self._queued.discard(name)
            if name not in not_waiting:
                taken.append(name)
        if not self._queued:
            self._heap.clear()  # only stale entries left
        return taken
