"""One watcher of a Kubernetes collection, as client-go's reflector and
kubespawner's reflector.py: list, then watch from the list's resourceVersion
(bookmarks keep it fresh while nothing changes), re-list when the server has
forgotten that version (410 Gone), back off exponentially with jitter while the
API fails; `synced` once the first listing is delivered; stop() ends it at once.

It runs on a thread of its own with the sync client and tells its owner through
two callbacks, called on that thread: on_replace(items) with a whole listing
(the first, or a re-list), on_change(type, key, object) per watch event.

The server ends each watch after `watch_seconds`, and the reflector starts the
next from where it was: a stream that died silently stalls it no longer than that.
What to do after a list or a watch (re-list or resume, how long to wait) are the
pure functions after_list() and after_watch(); Reflector only carries them out.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

log = logging.getLogger("myservice.reflector")

WATCH_SECONDS = 240
# Client-side read timeout beyond the server's own end of the watch: longer than
# that, shorter than forever (a dropped connection the kernel never reports).
READ_MARGIN_SECONDS = 30
CONNECT_TIMEOUT = 10
LIST_TIMEOUT = 30
GONE = 410


class Outcome(enum.Enum):
    """How a watch ended."""
    EXPIRED = "expired"  # the server closed it after timeout_seconds: the normal end
    GONE = "gone"        # 410: the server no longer has our resourceVersion
    FAILED = "failed"    # no answer, an error status, a broken stream


@dataclasses.dataclass(frozen=True)
class Backoff:
    """client-go's defaults: 0.8 s doubling up to 30 s."""
    initial: float = 0.8
    cap: float = 30.0

    def delay(self, failures: int, rand: float) -> float:
        """Seconds to wait after `failures` failures in a row (0: none). rand in [0, 1):
        the wait is jittered over the upper half, so that gateways that lost the API
        together do not come back together."""
        if failures <= 0:
            return 0.0
        ceiling = min(self.cap, self.initial * 2 ** min(failures - 1, 32))
        return ceiling / 2 * (1 + rand)


@dataclasses.dataclass(frozen=True)
class Next:
    """What the reflector does next: re-list or watch, after `delay` seconds."""
    relist: bool
    delay: float
    failures: int  # in a row, for the next decision


def after_list(ok: bool, *, failures: int, backoff: Backoff, rand: float) -> Next:
    """A listing delivered is not yet proof of health (a watch may fail right after):
    the failure count is reset only by a watch that worked."""
    if ok:
        return Next(relist=False, delay=0.0, failures=failures)
    failures += 1
    return Next(relist=True, delay=backoff.delay(failures, rand), failures=failures)


def after_watch(outcome: Outcome, *, progressed: bool, failures: int, backoff: Backoff, rand: float) -> Next:
    """progressed: the watch delivered at least one event or bookmark (it worked)."""
    if progressed:
        failures = 0
    if outcome is Outcome.EXPIRED:
        return Next(relist=False, delay=0.0, failures=0)
    if outcome is Outcome.GONE:
        # Re-listing is the cure, at once the first time; a 410 again straight after
        # a fresh list is a failure like any other, so it cannot loop without waiting.
        return Next(relist=True, delay=backoff.delay(failures, rand), failures=failures + (not progressed))
    # Failed: resume from the last resourceVersion (the server replays what we missed,
    # or says 410 and we re-list).
    failures += 1
    return Next(relist=False, delay=backoff.delay(failures, rand), failures=failures)


def name_key(obj: dict) -> str:
    return obj["metadata"]["name"]


class Reflector:
    """list_objects: a list call of the kubernetes client with its positional arguments
    bound, e.g. functools.partial(custom.list_namespaced_custom_object, group, version,
    namespace, plural); the reflector adds the list and watch parameters."""

    def __init__(self, list_objects: Callable[..., Any], *,
                 on_replace: Callable[[dict[str, dict]], None],
                 on_change: Callable[[str, str, dict], None],
                 key: Callable[[dict], str] = name_key, name: str = "reflector",
                 watch_seconds: int = WATCH_SECONDS, backoff: Backoff = Backoff(),
                 rand: Callable[[], float] = random.random) -> None:
        self._list_objects = list_objects
        self._on_replace = on_replace
        self._on_change = on_change
        self._key = key
        self.name = name
        self._watch_seconds = watch_seconds
        self._backoff = backoff
        self._rand = rand
        self.synced = threading.Event()
        self.resource_version: str | None = None
        self.lists = 0      # listings delivered (the first and every re-list)
        self.failures = 0   # failed lists and watches in a row
        self._stopping = threading.Event()
        self._response: Any = None  # the open watch stream, for stop() to cut
        self._cut = False  # restart_watch() cut it: an end, not a failure
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """End the reflector: no callback after this returns (unless `timeout` ran out)."""
        self._stopping.set()
        self.restart_watch()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def restart_watch(self) -> None:
        """Cut the current watch; the reflector resumes from its resourceVersion."""
        response = self._response
        if response is not None:
            self._cut = True
            with contextlib.suppress(Exception):  # already closed, or never opened
                response.shutdown()  # unblocks the reading thread (a close() would not, under TLS)

    def _run(self) -> None:
        relist = True
        while not self._stopping.is_set():
            if relist:
                ok = self._list()
                step = after_list(ok, failures=self.failures, backoff=self._backoff, rand=self._rand())
            else:
                outcome, progressed = self._watch()
                step = after_watch(outcome, progressed=progressed, failures=self.failures,
                                   backoff=self._backoff, rand=self._rand())
            relist, self.failures = step.relist, step.failures
            if step.delay and not self._stopping.is_set():
                log.warning("%s: retrying in %.3gs (%d failure(s) in a row)", self.name, step.delay, self.failures)
                self._stopping.wait(step.delay)

    def _list(self) -> bool:
        try:
            response = self._list_objects(_request_timeout=(CONNECT_TIMEOUT, LIST_TIMEOUT), _preload_content=False)
            listing = json.loads(response.data)
        except Exception as error:  # noqa: BLE001 - API unreachable or refusing: back off, retry
            log.warning("%s: list failed: %s", self.name, _describe(error))
            return False
        if self._stopping.is_set():
            return True
        self._on_replace({self._key(obj): obj for obj in listing.get("items") or []})
        self.resource_version = listing["metadata"]["resourceVersion"]
        self.lists += 1
        self.synced.set()
        return True

    def _watch(self) -> tuple[Outcome, bool]:
        progressed = False
        try:
            response = self._list_objects(
                watch=True, resource_version=self.resource_version, allow_watch_bookmarks=True,
                timeout_seconds=self._watch_seconds,
                _request_timeout=(CONNECT_TIMEOUT, self._watch_seconds + READ_MARGIN_SECONDS),
                _preload_content=False)
        except Exception as error:  # noqa: BLE001
            return self._failed(error), progressed
        self._response = response
        try:
            if self._stopping.is_set():  # stop() ran before there was a stream to cut
                return Outcome.EXPIRED, progressed
            for line in response:
                if self._stopping.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":  # a Status: 410 when our resourceVersion is too old
                    if obj.get("code") == GONE:
                        log.info("%s: resourceVersion %s is gone; re-listing", self.name, self.resource_version)
                        return Outcome.GONE, progressed
                    log.warning("%s: watch error %s: %s", self.name, obj.get("code"), obj.get("message"))
                    return Outcome.FAILED, progressed
                self.resource_version = obj["metadata"]["resourceVersion"]
                progressed = True
                if kind != "BOOKMARK":
                    self._on_change(kind, self._key(obj), obj)
            return Outcome.EXPIRED, progressed
        except Exception as error:  # noqa: BLE001 - a broken stream (or we cut it)
            if self._stopping.is_set() or self._cut:
                return Outcome.EXPIRED, progressed
            return self._failed(error), progressed
        finally:
            self._response = None
            self._cut = False
            with contextlib.suppress(Exception):
                response.close()

    def _failed(self, error: Exception) -> Outcome:
        if isinstance(error, ApiException) and error.status == GONE:
            log.info("%s: resourceVersion %s is gone; re-listing", self.name, self.resource_version)
            return Outcome.GONE
        log.warning("%s: watch failed: %s", self.name, _describe(error))
        return Outcome.FAILED


def _describe(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return str(error) or type(error).__name__
