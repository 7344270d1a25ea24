"""The Events of sessions' status changes, posted best effort (what `kubectl describe mss` lists).

Events are for people, best effort (client-go's recorder, too, drops them when its
queue is full): posted by threads of their own, so that they never hold up a status
write, and dropped (counted) beyond a backlog instead of draining long after a burst.
A post that fails is logged and forgotten: a lost Event changes no session.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping

from prometheus_client import Counter

log = logging.getLogger("myservice_operator")

EVENT_THREADS = 2
EVENT_BACKLOG = 500


class EventRecorder:
    def __init__(self, kube, *, spawn: Callable[[Coroutine], None],
                 dropped: Counter, executor: concurrent.futures.Executor | None = None,
                 backlog: int = EVENT_BACKLOG) -> None:
        self.kube = kube  # clients.Kube: its create_event is a blocking call
        self._spawn = spawn
        self._dropped = dropped
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            EVENT_THREADS, thread_name_prefix="kube-events")
        self.backlog = backlog
        self._in_flight = 0

    def record(self, event: Mapping) -> None:
        """Post the Event in the background, or drop it (counted) when the backlog is full."""
        if self._in_flight >= self.backlog:
            self._dropped.inc()
            return
        self._in_flight += 1
        self._spawn(self._post(event))

    async def _post(self, event: Mapping) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, functools.partial(self.kube.create_event, event))
        except Exception as error:  # an Event is for people: a lost one changes nothing
            log.warning("event %s on %s not posted: %s", event["reason"], event["involvedObject"]["name"], error)
        finally:
            self._in_flight -= 1
