"""The Kubernetes Event of a session's status change (pure): what `kubectl describe mss` lists.

Posted by the reconciler through its Kube adapter (one create, counted with
the other API requests), not through kopf.event, so that every request of a
session's life goes through one counted place.
"""
from __future__ import annotations

import datetime
from collections.abc import Mapping

from .times import timestamp

COMPONENT = "myservice-operator"
# Event messages are capped by the API at 1 KiB.
MESSAGE_LIMIT = 1024


def session_event(involved: Mapping, *, type: str, reason: str, message: str,
                  now: datetime.datetime) -> dict:
    """A core/v1 Event about the object `involved` (an object reference with namespace)."""
    stamp = timestamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
        "involvedObject": dict(involved),
        "type": type,
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
