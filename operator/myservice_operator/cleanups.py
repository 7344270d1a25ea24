"""`myservice-operator cleanup`: the chart's pre-delete hook, so `helm uninstall`
leaves no sessions or instance pods behind.

It deletes every MyServiceSession of the namespace while the operator still runs,
waits up to the grace period for them to go (sessions carry no finalizer of ours,
but an installer's own may hold one a while), then deletes the instance pods left
over: garbage collection takes a session's pod in its own time, and warm pool pods
belong to no session.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .clients import Kube

logger = logging.getLogger(__name__)


def run(kube: Kube, *, grace_seconds: float, poll_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Delete all sessions and instance pods of the namespace; returns how many sessions there were."""
    sessions = kube.list_sessions()
    for session in sessions:
        kube.delete_session(session["metadata"]["name"])
    logger.info("deleting %d session(s) in %s", len(sessions), kube.namespace)
    deadline = clock() + grace_seconds
    while (left := kube.list_sessions()) and clock() < deadline:
        sleep(poll_seconds)
    if left:
        logger.warning("%d session(s) still there after %ss: %s", len(left), grace_seconds,
                       ", ".join(s["metadata"]["name"] for s in left))
    for pod in kube.list_instance_pods():
        kube.delete_pod(pod["metadata"]["name"])
    return len(sessions)
