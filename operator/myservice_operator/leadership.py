"""Operator HA: one active replica, chosen by a coordination.k8s.io Lease taken before kopf starts.

Every replica starts as a standby: it reads the Lease (created empty by the chart)
every STANDBY_POLL seconds and takes it when it is free, or when it has not changed
for the holder's leaseDurationSeconds as timed on the standby's own monotonic clock
(no comparison of two machines' clocks). Only then does it run kopf. The holder
renews from a thread of its own (not kopf's event loop, so a busy loop does not
stop renewals) and ends its process when it has gone GIVE_UP seconds without a
confirmed renewal, counted from when the last successful renewal was *sent*: a
standby can only take over DURATION seconds after it *saw* that renewal, which is
later, so the old holder has stopped (os._exit) at least DURATION - GIVE_UP seconds
before the new one starts. See docs/kubernetes.md (HA) for the figures.

The decisions (Standby, Holding) are pure, with the clock passed in; Elector is the
thin adapter that does the requests and sleeps.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import http.server
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from . import times

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LeaseTiming:
    duration: float = 9.0
    """leaseDurationSeconds written into the Lease: a standby takes over after seeing no change this long."""
    renew_every: float = 2.5
    """The holder renews this often (one PUT)."""
    renew_retry: float = 0.5
    """After a failed renewal, the holder tries again this soon."""
    give_up: float = 7.0
    """The holder exits when its last confirmed renewal was sent this long ago (< duration). With
    renewals every 2.5 s and 2 s request timeouts, one slow answer (an API server busy with a
    burst: the scale run lost a 4 s/6 s Lease that way) costs no takeover."""
    standby_poll: float = 3.0
    """A standby reads the Lease this often (one GET)."""

    def __post_init__(self) -> None:
        if not 0 < self.renew_every < self.give_up < self.duration:
            raise ValueError(f"need 0 < renew_every < give_up < duration: {self}")
        if self.renew_retry <= 0 or self.standby_poll <= 0:
            raise ValueError(f"renew_retry and standby_poll must be positive: {self}")

    def idle_requests_per_second(self, standbys: int = 1) -> float:
        """API requests/s of the election while nothing fails: the holder's PUTs and the standbys' GETs."""
        return 1 / self.renew_every + standbys / self.standby_poll

    def worst_takeover_seconds(self) -> float:
        """From the holder's death to a standby holding the Lease (kopf's start comes on top)."""
        return self.duration + self.standby_poll


class Standby:
    """A waiting replica's view of the Lease: may it take it now?"""

    def __init__(self, timing: LeaseTiming) -> None:
        self.timing = timing
        self._version: str | None = None
        self._since = 0.0

    def may_take(self, lease: Mapping[str, Any], now: float, identity: str) -> bool:
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if not holder or holder == identity:
            return True
        version = (lease.get("metadata") or {}).get("resourceVersion")
        if version != self._version:
            # Changed (renewed, or a new holder): the holder was alive when it wrote it.
            self._version, self._since = version, now
            return False
        duration = max(float(spec.get("leaseDurationSeconds") or 0), self.timing.duration)
        return now - self._since >= duration


class Holding:
    """The holder's side: when to renew next, and when it must stop acting."""

    def __init__(self, timing: LeaseTiming, acquired_sent_at: float) -> None:
        self.timing = timing
        self.confirmed_sent_at = acquired_sent_at

    def renewed(self, sent_at: float) -> None:
        self.confirmed_sent_at = max(self.confirmed_sent_at, sent_at)

    def must_stop(self, now: float) -> bool:
        return now - self.confirmed_sent_at >= self.timing.give_up

    def next_renewal_in(self, now: float, last_failed: bool) -> float:
        """Seconds to wait before the next renewal attempt (never past the give-up time)."""
        wait = self.timing.renew_retry if last_failed else self.confirmed_sent_at + self.timing.renew_every - now
        return max(0.0, min(wait, self.confirmed_sent_at + self.timing.give_up - now))


def acquired(lease: Mapping[str, Any], identity: str, timing: LeaseTiming,
             moment: datetime.datetime) -> dict[str, Any]:
    """The Lease as the new holder writes it (same resourceVersion: a lost race is a 409)."""
    taken = copy.deepcopy(dict(lease))
    spec = taken.setdefault("spec", {}) or {}
    taken["spec"] = spec
    previous = spec.get("holderIdentity") or ""
    spec.update({
        "holderIdentity": identity,
        "leaseDurationSeconds": int(timing.duration),
        "acquireTime": micro_time(moment),
        "renewTime": micro_time(moment),
        "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (1 if previous != identity else 0),
    })
    return taken


def renewed(lease: Mapping[str, Any], moment: datetime.datetime) -> dict[str, Any]:
    fresh = copy.deepcopy(dict(lease))
    fresh["spec"]["renewTime"] = micro_time(moment)
    return fresh


def released(lease: Mapping[str, Any]) -> dict[str, Any]:
    free = copy.deepcopy(dict(lease))
    free["spec"]["holderIdentity"] = None
    return free


def micro_time(moment: datetime.datetime) -> str:
    """Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseApi(Protocol):
    def get_lease(self, name: str) -> dict: ...
    def replace_lease(self, lease: Mapping) -> dict | None: ...


class Elector:
    """Blocks until this replica holds the Lease, then keeps it from a thread (or exits)."""

    def __init__(self, api: LeaseApi, name: str, identity: str, timing: LeaseTiming = LeaseTiming(),
                 clock: Callable[[], float] = time.monotonic,
                 exit_process: Callable[[int], None] = os._exit) -> None:
        self.api, self.name, self.identity, self.timing = api, name, identity, timing
        self.clock, self.exit_process = clock, exit_process
        self._lease: dict | None = None
        self._holding: Holding | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def wait_until_leader(self) -> None:
        standby = Standby(self.timing)
        logged = False
        while True:
            try:
                lease = self.api.get_lease(self.name)
                if standby.may_take(lease, self.clock(), self.identity):
                    sent_at = self.clock()
                    written = self.api.replace_lease(acquired(lease, self.identity, self.timing, times.utcnow()))
                    if written is not None:
                        self._lease, self._holding = written, Holding(self.timing, sent_at)
                        log.info("lease %s acquired by %s (was %s)", self.name, self.identity,
                                 (lease.get("spec") or {}).get("holderIdentity") or "free")
                        return
                elif not logged:
                    log.info("standby: lease %s is held by %s", self.name, lease["spec"]["holderIdentity"])
                    logged = True
            except Exception as error:  # the API is away: keep waiting, the holder may be fine
                log.warning("standby: reading lease %s failed: %s", self.name, error)
            time.sleep(self.timing.standby_poll)

    def keep(self) -> None:
        """Start renewing (and the fence that exits when renewals stop succeeding)."""
        self._threads = [threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True),
                         threading.Thread(target=self._fence_loop, name="lease-fence", daemon=True)]
        for thread in self._threads:
            thread.start()

    def release(self) -> None:
        """After kopf has stopped: stop renewing and free the Lease, so a standby starts at once."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._lease is None:
            return
        try:
            if self.api.replace_lease(released(self._lease)) is not None:
                log.info("lease %s released", self.name)
        except Exception as error:
            log.warning("releasing lease %s failed (a standby takes it when it expires): %s", self.name, error)
        self._lease = None

    def _renew_loop(self) -> None:
        failed = False
        while not self._stop.wait(self._holding.next_renewal_in(self.clock(), failed)):
            sent_at = self.clock()
            try:
                written = self.api.replace_lease(renewed(self._lease, times.utcnow()))
            except Exception as error:
                log.warning("renewing lease %s failed: %s", self.name, error)
                failed = True
                continue
            if written is None:
                self._lost("changed by someone else")
                return
            self._lease, failed = written, False
            self._holding.renewed(sent_at)

    def _fence_loop(self) -> None:
        while not self._stop.wait(0.2):
            if self._holding.must_stop(self.clock()):
                self._lost(f"not renewed for {self.timing.give_up:g} s")
                return

    def _lost(self, why: str) -> None:
        # No clean shutdown: kopf might act once more while it stops, after a standby started.
        log.error("lease %s lost (%s): exiting so that only one operator acts", self.name, why)
        logging.shutdown()
        self.exit_process(1)


class StandbyHealth:
    """/healthz on the liveness port while waiting (kopf serves it once it runs)."""

    def __init__(self, port: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                ok = self.path == "/healthz"
                body = b"standby\n" if ok else b"not found\n"
                self.send_response(200 if ok else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="standby-health", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
