"""Session status decisions (pure, no I/O): what the pod's state means, what the
session's next status is, whether a session gets a slot, what the periodic
re-check should do.

The handlers feed these functions fresh objects read from the API and write
back what they return, so every decision here is tested by plain equality.
"""
from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping

from myservice import crd

from .settings import Settings

# What observe_pod() can say about a pod.
POD_MISSING = "missing"      # no pod, or it is being deleted
POD_STARTING = "starting"    # scheduled or being scheduled, not Ready yet, no sign of trouble
POD_READY = "ready"          # passes its readiness probe and has an IP
POD_SUCCEEDED = "succeeded"  # the instance exited 0
POD_FAILED = "failed"        # the instance exited non-zero, or the pod was evicted
POD_BROKEN = "broken"        # will not start by itself: unschedulable, image, container config
POD_LIMIT_REACHED = "limit"  # ended by the session's idle timeout or maximum lifetime

# Container waiting reasons (kubelet) that mean the image cannot be had.
IMAGE_PULL_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
})
# Container waiting reasons that mean the container cannot be created or run.
CONTAINER_START_REASONS = frozenset({
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
    "PreCreateHookError", "PreStartHookError", "PostStartHookError",
})
# Pod status reasons and DisruptionTarget condition reasons set when Kubernetes,
# not the instance, ended the pod.
EVICTION_REASONS = frozenset({
    "Evicted", "Preempting", "NodeShutdown", "Shutdown", "NodeLost", "UnexpectedAdmissionError",
    "EvictionByEvictionAPI", "PreemptionByScheduler", "DeletionByTaintManager",
    "DeletionByPodGC", "TerminationByKubelet",
})
# The instance's termination message when one of its limits ended it: "<Reason>: <message>".
LIMIT_REASONS = (crd.REASON_IDLE_TIMEOUT, crd.REASON_LIFETIME_EXCEEDED)
# Pod status reason kubelet sets when the pod ran past spec.activeDeadlineSeconds.
DEADLINE_EXCEEDED = "DeadlineExceeded"

# What plan() tells the periodic re-check to do.
PLAN_ADMIT = "admit"      # Pending: try to take a slot and create the pod
PLAN_EXPIRE = "expire"    # Pending too long without a slot: fail (CapacityExceeded)
PLAN_OBSERVE = "observe"  # Starting/Ready: read the pod and apply transition()
PLAN_TIMEOUT = "timeout"  # Starting too long: fail (ReadyTimeout) and delete the pod
PLAN_DELETE = "delete"    # finished longer than the TTL ago: delete the session
PLAN_WAIT = "wait"        # finished, TTL not over yet


@dataclasses.dataclass(frozen=True)
class PodState:
    kind: str
    name: str = ""
    ip: str = ""
    reason: str = ""
    message: str = ""


def timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 UTC with seconds, as Kubernetes writes times (e.g. 2026-01-02T03:04:05Z)."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> datetime.datetime:
    """The inverse of timestamp() (also accepts fractions and offsets)."""
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _conditions(pod: Mapping) -> dict[str, Mapping]:
    return {c.get("type", ""): c for c in pod.get("status", {}).get("conditions") or []}


def _containers(pod: Mapping) -> list[Mapping]:
    status = pod.get("status", {})
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def _terminated_detail(pod: Mapping) -> str:
    for container in _containers(pod):
        terminated = container.get("state", {}).get("terminated")
        if terminated:
            detail = f"container {container.get('name', '')} exited with code {terminated.get('exitCode')}"
            why = terminated.get("reason") or ""
            return f"{detail} ({why})" if why else detail
    return ""


def _limit_ending(pod: Mapping) -> tuple[str, str] | None:
    """(reason, message) when the instance ended itself at a limit and said so in its
    termination message (service_image/myservice_instance/limits.py), else None."""
    for container in _containers(pod):
        said = (container.get("state", {}).get("terminated") or {}).get("message") or ""
        for reason in LIMIT_REASONS:
            if said.startswith(f"{reason}:"):
                return reason, said[len(reason) + 1:].strip()
    return None


def observe_pod(pod: Mapping | None) -> PodState:
    """Classify a pod (a dict as returned by the API, or None when there is none)."""
    if pod is None:
        return PodState(POD_MISSING, message="pod not found")
    name = pod.get("metadata", {}).get("name", "")
    status = pod.get("status", {})
    phase = status.get("phase", "")
    conditions = _conditions(pod)
    if phase == "Succeeded":
        ending = _limit_ending(pod)
        if ending:
            return PodState(POD_LIMIT_REACHED, name=name, reason=ending[0], message=ending[1])
        return PodState(POD_SUCCEEDED, name=name, message=_terminated_detail(pod) or "instance exited")
    if phase == "Failed" and status.get("reason") == DEADLINE_EXCEEDED:
        # The backstop: the instance did not end at its maximum lifetime, kubelet stopped it.
        deadline = pod.get("spec", {}).get("activeDeadlineSeconds")
        why = status.get("message") or "pod ran past its deadline"
        return PodState(POD_LIMIT_REACHED, name=name, reason=crd.REASON_LIFETIME_EXCEEDED,
                        message=f"pod stopped at its activeDeadlineSeconds ({deadline}s): {why}")
    if phase == "Failed":
        disruption = conditions.get("DisruptionTarget", {})
        disrupted = disruption.get("status") == "True"
        status_reason = status.get("reason", "")
        if status_reason in EVICTION_REASONS or disrupted:
            why = status.get("message") or disruption.get("message") or status_reason or disruption.get("reason", "")
            return PodState(POD_FAILED, name=name, reason=crd.REASON_EVICTED, message=why)
        why = status.get("message") or _terminated_detail(pod) or "pod failed"
        return PodState(POD_FAILED, name=name, reason=crd.REASON_POD_FAILED, message=why)
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return PodState(POD_MISSING, name=name, message=f"pod {name} is being deleted")
    scheduled = conditions.get("PodScheduled", {})
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return PodState(POD_BROKEN, name=name, reason=crd.REASON_UNSCHEDULABLE,
                        message=scheduled.get("message") or "pod cannot be scheduled")
    for container in _containers(pod):
        waiting = container.get("state", {}).get("waiting") or {}
        why = waiting.get("reason", "")
        detail = waiting.get("message") or why
        if why in IMAGE_PULL_REASONS:
            return PodState(POD_BROKEN, name=name, reason=crd.REASON_IMAGE_PULL, message=f"{why}: {detail}")
        if why in CONTAINER_START_REASONS:
            return PodState(POD_BROKEN, name=name, reason=crd.REASON_START_FAILED, message=f"{why}: {detail}")
    ready = conditions.get("Ready", {}).get("status") == "True"
    ip = status.get("podIP", "")
    if ready and ip:
        return PodState(POD_READY, name=name, ip=ip)
    return PodState(POD_STARTING, name=name)


def _failed(reason: str, message: str, now: datetime.datetime) -> dict:
    return {"phase": crd.PHASE_FAILED, "reason": reason, "message": message, "finishedAt": timestamp(now)}


def pending_status() -> dict:
    """Waiting for a slot: the gateway answers RESOURCE_EXHAUSTED "all instances are busy"."""
    return {"phase": crd.PHASE_PENDING, "reason": crd.REASON_CAPACITY, "message": crd.MESSAGE_CAPACITY}


def starting_status(pod: str, now: datetime.datetime) -> dict:
    """The pod was created (or found)."""
    return {"phase": crd.PHASE_STARTING, "reason": crd.REASON_POD_CREATED,
            "message": f"pod {pod} created", "podName": pod, "startedAt": timestamp(now)}


def rejected_status(message: str, now: datetime.datetime) -> dict:
    """The API refused to create the pod (quota, admission policy, invalid)."""
    return _failed(crd.REASON_START_FAILED, f"pod rejected: {message}", now)


def expired_status(seconds: int, now: datetime.datetime) -> dict:
    """Pending for the whole ready timeout without getting a slot."""
    return _failed(crd.REASON_CAPACITY, f"no instance freed within {seconds}s: {crd.MESSAGE_CAPACITY}", now)


def timed_out_status(pod: str, seconds: int, now: datetime.datetime) -> dict:
    """Started but not Ready in time (the pod is then deleted)."""
    return _failed(crd.REASON_READY_TIMEOUT, f"pod {pod} not ready within {seconds}s", now)


def transition(status: Mapping, pod: PodState, *, port: int, now: datetime.datetime) -> dict | None:
    """The status fields to patch given the session's status and its pod's state; None: no change.

    Phases only move forward (Pending -> Starting -> Ready -> Completed/Failed);
    Completed and Failed are final. A failure before Ready always carries a start
    failure reason (crd.is_start_failure), one after Ready never does. A session
    ended by its idle timeout or lifetime is Completed from any phase.
    """
    phase = status.get("phase") or crd.PHASE_PENDING
    if crd.is_terminal(phase):
        return None
    was_ready = phase == crd.PHASE_READY
    pod_label = pod.name or status.get("podName", "") or "the pod"
    if pod.kind == POD_MISSING:
        if phase == crd.PHASE_PENDING:
            return None  # no pod yet: admission (plan ADMIT) makes it
        gone = pod.message if pod.name else f"pod {pod_label} was deleted"
        if was_ready:
            return _failed(crd.REASON_POD_DELETED, gone, now)
        return _failed(crd.REASON_START_FAILED, f"before it became ready: {gone}", now)
    if pod.kind == POD_STARTING:
        if phase == crd.PHASE_PENDING:
            return starting_status(pod.name, now)
        return None
    if pod.kind == POD_READY:
        if was_ready:
            return None if status.get("podIP") == pod.ip else {"podIP": pod.ip}
        patch = {"phase": crd.PHASE_READY, "reason": crd.REASON_POD_READY,
                 "message": f"pod {pod_label} ready at {pod.ip}:{port}",
                 "podName": pod.name, "podIP": pod.ip, "port": port, "readyAt": timestamp(now)}
        if not status.get("startedAt"):
            patch["startedAt"] = timestamp(now)
        return patch
    if pod.kind == POD_SUCCEEDED:
        if was_ready:
            return {"phase": crd.PHASE_COMPLETED, "reason": crd.REASON_INSTANCE_EXITED,
                    "message": pod.message, "finishedAt": timestamp(now)}
        return _failed(crd.REASON_START_FAILED, f"instance exited before it became ready: {pod.message}", now)
    if pod.kind == POD_LIMIT_REACHED:
        # The session ended as configured (also when its Ready was never recorded): a normal end.
        return {"phase": crd.PHASE_COMPLETED, "reason": pod.reason, "message": pod.message,
                "finishedAt": timestamp(now)}
    if pod.kind == POD_FAILED:
        if was_ready:
            return _failed(pod.reason, pod.message, now)
        return _failed(crd.REASON_START_FAILED, f"{pod.reason}: {pod.message}", now)
    if pod.kind == POD_BROKEN:
        if was_ready:
            return None  # a container waiting after Ready cannot happen with restartPolicy Never
        return _failed(pod.reason, pod.message, now)
    raise ValueError(f"unknown pod state {pod.kind!r}")


def releases_pod(patch: Mapping, pod: PodState) -> bool:
    """Whether failing the session must also delete its pod: a pod that never
    finished (it cannot start, or is still starting) would hold a slot until the TTL."""
    return patch.get("phase") == crd.PHASE_FAILED and pod.kind in (POD_BROKEN, POD_STARTING, POD_READY)


def event_type(patch: Mapping) -> str:
    """The Kubernetes Event type for a status change: Warning for failures, else Normal."""
    return "Warning" if patch.get("phase") == crd.PHASE_FAILED else "Normal"


def is_owned_by(pod: Mapping, uid: str) -> bool:
    """Whether the pod belongs to the session with this uid (not to a deleted namesake)."""
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("kind") == crd.KIND for ref in refs)


def is_live_pod(pod: Mapping) -> bool:
    """Whether a pod holds a slot: any pod not finished (terminating ones still use the node)."""
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


def admissible(resource: str, sessions: Iterable[Mapping], live_pods: int, max_sessions: int) -> bool:
    """Whether the session named `resource` may have its pod now.

    Slots are free when fewer than max_sessions pods are live; waiting sessions
    (no phase yet, or Pending; not being deleted) get them first come, first served
    by creationTimestamp (then name), so a new session never jumps the queue.
    """
    free = max_sessions - live_pods
    if free <= 0:
        return False
    waiting = sorted(
        (s.get("metadata", {}).get("creationTimestamp", ""), s.get("metadata", {}).get("name", ""))
        for s in sessions
        if (s.get("status") or {}).get("phase", crd.PHASE_PENDING) == crd.PHASE_PENDING
        and not s.get("metadata", {}).get("deletionTimestamp")
    )
    names = [name for _, name in waiting]
    rank = names.index(resource) if resource in names else len(names)
    return rank < free


def plan(status: Mapping, *, created_at: datetime.datetime, now: datetime.datetime,
         settings: Settings) -> str:
    """What the periodic re-check of a session should do now (one of PLAN_*)."""
    phase = status.get("phase") or crd.PHASE_PENDING

    def age(field: str) -> float:
        value = status.get(field)
        since = parse_timestamp(value) if value else created_at
        return (now - since).total_seconds()

    if crd.is_terminal(phase):
        return PLAN_DELETE if age("finishedAt") >= settings.finished_ttl_seconds else PLAN_WAIT
    if phase == crd.PHASE_PENDING:
        return PLAN_EXPIRE if age("") >= settings.ready_timeout_seconds else PLAN_ADMIT
    if phase == crd.PHASE_STARTING and age("startedAt") >= settings.ready_timeout_seconds:
        return PLAN_TIMEOUT
    return PLAN_OBSERVE
