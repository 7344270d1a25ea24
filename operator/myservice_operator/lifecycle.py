"""Where time matters in a session's life (pure): what to do now, and when to look again.

Only three phases have a clock: Pending (the ready timeout, counted from the
session's creation), Starting (the ready timeout, from startedAt) and the two
final ones (the finished TTL, from finishedAt). A Ready session has none: only
an event of its pod can change it, so it costs nothing while it runs.
"""
from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping

from myservice_api.crd import Phase, is_terminal

from .settings import Settings
from .times import parse_timestamp

# Status times have whole seconds (times.timestamp), so a deadline computed from
# one may be up to a second early; looking again this much later is never early.
STAMP_RESOLUTION = datetime.timedelta(seconds=1)


class Action(enum.StrEnum):
    ADMIT = "admit"      # Pending: take a slot and create the pod, if one is free
    EXPIRE = "expire"    # Pending too long without a slot: fail (CapacityExceeded)
    OBSERVE = "observe"  # Starting/Ready: apply what the pod's state means
    TIMEOUT = "timeout"  # Starting too long: fail (ReadyTimeout) and delete the pod
    DELETE = "delete"    # finished longer than the TTL ago: delete the session
    WAIT = "wait"        # finished, TTL not over yet


def _since(status: Mapping, field: str, created_at: datetime.datetime) -> datetime.datetime:
    value = status.get(field) if field else None
    return parse_timestamp(value) if value else created_at


def plan(status: Mapping, *, created_at: datetime.datetime, now: datetime.datetime,
         settings: Settings) -> Action:
    """What a session's reconcile should do now."""
    phase = status.get("phase") or Phase.PENDING

    def age(field: str) -> float:
        return (now - _since(status, field, created_at)).total_seconds()

    if is_terminal(phase):
        return Action.DELETE if age("finishedAt") >= settings.finished_ttl_seconds else Action.WAIT
    if phase == Phase.PENDING:
        return Action.EXPIRE if age("") >= settings.ready_timeout_seconds else Action.ADMIT
    if phase == Phase.STARTING and age("startedAt") >= settings.ready_timeout_seconds:
        return Action.TIMEOUT
    return Action.OBSERVE


def next_deadline(status: Mapping, *, created_at: datetime.datetime,
                  settings: Settings) -> datetime.datetime | None:
    """When plan() next changes its answer by itself (no event needed); None: never (Ready)."""
    phase = status.get("phase") or Phase.PENDING
    if is_terminal(phase):
        since, seconds = _since(status, "finishedAt", created_at), settings.finished_ttl_seconds
    elif phase == Phase.PENDING:
        since, seconds = created_at, settings.ready_timeout_seconds
    elif phase == Phase.STARTING:
        since, seconds = _since(status, "startedAt", created_at), settings.ready_timeout_seconds
    else:
        return None
    return since + datetime.timedelta(seconds=seconds) + STAMP_RESOLUTION
