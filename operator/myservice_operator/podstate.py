"""What an instance pod's state means for its session (pure, no I/O).

observe_pod() reads a pod as the API (or kopf's watch) delivers it and says in
one PodState what it means: starting, ready, ended and why, or broken.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from myservice_api.crd import KIND, Reason


class PodKind(enum.StrEnum):
    MISSING = "missing"      # no pod, or it is being deleted
    STARTING = "starting"    # scheduled or being scheduled, not Ready yet, no sign of trouble
    READY = "ready"          # passes its readiness probe and has an IP
    SUCCEEDED = "succeeded"  # the instance exited 0
    FAILED = "failed"        # the instance exited non-zero, or the pod was evicted
    BROKEN = "broken"        # will not start by itself: unschedulable, image, container config
    LIMIT_REACHED = "limit"  # ended by the session's idle timeout or maximum lifetime


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
LIMIT_REASONS = (Reason.IDLE_TIMEOUT, Reason.LIFETIME_EXCEEDED)
# Pod status reason kubelet sets when the pod ran past spec.activeDeadlineSeconds.
DEADLINE_EXCEEDED = "DeadlineExceeded"


@dataclasses.dataclass(frozen=True)
class PodState:
    kind: PodKind
    name: str = ""
    ip: str = ""
    reason: str = ""
    message: str = ""


NO_POD = PodState(PodKind.MISSING, message="pod not found")


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


def _limit_ending(pod: Mapping) -> tuple[Reason, str] | None:
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
        return NO_POD
    name = pod.get("metadata", {}).get("name", "")
    status = pod.get("status", {})
    phase = status.get("phase", "")
    conditions = _conditions(pod)
    if phase == "Succeeded":
        ending = _limit_ending(pod)
        if ending:
            return PodState(PodKind.LIMIT_REACHED, name=name, reason=ending[0], message=ending[1])
        return PodState(PodKind.SUCCEEDED, name=name, message=_terminated_detail(pod) or "instance exited")
    if phase == "Failed" and status.get("reason") == DEADLINE_EXCEEDED:
        # The backstop: the instance did not end at its maximum lifetime, kubelet stopped it.
        deadline = pod.get("spec", {}).get("activeDeadlineSeconds")
        why = status.get("message") or "pod ran past its deadline"
        return PodState(PodKind.LIMIT_REACHED, name=name, reason=Reason.LIFETIME_EXCEEDED,
                        message=f"pod stopped at its activeDeadlineSeconds ({deadline}s): {why}")
    if phase == "Failed":
        disruption = conditions.get("DisruptionTarget", {})
        disrupted = disruption.get("status") == "True"
        status_reason = status.get("reason", "")
        if status_reason in EVICTION_REASONS or disrupted:
            why = status.get("message") or disruption.get("message") or status_reason or disruption.get("reason", "")
            return PodState(PodKind.FAILED, name=name, reason=Reason.EVICTED, message=why)
        why = status.get("message") or _terminated_detail(pod) or "pod failed"
        return PodState(PodKind.FAILED, name=name, reason=Reason.POD_FAILED, message=why)
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return PodState(PodKind.MISSING, name=name, message=f"pod {name} is being deleted")
    scheduled = conditions.get("PodScheduled", {})
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return PodState(PodKind.BROKEN, name=name, reason=Reason.UNSCHEDULABLE,
                        message=scheduled.get("message") or "pod cannot be scheduled")
    for container in _containers(pod):
        waiting = container.get("state", {}).get("waiting") or {}
        why = waiting.get("reason", "")
        detail = waiting.get("message") or why
        if why in IMAGE_PULL_REASONS:
            return PodState(PodKind.BROKEN, name=name, reason=Reason.IMAGE_PULL, message=f"{why}: {detail}")
        if why in CONTAINER_START_REASONS:
            return PodState(PodKind.BROKEN, name=name, reason=Reason.START_FAILED, message=f"{why}: {detail}")
    ready = conditions.get("Ready", {}).get("status") == "True"
    ip = status.get("podIP", "")
    if ready and ip:
        return PodState(PodKind.READY, name=name, ip=ip)
    return PodState(PodKind.STARTING, name=name)


def owner_uid(pod: Mapping) -> str:
    """The uid of the MyServiceSession that owns the pod ("" if none does)."""
    for ref in pod.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("uid"):
            return ref["uid"]
    return ""


def is_live_pod(pod: Mapping) -> bool:
    """Whether a pod holds a slot: any pod not finished (terminating ones still use the node)."""
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")
