"""The warm pool (pure, no I/O): ready instance pods that no session owns yet.

A pool member is an instance pod made like a session's (pods.make_pod, the same
template) but with no session: no owner, LABEL_POOL (the template's hash) instead
of LABEL_SESSION, no lifetime deadline, and MYSERVICE_INSTANCE_WAIT_FOR_CLAIM=1 so
that its idle and lifetime clocks start at its session's first call, not while it
waits. A new session is given a Ready member by a write of its status (the
reconciler: Ready on the member, the one write it waits for); then the member is
labelled in one merge patch guarded by the pod's resourceVersion (claim_patch):
labels, owner and deadline change together, and a labelled pod is no longer a member.
Until then the sessions' statuses say it is taken (pick's and plan's `taken`).

Pool pods are extra to MYSERVICE_MAX_SESSIONS (which counts session pods, warm or
cold): at most max_sessions + pool size instance pods exist. plan() says what to
create and delete to keep `size` healthy members of the current template.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import secrets
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from myservice_api import crd

from .podstate import PodKind, PodState
from .pods import CONTAINER_NAME, LIFETIME_DEADLINE_MARGIN_SECONDS, make_pod, owner_reference

if TYPE_CHECKING:
    from .settings import Settings

WAIT_FOR_CLAIM_ENV = "MYSERVICE_INSTANCE_WAIT_FOR_CLAIM"  # read by service_image/myservice_instance
POD_NAME_PREFIX = "mss-pool-"
# The states a member can still serve from (others are replaced).
USABLE = (PodKind.STARTING, PodKind.READY)
# A burst of claims: at least this many in the last second (refill_held).
BURST_CLAIMS = 10
BURST_WINDOW_SECONDS = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """A pool pod as the index keeps it."""
    name: str
    resource_version: str
    template: str
    created_at: datetime.datetime
    state: PodState
    deleting: bool


@dataclasses.dataclass(frozen=True)
class Plan:
    create: int
    delete: tuple[str, ...]


def template_hash(settings: Settings) -> str:
    """A short hash of everything a member is made from (image, template, limits, port)."""
    manifest = _unnamed_member(settings)
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:12]


def _unnamed_member(settings: Settings) -> dict:
    pod = make_pod(resource="pool", uid="", session_id="", settings=settings)
    metadata = pod["metadata"]
    for key in ("name", "ownerReferences"):
        metadata.pop(key, None)
    metadata["labels"].pop(crd.LABEL_SESSION, None)
    metadata.get("annotations", {}).pop(crd.ANNOTATION_SESSION_ID, None)
    if not metadata.get("annotations"):
        metadata.pop("annotations", None)
    spec = pod["spec"]
    spec.pop("activeDeadlineSeconds", None)  # set at the claim: the session's lifetime starts then
    instance = next(c for c in spec["containers"] if c["name"] == CONTAINER_NAME)
    instance["env"] = [*instance["env"], {"name": WAIT_FOR_CLAIM_ENV, "value": "1"}]
    return pod


def make_member(settings: Settings, *, template: str, suffix: str | None = None) -> dict:
    """A new pool pod's manifest (a random name: members are interchangeable)."""
    pod = _unnamed_member(settings)
    pod["metadata"]["name"] = POD_NAME_PREFIX + (suffix or secrets.token_hex(5))
    pod["metadata"]["labels"][crd.LABEL_POOL] = template
    return pod


def claim_patch(member: Member, *, resource: str, uid: str, session_id: str, settings: Settings,
                now: datetime.datetime) -> dict:
    """The merge patch that gives `member` to the session `resource`: only if the pod is
    still at the resourceVersion the pool saw (else 409: someone changed or claimed it)."""
    patch: dict = {
        "metadata": {
            "resourceVersion": member.resource_version,
            "labels": {crd.LABEL_POOL: None, crd.LABEL_SESSION: resource},
            "annotations": {crd.ANNOTATION_SESSION_ID: session_id},
            "ownerReferences": [owner_reference(resource, uid)],
        },
    }
    if settings.session_max_lifetime_seconds:
        # The lifetime's backstop, counted from the pod's start as kubelet does: its
        # time in the pool plus the session's whole lifetime.
        waited = max(0, math.ceil((now - member.created_at).total_seconds()))
        patch["spec"] = {"activeDeadlineSeconds": waited + settings.session_max_lifetime_seconds
                         + LIFETIME_DEADLINE_MARGIN_SECONDS}
    return patch


def pick(members: Iterable[Member], *, template: str, taken: Collection[str]) -> Member | None:
    """The member to claim: Ready, of the current template, not being deleted or
    claimed already; the oldest first (it has waited longest)."""
    ready = [m for m in members if m.template == template and m.state.kind == PodKind.READY
             and not m.deleting and m.name not in taken]
    return min(ready, key=lambda m: (m.created_at, m.name), default=None)


def plan(members: Iterable[Member], *, size: int, template: str, creating: int, taken: Collection[str],
         now: datetime.datetime, start_timeout_seconds: float, max_starting: int = 2) -> Plan:
    """What keeps `size` healthy members of `template`: how many to create (besides the
    `creating` ones on their way; at most `max_starting` members starting at once, so that
    a refill does not starve the sessions it is for: 20 instances starting together on a
    2-core node made warm first calls wait ~1 s) and which members to delete: those of an
    old template, ended or broken, not Ready within the start timeout (hung, or stopped
    being Ready), and any beyond `size` (the newest, least likely Ready, first)."""
    delete: list[str] = []
    healthy: list[Member] = []
    for member in members:
        if member.deleting or member.name in taken:
            continue
        stale = member.template != template or member.state.kind not in USABLE
        hung = (member.state.kind != PodKind.READY
                and (now - member.created_at).total_seconds() >= start_timeout_seconds)
        if stale or hung:
            delete.append(member.name)
        else:
            healthy.append(member)
    healthy.sort(key=lambda m: (m.state.kind != PodKind.READY, m.created_at, m.name))
    delete += [m.name for m in healthy[size:]]
    starting = creating + sum(1 for m in healthy[:size] if m.state.kind != PodKind.READY)
    wanted = size - len(healthy) - creating
    return Plan(create=max(0, min(wanted, max_starting - starting)), delete=tuple(delete))


def free_ready(members: Iterable[Member], *, template: str, taken: Collection[str]) -> int:
    """How many members a claim could have now (what pick() chooses from)."""
    return sum(1 for m in members if m.template == template and m.state.kind == PodKind.READY
               and not m.deleting and m.name not in taken)


def refill_held(*, recent_claims: int, free: int, size: int, max_starting: int) -> bool:
    """Whether the pool's creates wait: while a burst of claims goes on (BURST_CLAIMS or more
    in the last BURST_WINDOW_SECONDS) and more than a quarter of the pool (and more than
    max_starting members) is still Ready and free. On a small cluster each create costs the
    API server and the operator about what a claim does (the create, the binding, the pod's
    status writes and their events: 4 of the 7 writes per claim in the scale run's burst),
    so refilling during a burst slows the very claims it is for; the pool refills when the
    burst ends, or at once when it runs low."""
    return recent_claims >= BURST_CLAIMS and free > max(size // 4, max_starting)


def next_check(members: Iterable[Member], *, start_timeout_seconds: float) -> datetime.datetime | None:
    """When a member not Ready yet would be hung (plan() changes its answer by itself)."""
    starting = [m.created_at for m in members if m.state.kind == PodKind.STARTING and not m.deleting]
    if not starting:
        return None
    return min(starting) + datetime.timedelta(seconds=start_timeout_seconds, milliseconds=100)
