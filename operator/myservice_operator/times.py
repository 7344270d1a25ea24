"""Times as the status writes them (pure)."""
from __future__ import annotations

import datetime


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 UTC with seconds, as Kubernetes writes times (e.g. 2026-01-02T03:04:05Z)."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> datetime.datetime:
    """The inverse of timestamp() (also accepts fractions and offsets)."""
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
