"""Idle timeout and maximum lifetime of one instance: pure rules, no I/O.

The instance enforces both limits itself because it alone sees every call as it
happens: on Kubernetes this costs the API server nothing per call (no activity
writes, no polling); the operator only records the reason once the pod ended.

Idle means no MyService call in flight and none ended for `idle_timeout`
seconds; an open stream is a call in flight, so it keeps the session alive
however quiet it is. Both clocks start when the instance starts, so an instance
that is never called ends too. A warm pool member (started=False) is the
exception: its clocks start when it is claimed for a session (the claim signal, or
the session's first call, whichever comes first: idle in the pool it is nobody's
session, and its session gets the whole of both limits). Health
checks and reflection are not calls of the session (kubelet probes them): the
servicer counts MyService calls only.

Times are seconds on a monotonic clock that the caller provides.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

from myservice_api import crd, settings


def format_seconds(value: float) -> str:
    """900.0 -> '900s', 0.5 -> '0.5s' (whole seconds without a fraction, never an exponent)."""
    return f"{int(value)}s" if value == int(value) else f"{value}s"


@dataclasses.dataclass(frozen=True)
class Limits:
    """The two limits in seconds, 0 = off (read from flags and env by __main__.InstanceSettings)."""
    idle_timeout: float = settings.SESSION_IDLE_TIMEOUT.default
    """Seconds without a call (none in flight) after which the instance ends; 0 = off."""
    max_lifetime: float = settings.SESSION_MAX_LIFETIME.default
    """Seconds after its start at which the instance ends, calls or not; 0 = off."""


class Ending(NamedTuple):
    """Why the instance ends on its own: a crd.Reason and a message for people."""
    reason: str
    message: str

    def line(self) -> str:
        """'<Reason>: <message>', as written to the termination message file."""
        return f"{self.reason}: {self.message}"


class Activity:
    """The calls of one instance, and when its limits end it.

    call_started()/call_ended() are all the servicer does per call (two counter
    updates); expired() and next_check() are asked by the one timer.
    """

    def __init__(self, limits: Limits, *, clock: Callable[[], float], started: bool = True) -> None:
        self.limits = limits
        self._clock = clock
        self.in_flight = 0
        # None until the clocks run (a pool member before its claim: no limit applies).
        self.started_at: float | None = None
        # When the instance was last seen busy: its start, or the end of its last call.
        self.last_active_at: float | None = None
        # Told when a pool member's clocks start, by a signal or by a first call (the
        # timer, armed at the start with nothing to wait for, must be armed again).
        self.on_clocks_started: Callable[[], None] = lambda: None
        # Told each time the last call in flight ends (the instance's stop waits for it).
        self.on_no_calls: Callable[[], None] = lambda: None
        if started:
            self.start_clocks()

    def start_clocks(self) -> bool:
        """Start both clocks now (a pool member's claim); False if they already ran."""
        if self.started_at is not None:
            return False
        self.started_at = self.last_active_at = self._clock()
        self.on_clocks_started()
        return True

    def call_started(self) -> None:
        self.in_flight += 1
        if self.started_at is None:
            # A pool member claimed on Kubernetes gets no signal: its session's first
            # call is its claim (locally the claim signal usually comes first).
            self.start_clocks()

    def call_ended(self) -> None:
        self.in_flight -= 1
        if self.started_at is not None:
            self.last_active_at = self._clock()
        if not self.in_flight:
            self.on_no_calls()

    def _idle_deadline(self) -> float | None:
        if not self.limits.idle_timeout or self.in_flight or self.last_active_at is None:
            return None
        return self.last_active_at + self.limits.idle_timeout

    def _lifetime_deadline(self) -> float | None:
        if not self.limits.max_lifetime or self.started_at is None:
            return None
        return self.started_at + self.limits.max_lifetime

    def expired(self, now: float) -> Ending | None:
        """Why the instance must end at `now`, or None. When both limits are past,
        the one reached first is the reason."""
        reached = []
        idle = self._idle_deadline()
        if idle is not None and now >= idle:
            reached.append((idle, Ending(crd.Reason.IDLE_TIMEOUT,
                                         f"no call for {format_seconds(self.limits.idle_timeout)}")))
        lifetime = self._lifetime_deadline()
        if lifetime is not None and now >= lifetime:
            reached.append((lifetime, Ending(
                crd.Reason.LIFETIME_EXCEEDED,
                f"session reached its maximum lifetime of {format_seconds(self.limits.max_lifetime)}")))
        return min(reached)[1] if reached else None

    def next_check(self, now: float) -> float | None:
        """The earliest time at which expired() can become true (None: never).

        Calls only ever push the idle end later, so a check at this time is never
        late; while calls are in flight the idle end is at least one idle timeout
        away. The timer therefore fires about once per idle timeout under steady
        traffic, never once per call.
        """
        candidates = [d for d in (self._idle_deadline(), self._lifetime_deadline()) if d is not None]
        if self.limits.idle_timeout and self.in_flight and self.started_at is not None:
            candidates.append(now + self.limits.idle_timeout)
        return min(candidates) if candidates else None
