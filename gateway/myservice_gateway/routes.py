"""The routing choice for a session on Kubernetes: a pure function of its
MyServiceSession resource (as the watch cache holds it)."""
from __future__ import annotations

import dataclasses

import grpc

from myservice import contract
from myservice_api import crd
from myservice_api.names import resource_name

from .backends.base import BackendError, SessionKey, SessionOwner


@dataclasses.dataclass(frozen=True)
class Route:
    """Exactly one of: an address to forward to, an error to answer, or wait."""
    address: str | None = None
    pod_name: str = ""
    error: BackendError | None = None

    @property
    def wait(self) -> bool:
        return self.address is None and self.error is None


WAIT = Route()


def decide(resource: dict | None, key: SessionKey) -> Route:
    if resource is None:
        return WAIT  # not in the cache yet: just created, the watch will bring it
    if (resource.get("spec") or {}).get("user") != key.username:
        # Names are derived from (user, session_id), so this takes a hash collision
        # or a resource made by hand: never route a token to another user's pod.
        return Route(error=BackendError(grpc.StatusCode.PERMISSION_DENIED, contract.SESSION_OF_ANOTHER_USER))
    session_id = key.session_id
    status = resource.get("status") or {}
    phase, reason = status.get("phase"), status.get("reason")
    if phase == crd.PHASE_READY and status.get("podIP") and status.get("port"):
        return Route(address=f"{status['podIP']}:{status['port']}", pod_name=status.get("podName", ""))
    if phase == crd.PHASE_PENDING and reason == crd.REASON_CAPACITY:
        return Route(error=BackendError(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.ALL_INSTANCES_BUSY))
    if phase == crd.PHASE_COMPLETED:
        return Route(error=BackendError(grpc.StatusCode.FAILED_PRECONDITION, contract.session_ended(session_id)))
    if phase == crd.PHASE_FAILED:
        if crd.is_start_failure(reason):
            return Route(error=BackendError(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.NO_AVAILABLE_INSTANCES))
        return Route(error=BackendError(grpc.StatusCode.UNAVAILABLE, contract.BACKEND_UNAVAILABLE))
    if resource.get("metadata", {}).get("deletionTimestamp"):
        return Route(error=BackendError(grpc.StatusCode.UNAVAILABLE, contract.BACKEND_UNAVAILABLE))
    return WAIT  # no status yet, Pending without a reason, Starting


def session_resource(owner: SessionOwner, *, namespace: str) -> dict:
    """The MyServiceSession the gateway creates at Login."""
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": resource_name(owner.username, owner.session_id), "namespace": namespace,
                     "labels": {crd.LABEL_NAME: crd.APP_NAME}},
        "spec": {"sessionId": owner.session_id, "user": owner.username, "role": owner.role},
    }


def holds_a_slot(resource: dict | None) -> bool:
    """Whether a session counts against its user's limit: not finished, not being deleted."""
    if resource is None or resource.get("metadata", {}).get("deletionTimestamp"):
        return False
    return not crd.is_terminal((resource.get("status") or {}).get("phase"))
