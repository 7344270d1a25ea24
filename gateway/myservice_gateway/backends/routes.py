"""The Kubernetes backend's routing choice: a pure function of a session's
MyServiceSession resource (as the watch cache holds it)."""
from __future__ import annotations

import dataclasses

from myservice import errors
from myservice_api import crd
from myservice_api.names import resource_name

from . import sessions
from .base import SessionKey, SessionOwner


@dataclasses.dataclass(frozen=True)
class Route:
    """At most one of: an address to forward to, an error to answer; neither: wait."""
    address: str | None = None
    pod_name: str = ""
    error: errors.ContractError | None = None


WAIT = Route()


def decide(resource: dict | None, key: SessionKey) -> Route:
    if resource is None:
        return WAIT  # not in the cache yet: just created, the watch will bring it
    try:
        sessions.check_owner(owner_of(resource), key.username)
    except errors.ContractError as e:
        return Route(error=e)
    status = resource.get("status") or {}
    phase, reason = status.get("phase"), status.get("reason")
    address = ready_address(resource)
    if address:
        return Route(address=address, pod_name=status.get("podName", ""))
    if phase == crd.Phase.PENDING and reason == crd.Reason.CAPACITY:
        return Route(error=errors.all_instances_busy())
    if phase == crd.Phase.COMPLETED:
        return Route(error=errors.session_ended(key.session_id))
    if phase == crd.Phase.FAILED:
        if crd.is_start_failure(reason):
            return Route(error=errors.no_available_instances())
        return Route(error=errors.backend_unavailable())
    if resource.get("metadata", {}).get("deletionTimestamp"):
        return Route(error=errors.backend_unavailable())
    return WAIT  # no status yet, Pending without a reason, Starting


def ready_address(resource: dict | None) -> str | None:
    """`podIP:port` of a Ready session's pod, None unless Ready with both."""
    status = (resource or {}).get("status") or {}
    if status.get("phase") == crd.Phase.READY and status.get("podIP") and status.get("port"):
        return f"{status['podIP']}:{status['port']}"
    return None


def owner_of(resource: dict) -> str | None:
    return (resource.get("spec") or {}).get("user")


def pod_source(resource: dict | None) -> crd.PodSource:
    """How the operator got the session's pod (status.podSource; cold until it says)."""
    source = ((resource or {}).get("status") or {}).get("podSource")
    return crd.PodSource.WARM if source == crd.PodSource.WARM else crd.PodSource.COLD


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
