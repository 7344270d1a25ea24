"""`myservice-operator cleanup`: the chart's pre-delete hook, so `helm uninstall`
leaves no sessions or instance pods behind.

It deletes every MyServiceSession of the namespace while the operator still runs
(the operator lets them go: kopf removes its finalizer, garbage collection takes
the pods). Sessions still there after the grace period have no operator to let
them go, so their finalizer is removed here. Instance pods left over are deleted.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from .clients import Kube

logger = logging.getLogger(__name__)


def finalizers_without(finalizers: Iterable[str], ours: str) -> list[str]:
    """The finalizers to keep when ours is released."""
    return [f for f in finalizers if f != ours]


def run(kube: Kube, *, finalizer: str, grace_seconds: float, poll_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Delete all sessions and instance pods of the namespace; returns how many sessions there were."""
    sessions = kube.list_sessions()
    for session in sessions:
        kube.delete_session(session["metadata"]["name"])
    logger.info("deleting %d session(s) in %s", len(sessions), kube.namespace)
    deadline = clock() + grace_seconds
    while (left := kube.list_sessions()) and clock() < deadline:
        sleep(poll_seconds)
    for session in left:
        metadata = session["metadata"]
        if finalizer in (metadata.get("finalizers") or []):
            logger.warning("session %s was not released by the operator: removing its finalizer", metadata["name"])
            kube.set_session_finalizers(metadata["name"], metadata["resourceVersion"],
                                        finalizers_without(metadata["finalizers"], finalizer))
    for pod in kube.list_instance_pods():
        kube.delete_pod(pod["metadata"]["name"])
    return len(sessions)
