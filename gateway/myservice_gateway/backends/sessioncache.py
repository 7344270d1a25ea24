"""The gateway's watch of the namespace's MyServiceSessions: the shared reflector
(myservice_api.reflector: list, watch, re-list on 410, backoff) on its own
thread, each change applied to a SessionIndex on the event loop."""
from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

from myservice_api import crd, reflector

from .sessionindex import SessionIndex

if TYPE_CHECKING:
    import kubernetes


class SessionCache:
    """`index` holds what the watch has delivered; `synced` is set (on the event loop)
    once the first listing is in it."""

    def __init__(self, api: kubernetes.client.CustomObjectsApi, namespace: str, loop: asyncio.AbstractEventLoop,
                 *, index: SessionIndex, watch_seconds: int = reflector.WATCH_SECONDS):
        self._loop = loop
        self.index = index
        self.synced = asyncio.Event()
        self.reflector = reflector.Reflector(
            functools.partial(api.list_namespaced_custom_object, crd.GROUP, crd.VERSION, namespace, crd.PLURAL),
            on_replace=self._replace, on_change=self._change, name="mss-reflector", watch_seconds=watch_seconds)

    def start(self) -> None:
        self.reflector.start()

    def stop(self) -> None:
        # Called on the event loop: do not wait for the thread (it ends at its next step).
        self.reflector.stop(timeout=0)

    # Called on the reflector's thread: the index belongs to the event loop.

    def _replace(self, items: dict[str, dict]) -> None:
        def apply() -> None:
            self.index.replace(items)
            self.synced.set()

        self._loop.call_soon_threadsafe(apply)

    def _change(self, kind: str, name: str, obj: dict) -> None:
        if kind == "DELETED":
            self._loop.call_soon_threadsafe(self.index.delete, name)
        else:
            self._loop.call_soon_threadsafe(self.index.upsert, name, obj)
