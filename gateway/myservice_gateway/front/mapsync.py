"""Keeps HAProxy's sessions map equal to the map keeper's wanted content, through
the runtime API: each change as it comes, in order, and the whole map replaced
atomically (prepare / add @version / commit) when asked (HAProxy started or
restarted, the gateway started). One writer task: commands never overtake one
another, and a rebuild supersedes every change queued before it."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable

from . import mapkeeper
from .runtime import RuntimeApiError, RuntimeClient

log = logging.getLogger("myservice.gateway.front")

_REBUILD = object()


class MapSync:
    def __init__(self, client: RuntimeClient, map_name: str, keeper: mapkeeper.MapKeeper | None = None) -> None:
        self.client = client
        self.map_name = map_name
        self.keeper = keeper or mapkeeper.MapKeeper()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._broken = False  # HAProxy did not take a change: only a rebuild makes the map true again
        self.rebuilds = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._write())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # ------------------------------------------------------------ told by the gateway

    def ready(self, session: Hashable, username: str, session_id: str, address: str) -> None:
        change = self.keeper.ready(session, username, session_id, address)
        if change is not None:
            self._queue.put_nowait(mapkeeper.command(change, self.map_name))

    def ended(self, session: Hashable) -> None:
        change = self.keeper.ended(session)
        if change is not None:
            self._queue.put_nowait(mapkeeper.command(change, self.map_name))

    def user_removed(self, username: str) -> None:
        for change in self.keeper.user_removed(username):
            self._queue.put_nowait(mapkeeper.command(change, self.map_name))

    def rebuild(self) -> None:
        """Replace HAProxy's whole map with the keeper's (HAProxy (re)started)."""
        self._queue.put_nowait(_REBUILD)

    async def settled(self) -> None:
        """Wait until every change and rebuild asked for so far has been sent."""
        await self._queue.join()

    # ------------------------------------------------------------ the writer

    async def _write(self) -> None:
        while True:
            items = [await self._queue.get()]
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            try:
                if any(item is _REBUILD for item in items):
                    await self._rebuild()
                elif not self._broken:
                    problems = await self.client.run_all(items)
                    if problems:  # e.g. a stale del: the map may differ from the keeper's
                        log.warning("HAProxy map: %s; rebuilding it", "; ".join(problems[:3]))
                        self._queue.put_nowait(_REBUILD)
            except RuntimeApiError as e:
                # HAProxy is away (restarting): its supervisor asks for a rebuild once it is back.
                log.warning("HAProxy map not updated: %s", e)
                self._broken = True
            finally:
                for _ in items:
                    self._queue.task_done()

    async def _rebuild(self) -> None:
        version = await self.client.prepare_map(self.map_name)
        problems = await self.client.run_all(
            mapkeeper.rebuild_commands(dict(self.keeper.entries), self.map_name, version))
        if problems:
            raise RuntimeApiError(f"add map @{version}: {'; '.join(problems[:3])}")
        await self.client.commit_map(self.map_name, version)
        self._broken = False
        self.rebuilds += 1
        log.info("HAProxy map rebuilt: %d sessions", len(self.keeper.entries))
