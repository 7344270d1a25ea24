"""The operator's memory of sessions and instance pods: kopf indexes (pure functions).

kopf calls index_session() / index_pod() on every watch event, before any
handler, and keeps what they return in an in-memory index (`@kopf.index`);
handlers run only once the initial listing of both kinds is indexed. So every
decision reads the latest watched state from memory, with no GET and no LIST:

- sessions: name -> SessionRecord; ("phase", <phase>) -> name (counts per
  phase, O(1)); ("assigned", <pod>) -> name for every session whose status names
  a warm pool pod (the assignment: written before the pod is labelled, so after a
  failover the index of statuses is what says which pool pods are taken);
- pods: session name -> PodRecord (the pod as observe_pod() reads it);
  LIVE -> session name for every pod holding a slot (the live count, O(1));
  POOL -> pool.Member for every warm pool pod (no session label yet; pool.py),
  and ("member", <pod>) -> the same Member (one member by name, O(1)).

The records are small and frozen (a copy of what matters, not the body), so
the index costs a few hundred bytes per session.
"""
from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping

from myservice_api.crd import API_VERSION, KIND, LABEL_POOL, LABEL_SESSION, Phase, PodSource

from . import pool

from .podstate import PodState, is_live_pod, observe_pod, owner_uid
from .times import parse_timestamp

# kopf passes each index to the handlers as a keyword argument named by its id.
SESSIONS_INDEX = "sessions_index"
PODS_INDEX = "pods_index"

LIVE = ("live",)
POOL = ("pool",)
EPOCH = "1970-01-01T00:00:00Z"  # a pod without a creationTimestamp counts as old


def phase_key(phase: str) -> tuple[str, str]:
    return ("phase", str(phase))


def assigned_key(pod: str) -> tuple[str, str]:
    return ("assigned", pod)


def member_key(pod: str) -> tuple[str, str]:
    return ("member", pod)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionRecord:
    name: str
    namespace: str
    uid: str
    resource_version: str
    generation: int | None
    created_at: str
    session_id: str
    status: Mapping
    deleting: bool

    @property
    def phase(self) -> str:
        return self.status.get("phase") or Phase.PENDING

    @property
    def created(self) -> datetime.datetime:
        return parse_timestamp(self.created_at)

    @property
    def waiting(self) -> bool:
        """Whether it waits for a slot (admission queue)."""
        return self.phase == Phase.PENDING and not self.deleting

    def reference(self) -> dict:
        """The session as an Event's involvedObject."""
        return {"apiVersion": API_VERSION, "kind": KIND, "name": self.name,
                "namespace": self.namespace, "uid": self.uid, "resourceVersion": self.resource_version}


@dataclasses.dataclass(frozen=True, slots=True)
class PodRecord:
    name: str
    session: str
    owner_uid: str
    state: PodState
    live: bool
    deleting: bool


def session_record(body: Mapping) -> SessionRecord:
    metadata = body.get("metadata") or {}
    return SessionRecord(
        name=metadata.get("name", ""),
        namespace=metadata.get("namespace", ""),
        uid=metadata.get("uid", ""),
        resource_version=metadata.get("resourceVersion", ""),
        generation=metadata.get("generation"),
        created_at=metadata.get("creationTimestamp", ""),
        session_id=(body.get("spec") or {}).get("sessionId", ""),
        status=dict(body.get("status") or {}),
        deleting=bool(metadata.get("deletionTimestamp")),
    )


def index_session(body: Mapping) -> dict:
    """What the sessions index keeps of one MyServiceSession."""
    record = session_record(body)
    entries: dict = {record.name: record, phase_key(record.phase): record.name}
    if record.status.get("podSource") == PodSource.WARM and record.status.get("podName"):
        entries[assigned_key(record.status["podName"])] = record.name
    return entries


def pod_record(body: Mapping) -> PodRecord:
    metadata = body.get("metadata") or {}
    return PodRecord(
        name=metadata.get("name", ""),
        session=(metadata.get("labels") or {}).get(LABEL_SESSION, ""),
        owner_uid=owner_uid(body),
        state=observe_pod(body),
        live=is_live_pod(body),
        deleting=bool(metadata.get("deletionTimestamp")),
    )


def pool_member(body: Mapping) -> pool.Member:
    metadata = body.get("metadata") or {}
    return pool.Member(
        name=metadata.get("name", ""),
        resource_version=metadata.get("resourceVersion", ""),
        template=(metadata.get("labels") or {}).get(LABEL_POOL, ""),
        created_at=parse_timestamp(metadata.get("creationTimestamp") or EPOCH),
        state=observe_pod(body),
        deleting=bool(metadata.get("deletionTimestamp")),
    )


def index_pod(body: Mapping) -> dict:
    """What the pods index keeps of one instance pod."""
    record = pod_record(body)
    if not record.session:
        labels = (body.get("metadata") or {}).get("labels") or {}
        if LABEL_POOL not in labels:
            return {}
        member = pool_member(body)
        return {POOL: member, member_key(member.name): member}
    entries: dict = {record.session: record}
    if record.live:
        entries[LIVE] = record.session
    return entries


class Indexes:
    """Read access to the two kopf indexes (Mapping[key, Store of values])."""

    def __init__(self, sessions: Mapping, pods: Mapping) -> None:
        self._sessions = sessions
        self._pods = pods

    def session(self, name: str) -> SessionRecord | None:
        return next(iter(self._sessions.get(name, ())), None)

    def pods_of(self, session: str) -> list[PodRecord]:
        return list(self._pods.get(session, ()))

    def has_pod(self, session: str) -> bool:
        return session in self._pods

    def pool_members(self) -> list[pool.Member]:
        return list(self._pods.get(POOL, ()))

    def pool_member(self, pod: str) -> pool.Member | None:
        """The pool pod of that name, while it is one (no session label yet)."""
        return next(iter(self._pods.get(member_key(pod), ())), None)

    def assigned_to(self, pod: str) -> str | None:
        """The session whose status names this warm pool pod (any phase), if one does."""
        return next(iter(self._sessions.get(assigned_key(pod), ())), None)

    def live_pods(self) -> int:
        return len(self._pods.get(LIVE, ()))

    def sessions_in(self, phase: str) -> int:
        return len(self._sessions.get(phase_key(phase), ()))
