"""The MyServiceSession custom resource: names, phases, reasons, labels.

The gateway creates one ``MyServiceSession`` (MSS) per client session and routes
by reading its status; the operator owns the session's pod and writes that
status. Both sides import these from here so that they cannot drift apart;
crds/myservicesessions.yaml is the same contract for the API server (tests/api
checks that the two agree).

Status contract (written only by the operator):

=========  ====================================================================
phase      meaning
=========  ====================================================================
Pending    accepted, no pod yet: waiting for a free slot (reason CapacityExceeded)
Starting   the pod exists (status.podName) and is not Ready yet
Ready      route to status.podIP:status.port; status.readyAt is set
Completed  the instance exited 0 (after MyServiceShutdown): a normal end
Failed     see status.reason; is_start_failure(reason) tells whether the
           session never became Ready (then readyAt is absent)
=========  ====================================================================

Completed and Failed are terminal: the operator never moves a session out of
them, and deletes the resource MYSERVICE_FINISHED_TTL_SECONDS later.
"""
from __future__ import annotations

import enum

GROUP = "myservice.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "MyServiceSession"
PLURAL = "myservicesessions"
SINGULAR = "myservicesession"
SHORT_NAME = "mss"


class Phase(enum.StrEnum):
    """status.phase. A str: members compare equal to, and serialise as, the CRD's values."""
    PENDING = "Pending"
    STARTING = "Starting"
    READY = "Ready"
    COMPLETED = "Completed"
    FAILED = "Failed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_PHASES


class Reason(enum.StrEnum):
    """status.reason. The gateway maps them to gRPC codes:

    - Pending + CAPACITY: RESOURCE_EXHAUSTED "all instances are busy"
    - Failed + a start failure (is_start_failure): RESOURCE_EXHAUSTED "no available instances"
    - Failed after Ready (the other reasons): UNAVAILABLE "backend service unavailable"
    - Completed: FAILED_PRECONDITION "session <id> has ended; ..."
    """
    # Pending: MYSERVICE_MAX_SESSIONS live pods already. Failed: still no slot
    # after MYSERVICE_READY_TIMEOUT_SECONDS of waiting.
    CAPACITY = "CapacityExceeded"
    # Starting: the pod was created (or found, after an operator restart).
    POD_CREATED = "PodCreated"
    # Failed before Ready: the scheduler cannot place the pod (no node has room).
    UNSCHEDULABLE = "Unschedulable"
    # Failed before Ready: ErrImagePull, ImagePullBackOff, ErrImageNeverPull, InvalidImageName.
    IMAGE_PULL = "ImagePullFailed"
    # Failed before Ready: the API rejected the pod (quota, admission), its container
    # could not be created, or it stopped/was deleted/evicted before Ready.
    START_FAILED = "StartFailed"
    # Failed before Ready: not Ready within MYSERVICE_READY_TIMEOUT_SECONDS (pod deleted).
    READY_TIMEOUT = "ReadyTimeout"
    # Ready: the pod passes its gRPC readiness probe.
    POD_READY = "PodReady"
    # Completed: the instance process exited 0 (pod Succeeded), e.g. after MyServiceShutdown.
    INSTANCE_EXITED = "InstanceExited"
    # Completed: the instance ended itself after MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS
    # without a call (none in flight; an open stream counts as a call), and said so in
    # its termination message ("IdleTimeout: no call for 900s").
    IDLE_TIMEOUT = "IdleTimeout"
    # Completed: the session reached MYSERVICE_SESSION_MAX_LIFETIME_SECONDS since its
    # instance started: the instance ended itself (termination message "LifetimeExceeded:
    # ..."), or kubelet stopped the pod at its activeDeadlineSeconds (the backstop).
    LIFETIME_EXCEEDED = "LifetimeExceeded"
    # Failed after Ready: the instance exited non-zero (pod Failed).
    POD_FAILED = "PodFailed"
    # Failed after Ready: the pod was evicted or preempted by Kubernetes.
    EVICTED = "Evicted"
    # Failed after Ready: the pod disappeared or is being deleted.
    POD_DELETED = "PodDeleted"


PHASES = tuple(Phase)
TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED})
START_FAILURE_REASONS = frozenset({
    Reason.CAPACITY, Reason.UNSCHEDULABLE, Reason.IMAGE_PULL, Reason.START_FAILED, Reason.READY_TIMEOUT,
})

# Labels on the instance pods. Values are resource names (valid label values),
# never raw session ids, which may be longer than 63 characters or contain anything.
LABEL_SESSION = f"{GROUP}/session"
# A warm pool member (no session yet) carries this instead of LABEL_SESSION; its value
# is the hash of the pod template it was made from (a new template rolls the pool).
LABEL_POOL = f"{GROUP}/pool"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
APP_NAME = "myservice"
COMPONENT_INSTANCE = "instance"
MANAGED_BY = "myservice-operator"
# Annotation with the raw session id on the pod (annotations have no length/charset limit).
ANNOTATION_SESSION_ID = f"{GROUP}/session-id"

INSTANCE_PORT_NAME = "grpc"


class PodSource(enum.StrEnum):
    """status.podSource: how the session's pod was obtained."""
    WARM = "warm"  # claimed from the warm pool: Ready at once
    COLD = "cold"  # created for the session on demand


def is_start_failure(reason: str | None) -> bool:
    """Whether a Failed session's reason means it never became Ready (no instance to be had)."""
    return reason in START_FAILURE_REASONS


def is_terminal(phase: str | None) -> bool:
    """Whether the phase is final (Completed or Failed)."""
    return phase in TERMINAL_PHASES
