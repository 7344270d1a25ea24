"""A session's next status (pure, no I/O): from its status and its pod's state,
or because time ran out; the Event each change gets.

Every function returns the status fields to merge-patch (or None: no change),
so every decision is tested by plain equality.
"""
from __future__ import annotations

import datetime
from collections.abc import Mapping

from myservice import contract
from myservice_api.crd import Phase, PodSource, Reason, is_terminal

from .podstate import PodKind, PodState
from .times import timestamp


def _failed(reason: str, message: str, now: datetime.datetime) -> dict:
    return {"phase": Phase.FAILED, "reason": reason, "message": message, "finishedAt": timestamp(now)}


def pending_status() -> dict:
    """Waiting for a slot: the gateway answers RESOURCE_EXHAUSTED "all instances are busy"."""
    return {"phase": Phase.PENDING, "reason": Reason.CAPACITY, "message": contract.ALL_INSTANCES_BUSY}


def says_pending(status: Mapping) -> bool:
    """Whether the status already is pending_status() (so writing it again would change nothing)."""
    return all(status.get(key) == value for key, value in pending_status().items())


def starting_status(pod: str, now: datetime.datetime) -> dict:
    """The pod was created (or found)."""
    return {"phase": Phase.STARTING, "reason": Reason.POD_CREATED,
            "message": f"pod {pod} created", "podName": pod, "podSource": PodSource.COLD,
            "startedAt": timestamp(now)}


def claimed_status(status: Mapping, pod: PodState, *, port: int, now: datetime.datetime) -> dict:
    """A warm pool pod was claimed for the session: Ready at once when the pod is (it was
    picked Ready), otherwise whatever its state means, and either way podSource warm."""
    patch = transition(status, pod, port=port, now=now) or {}
    if patch.get("phase") == Phase.READY:
        patch["message"] = f"warm pool pod {pod.name} claimed, ready at {pod.ip}:{port}"
    elif patch.get("phase") == Phase.STARTING:
        patch["message"] = f"warm pool pod {pod.name} claimed"
    return {**patch, "podName": pod.name, "podSource": PodSource.WARM}


def rejected_status(message: str, now: datetime.datetime) -> dict:
    """The API refused to create the pod (quota, admission policy, invalid)."""
    return _failed(Reason.START_FAILED, f"pod rejected: {message}", now)


def expired_status(seconds: int, now: datetime.datetime) -> dict:
    """Pending for the whole ready timeout without getting a slot."""
    return _failed(Reason.CAPACITY, f"no instance freed within {seconds}s: {contract.ALL_INSTANCES_BUSY}", now)


def timed_out_status(pod: str, seconds: int, now: datetime.datetime) -> dict:
    """Started but not Ready in time (the pod is then deleted)."""
    return _failed(Reason.READY_TIMEOUT, f"pod {pod} not ready within {seconds}s", now)


def transition(status: Mapping, pod: PodState, *, port: int, now: datetime.datetime) -> dict | None:
    """The status fields to patch given the session's status and its pod's state; None: no change.

    Phases only move forward (Pending -> Starting -> Ready -> Completed/Failed);
    Completed and Failed are final. A failure before Ready always carries a start
    failure reason (crd.is_start_failure), one after Ready never does. A session
    ended by its idle timeout or lifetime is Completed from any phase.
    """
    phase = status.get("phase") or Phase.PENDING
    if is_terminal(phase):
        return None
    was_ready = phase == Phase.READY
    pod_label = pod.name or status.get("podName", "") or "the pod"
    match pod.kind:
        case PodKind.MISSING:
            if phase == Phase.PENDING:
                return None  # no pod yet: admission makes it
            gone = pod.message if pod.name else f"pod {pod_label} was deleted"
            if was_ready:
                return _failed(Reason.POD_DELETED, gone, now)
            return _failed(Reason.START_FAILED, f"before it became ready: {gone}", now)
        case PodKind.STARTING:
            return starting_status(pod.name, now) if phase == Phase.PENDING else None
        case PodKind.READY:
            if was_ready:
                return None if status.get("podIP") == pod.ip else {"podIP": pod.ip}
            patch = {"phase": Phase.READY, "reason": Reason.POD_READY,
                     "message": f"pod {pod_label} ready at {pod.ip}:{port}",
                     "podName": pod.name, "podIP": pod.ip, "port": port, "readyAt": timestamp(now)}
            if not status.get("startedAt"):
                patch["startedAt"] = timestamp(now)
            return patch
        case PodKind.SUCCEEDED:
            if was_ready:
                return {"phase": Phase.COMPLETED, "reason": Reason.INSTANCE_EXITED,
                        "message": pod.message, "finishedAt": timestamp(now)}
            return _failed(Reason.START_FAILED, f"instance exited before it became ready: {pod.message}", now)
        case PodKind.LIMIT_REACHED:
            # The session ended as configured (also when its Ready was never recorded): a normal end.
            return {"phase": Phase.COMPLETED, "reason": pod.reason, "message": pod.message,
                    "finishedAt": timestamp(now)}
        case PodKind.FAILED:
            if was_ready:
                return _failed(pod.reason, pod.message, now)
            return _failed(Reason.START_FAILED, f"{pod.reason}: {pod.message}", now)
        case PodKind.BROKEN:
            if was_ready:
                return None  # a container waiting after Ready cannot happen with restartPolicy Never
            return _failed(pod.reason, pod.message, now)
    raise ValueError(f"unknown pod state {pod.kind!r}")


def releases_pod(patch: Mapping, pod: PodState) -> bool:
    """Whether failing the session must also delete its pod: a pod that never
    finished (it cannot start, or is still starting) would hold a slot until the TTL."""
    return patch.get("phase") == Phase.FAILED and pod.kind in (PodKind.BROKEN, PodKind.STARTING, PodKind.READY)


def event_type(patch: Mapping) -> str:
    """The Kubernetes Event type for a status change: Warning for failures, else Normal."""
    return "Warning" if patch.get("phase") == Phase.FAILED else "Normal"
