"""The kopf adapter: which events wake the operator, and the one idempotent
reconcile step they all run.

Three triggers, one step: a session is created (fast path), a session's timer
fires every MYSERVICE_RECONCILE_INTERVAL_SECONDS (slots, timeouts, TTL, missed
events), or one of our pods changes (fast path to Ready/Completed/Failed).
Each trigger re-reads the session and its pod from the API and lets statuses.py
decide, so replayed, duplicated or out-of-order events are harmless:
- the pod has a fixed name, and AlreadyExists counts as created;
- status is patched with a resourceVersion precondition, so a decision made on
  a stale read is dropped (and re-made on the next trigger) instead of
  overwriting a newer one;
- slots are counted from live pods under one lock, within the single active
  operator (the chart runs one replica with strategy Recreate, kopf standalone).
Handlers return nothing: kopf would otherwise write their results into status.
"""
from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Mapping

import kopf

from myservice import crd

from . import statuses
from .clients import Conflict, Kube, PodRejected
from .pods import instance_selector, make_pod
from .settings import Settings

# Kopf's own bookkeeping (handler progress, last handled spec, finalizer) goes to
# annotations under our domain: the CRD's status schema has no room for it and
# the API server would prune it, making kopf re-run handlers forever.
KOPF_PREFIX = crd.GROUP
FINALIZER = f"{crd.GROUP}/operator"
CONNECT_TIMEOUT_SECONDS = 10
EVENT_COMPONENT = "myservice-operator"
# Our own logger: kopf's per-object logger also reports every timer run at INFO,
# which __main__ quiets unless debugging.
log = logging.getLogger("myservice_operator")


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    """Kopf's settings for our deployment: namespaced, standalone, bookkeeping in annotations."""
    config = kopf.OperatorSettings()
    config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    config.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=KOPF_PREFIX)
    config.persistence.finalizer = FINALIZER
    # A watch request ends server-side after server_timeout; the client gives up
    # a minute later even if the stream went silent (e.g. a dropped connection).
    config.watching.server_timeout = settings.watch_timeout_seconds
    config.watching.client_timeout = settings.watch_timeout_seconds + 60
    config.watching.connect_timeout = CONNECT_TIMEOUT_SECONDS
    config.networking.connect_timeout = CONNECT_TIMEOUT_SECONDS
    config.networking.request_timeout = 60
    # One fixed namespace and one CRD known at start: no cluster-wide list/watch
    # of namespaces or CRDs, so the operator needs no ClusterRole.
    config.scanning.disabled = True
    # Watch only our instance pods (server-side), not every pod of the namespace.
    config.watching.label_selectors["v1", "pods"] = instance_selector()
    # Single replica, strategy Recreate: no KopfPeering CRD to install (see docs/kubernetes.md).
    config.peering.standalone = True
    config.posting.reporting_component = EVENT_COMPONENT
    # The finished-TTL delete is made by the session's own timer, which is still
    # running when kopf sees the deletion; kopf then re-checks that timer only every
    # cancellation_polling seconds (default 60) before it removes its finalizer, so
    # every TTL deletion took TTL + 60 s (e2e check 4). Wait a moment for the timer
    # to return, and poll each second.
    config.background.instant_exit_timeout = 2.0
    config.background.cancellation_polling = 1.0
    return config


class Reconciler:
    """The reconcile step for one session, shared by every handler."""

    def __init__(self, settings: Settings, kube: Kube,
                 clock: Callable[[], datetime.datetime] = utcnow) -> None:
        self.settings = settings
        self.kube = kube
        self.clock = clock
        # Serialises "count live pods, then create one" so concurrent sessions
        # cannot both take the last slot.
        self._admission = threading.Lock()

    def reconcile(self, name: str) -> None:
        session = self.kube.get_session(name)
        if session is None or session.get("metadata", {}).get("deletionTimestamp"):
            return  # gone or going: its pod follows by garbage collection
        status = session.get("status") or {}
        now = self.clock()
        created = statuses.parse_timestamp(session["metadata"]["creationTimestamp"])
        action = statuses.plan(status, created_at=created, now=now, settings=self.settings)
        pod_name = status.get("podName") or crd.pod_name(name)
        if action == statuses.PLAN_ADMIT:
            self._admit(session, now)
        elif action == statuses.PLAN_OBSERVE:
            self._observe(session, pod_name, now)
        elif action in (statuses.PLAN_EXPIRE, statuses.PLAN_TIMEOUT):
            # What the pod says first (it may have become Ready since the last event);
            # only a session whose pod made no progress times out.
            if self._observe(session, pod_name, now):
                return
            seconds = self.settings.ready_timeout_seconds
            failed = (statuses.expired_status(seconds, now) if action == statuses.PLAN_EXPIRE
                      else statuses.timed_out_status(pod_name, seconds, now))
            if self._write(session, failed):
                self.kube.delete_pod(pod_name)  # frees the slot now, not at the TTL
        elif action == statuses.PLAN_WAIT and status.get("phase") == crd.PHASE_FAILED:
            # A failed session's unfinished pod is deleted when it fails; this catches
            # a delete that was lost (e.g. an operator restart in between).
            pod = self._own_pod(session, pod_name)
            if pod is not None and statuses.is_live_pod(pod) and not pod["metadata"].get("deletionTimestamp"):
                self.kube.delete_pod(pod_name)
        elif action == statuses.PLAN_DELETE:
            log.info("deleting finished session %s (TTL over)", name)
            self.kube.delete_session(name)

    def _own_pod(self, session: Mapping, pod_name: str) -> dict | None:
        pod = self.kube.get_pod(pod_name)
        if pod is not None and not statuses.is_owned_by(pod, session["metadata"]["uid"]):
            return None  # a deleted namesake's pod, still terminating
        return pod

    def _observe(self, session: Mapping, pod_name: str, now: datetime.datetime) -> bool:
        """Apply what the pod's state means; False when it changes nothing."""
        state = statuses.observe_pod(self._own_pod(session, pod_name))
        patch = statuses.transition(session.get("status") or {}, state,
                                    port=self.settings.instance_port, now=now)
        if not patch:
            return False
        if self._write(session, patch) and statuses.releases_pod(patch, state):
            self.kube.delete_pod(pod_name)  # frees its slot now, not at the TTL
        return True

    def _admit(self, session: Mapping, now: datetime.datetime) -> None:
        name = session["metadata"]["name"]
        uid = session["metadata"]["uid"]
        status = session.get("status") or {}
        pod_name = crd.pod_name(name)
        with self._admission:
            pod = self.kube.get_pod(pod_name)
            if pod is not None and not statuses.is_owned_by(pod, uid):
                log.info("pod %s still belongs to a deleted session: waiting", pod_name)
                return
            if pod is None:
                live = sum(statuses.is_live_pod(p) for p in self.kube.list_instance_pods())
                if not statuses.admissible(name, self.kube.list_sessions(), live, self.settings.max_sessions):
                    pending = statuses.pending_status()
                    if {k: status.get(k) for k in pending} != pending:
                        self._write(session, pending)
                    return
                manifest = make_pod(resource=name, uid=uid, session_id=session["spec"]["sessionId"],
                                    settings=self.settings)
                try:
                    created = self.kube.create_pod(manifest)
                except PodRejected as error:
                    self._write(session, statuses.rejected_status(str(error), now))
                    return
                log.info("pod %s %s", pod_name, "created" if created else "already existed")
                pod = manifest
        patch = statuses.transition(status, statuses.observe_pod(pod),
                                    port=self.settings.instance_port, now=now)
        if patch:
            self._write(session, patch)

    def _write(self, session: Mapping, patch: Mapping) -> bool:
        """Patch the status if the session did not change since it was read; post an Event."""
        metadata = session["metadata"]
        body = dict(patch)
        if metadata.get("generation") is not None:
            body["observedGeneration"] = metadata["generation"]
        try:
            self.kube.patch_session_status(metadata["name"], metadata["resourceVersion"], body)
        except Conflict as error:
            log.debug("status not written, will re-check: %s", error)
            return False
        if "phase" in patch:
            log.info("session %s: %s (%s) %s", metadata["name"], patch["phase"],
                        patch.get("reason", ""), patch.get("message", ""))
            kopf.event(dict(session), type=statuses.event_type(patch),
                       reason=patch.get("reason", patch["phase"]), message=patch.get("message", ""))
        return True


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
    """Register the handlers (closures over the reconciler) into a kopf registry."""
    settings = reconciler.settings
    # A registry of our own lacks kopf's default login handlers: log in like the
    # `kubernetes` client does (in-cluster service account token, else kubeconfig).
    kopf.on.login(registry=registry, id="login-via-client")(kopf.login_via_client)

    @kopf.on.create(group=crd.GROUP, version=crd.VERSION, plural=crd.PLURAL, registry=registry, id="session-created")
    def session_created(name: str, **_: object) -> None:
        reconciler.reconcile(name)

    @kopf.timer(group=crd.GROUP, version=crd.VERSION, plural=crd.PLURAL, registry=registry,
                id="session-recheck",
                interval=settings.reconcile_interval_seconds)
    def session_recheck(name: str, **_: object) -> None:
        reconciler.reconcile(name)

    @kopf.on.event(group="", version="v1", plural="pods", registry=registry, id="instance-pod-changed", labels={
        crd.LABEL_MANAGED_BY: crd.MANAGED_BY, crd.LABEL_SESSION: kopf.PRESENT})
    def instance_pod_changed(labels: Mapping[str, str], **_: object) -> None:
        reconciler.reconcile(labels[crd.LABEL_SESSION])
