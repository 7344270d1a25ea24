"""The Kubernetes contract shared by the gateway and the operator.

The gateway creates one ``MyServiceSession`` (MSS) per client session and routes
by reading its status; the operator owns the session's pod and writes that
status. Both sides import the names, phases, reasons and labels from here so
that they cannot drift apart. Pure: no I/O, no Kubernetes client.

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

import hashlib
import re

GROUP = "myservice.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "MyServiceSession"
PLURAL = "myservicesessions"
SINGULAR = "myservicesession"
SHORT_NAME = "mss"

# Phases (status.phase).
PHASE_PENDING = "Pending"
PHASE_STARTING = "Starting"
PHASE_READY = "Ready"
PHASE_COMPLETED = "Completed"
PHASE_FAILED = "Failed"
PHASES = (PHASE_PENDING, PHASE_STARTING, PHASE_READY, PHASE_COMPLETED, PHASE_FAILED)
TERMINAL_PHASES = frozenset({PHASE_COMPLETED, PHASE_FAILED})

# Reasons (status.reason). The gateway maps them to gRPC codes:
#   Pending + REASON_CAPACITY              -> RESOURCE_EXHAUSTED "all instances are busy"
#   Failed + is_start_failure(reason)      -> RESOURCE_EXHAUSTED "no available instances"
#   Failed after Ready (other reasons)     -> UNAVAILABLE "backend service unavailable"
#   Completed                              -> FAILED_PRECONDITION "session <id> has ended; ..."
REASON_CAPACITY = "CapacityExceeded"
"""Pending: MYSERVICE_MAX_SESSIONS live pods already. Failed: still no slot after
MYSERVICE_READY_TIMEOUT_SECONDS of waiting."""
REASON_POD_CREATED = "PodCreated"
"""Starting: the pod was created (or found, after an operator restart)."""
REASON_UNSCHEDULABLE = "Unschedulable"
"""Failed before Ready: the scheduler cannot place the pod (no node has room)."""
REASON_IMAGE_PULL = "ImagePullFailed"
"""Failed before Ready: ErrImagePull, ImagePullBackOff, ErrImageNeverPull, InvalidImageName."""
REASON_START_FAILED = "StartFailed"
"""Failed before Ready: the pod was rejected by the API (quota, admission), its
container could not be created, or it stopped/was deleted/evicted before Ready."""
REASON_READY_TIMEOUT = "ReadyTimeout"
"""Failed before Ready: not Ready within MYSERVICE_READY_TIMEOUT_SECONDS (pod deleted)."""
REASON_POD_READY = "PodReady"
"""Ready: the pod passes its gRPC readiness probe."""
REASON_INSTANCE_EXITED = "InstanceExited"
"""Completed: the instance process exited 0 (pod Succeeded), e.g. after MyServiceShutdown."""
REASON_IDLE_TIMEOUT = "IdleTimeout"
"""Completed: the instance ended itself after MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS
without a call (none in flight; an open stream counts as a call), and said so in its
termination message ("IdleTimeout: no call for 900s")."""
REASON_LIFETIME_EXCEEDED = "LifetimeExceeded"
"""Completed: the session reached MYSERVICE_SESSION_MAX_LIFETIME_SECONDS since its
instance started: the instance ended itself (termination message "LifetimeExceeded:
..."), or kubelet stopped the pod at its activeDeadlineSeconds (the backstop)."""
REASON_POD_FAILED = "PodFailed"
"""Failed after Ready: the instance exited non-zero (pod Failed)."""
REASON_EVICTED = "Evicted"
"""Failed after Ready: the pod was evicted or preempted by Kubernetes."""
REASON_POD_DELETED = "PodDeleted"
"""Failed after Ready: the pod disappeared or is being deleted."""

START_FAILURE_REASONS = frozenset({
    REASON_CAPACITY,
    REASON_UNSCHEDULABLE,
    REASON_IMAGE_PULL,
    REASON_START_FAILED,
    REASON_READY_TIMEOUT,
})

MESSAGE_CAPACITY = "all instances are busy"

# Labels on the instance pods. Values are resource names (valid label values),
# never raw session ids, which may be longer than 63 characters or contain anything.
LABEL_SESSION = f"{GROUP}/session"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
APP_NAME = "myservice"
COMPONENT_INSTANCE = "instance"
MANAGED_BY = "myservice-operator"
# Annotation with the raw session id on the pod (annotations have no length/charset limit).
ANNOTATION_SESSION_ID = f"{GROUP}/session-id"

INSTANCE_PORT_NAME = "grpc"

_NAME_PREFIX = "mss"
_POD_SUFFIX = "-pod"
# 64 bits: a session_id crafted to collide with another user's session would take
# ~2^63 tries (a collision is refused anyway: spec.user is checked).
_HASH_LEN = 16
_DNS_LABEL_MAX = 63
# Room left for the slug: "mss-" + slug + "-" + hash, and the pod name adds "-pod".
_SLUG_MAX = _DNS_LABEL_MAX - len(_POD_SUFFIX) - len(_NAME_PREFIX) - 2 - _HASH_LEN
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def session_identity(username: str, session_id: str) -> bytes:
    """An unambiguous encoding of (user, session_id): the length prefix keeps
    ("ab", "c") and ("a", "bc") apart."""
    user = username.encode("utf-8")
    return b"%d:" % len(user) + user + session_id.encode("utf-8")


def resource_name(username: str, session_id: str) -> str:
    """The MyServiceSession's metadata.name for a user's session id.

    ``mss-<slug>-<hash>``: the slug is a readable, lowercased, shortened form of
    the session id; the hash (first 16 hex digits of sha256 of the user and the
    raw id, session_identity) keeps apart two users' sessions of the same id and
    ids that slug alike (case, punctuation, truncation, unicode). Always a valid
    RFC 1123 DNS label short enough that pod_name() is one too.
    """
    digest = hashlib.sha256(session_identity(username, session_id)).hexdigest()[:_HASH_LEN]
    slug = _NON_ALNUM.sub("-", session_id.lower()).strip("-")[:_SLUG_MAX].strip("-")
    if not slug:
        return f"{_NAME_PREFIX}-{digest}"
    return f"{_NAME_PREFIX}-{slug}-{digest}"


def pod_name(resource: str) -> str:
    """The fixed name of the session's pod (fixed so a replay can never create a second one)."""
    return f"{resource}{_POD_SUFFIX}"


def is_start_failure(reason: str | None) -> bool:
    """Whether a Failed session's reason means it never became Ready (no instance to be had)."""
    return reason in START_FAILURE_REASONS


def is_terminal(phase: str | None) -> bool:
    """Whether the phase is final (Completed or Failed)."""
    return phase in TERMINAL_PHASES
