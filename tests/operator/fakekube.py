"""A small fake of the operator's `Kube` interface, and kopf's part around the reconciler.

FakeKube keeps sessions and pods as the API would (resourceVersions, the status
precondition, AlreadyExists, garbage collection by owner) and records every
request and every watch event. Harness delivers those events the way kopf
does: each one is indexed first (with kopf's own index classes and our index
functions), then its handler runs. The e2e suite is the proof against a real
API server; this is for the reconciler's decisions and its request counts.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import datetime
import itertools

from kopf._core.engines.indexing import OperatorIndexer

from myservice_api import crd
from myservice_api.names import resource_name
from myservice_operator.clients import Conflict, PodRejected
from myservice_operator.indexes import Indexes, index_pod, index_session
from myservice_operator.metrics import OperatorMetrics
from myservice_operator.reconciler import Reconciler
from myservice_operator.times import timestamp

START = datetime.datetime(2026, 1, 2, 3, 0, 0, tzinfo=datetime.timezone.utc)
NAMESPACE = "ns"


class ApiError(Exception):
    """What the API answers with a 5xx (the reconciler does not catch it)."""


class FakeKube:
    def __init__(self, clock) -> None:
        self.namespace = NAMESPACE
        self.clock = clock
        self.sessions: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.events: list[dict] = []
        self.requests: list[tuple[str, str, int]] = []  # (verb, resource, code)
        self.watch: list[tuple[str, str, dict]] = []    # (kind, type, body)
        self.reject_pods = ""                            # a message: the API refuses pods
        self.fail: set[tuple[str, str]] = set()          # (verb, resource) answered 500 once
        self.down: set[tuple[str, str]] = set()          # (verb, resource) answered 500 until removed
        self.ready_after: dict[str, int] = {}            # session -> len(requests) when it turned Ready
        self._rv = itertools.count(100)
        self._uid = itertools.count(1)

    # --- what others do: the gateway creates sessions, kubelet runs pods ------------

    def create_session(self, session_id: str, user: str = "alice") -> str:
        name = resource_name(user, session_id)
        body = {"apiVersion": crd.API_VERSION, "kind": crd.KIND,
                "metadata": {"name": name, "namespace": self.namespace, "uid": f"uid-{next(self._uid)}",
                             "resourceVersion": str(next(self._rv)), "generation": 1,
                             "creationTimestamp": timestamp(self.clock())},
                "spec": {"sessionId": session_id, "user": user}}
        self.sessions[name] = body
        self._emit("session", "ADDED", body)
        return name

    def touch_session(self, name: str) -> None:
        """Someone else changes the session (e.g. a label): a new resourceVersion."""
        self.sessions[name]["metadata"]["resourceVersion"] = str(next(self._rv))
        self._emit("session", "MODIFIED", self.sessions[name])

    def pod_running(self, name: str, ip: str = "10.0.0.7", ready: bool = True) -> None:
        status = {"phase": "Running", "podIP": ip,
                  "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
        self._pod_status(name, status)

    def pod_exited(self, name: str, code: int = 0, message: str | None = None) -> None:
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
        if message is not None:
            terminated["message"] = message
        self._pod_status(name, {"phase": "Succeeded" if code == 0 else "Failed",
                                "containerStatuses": [{"name": "instance", "state": {"terminated": terminated}}]})

    def pod_waiting(self, name: str, reason: str, message: str = "") -> None:
        self._pod_status(name, {"phase": "Pending", "containerStatuses": [
            {"name": "instance", "state": {"waiting": {"reason": reason, "message": message}}}]})

    def someone_deletes_pod(self, name: str) -> None:
        self._mark_deleting(name)

    def gateway_deletes_session(self, name: str, collect: bool = True) -> None:
        """The session goes; its pods go with it (collect), or are left terminating."""
        self._delete_session(name, collect)

    def pods_gone(self) -> None:
        """kubelet finishes every pod being deleted."""
        for name in [n for n, p in self.pods.items() if p["metadata"].get("deletionTimestamp")]:
            self._emit("pod", "DELETED", self.pods.pop(name))

    def _pod_status(self, name: str, status: dict) -> None:
        pod = self.pods[name]
        pod["status"] = status
        pod["metadata"]["resourceVersion"] = str(next(self._rv))
        self._emit("pod", "MODIFIED", pod)

    def _emit(self, kind: str, type: str, body: dict) -> None:
        self.watch.append((kind, type, copy.deepcopy(body)))

    # --- the Kube interface ---------------------------------------------------------

    def _request(self, verb: str, resource: str, code: int = 200) -> None:
        if (verb, resource) in self.fail or (verb, resource) in self.down:
            self.fail.discard((verb, resource))
            self.requests.append((verb, resource, 500))
            raise ApiError(f"{verb} {resource}: 500")
        self.requests.append((verb, resource, code))

    def create_pod(self, manifest: dict) -> bool:
        name = manifest["metadata"]["name"]
        if self.reject_pods:
            self._request("create", "pods", 403)
            raise PodRejected(self.reject_pods)
        if name in self.pods:
            self._request("create", "pods", 409)
            return False
        self._request("create", "pods", 201)
        pod = copy.deepcopy(dict(manifest))
        pod["metadata"].update(uid=f"pod-uid-{next(self._uid)}", resourceVersion=str(next(self._rv)),
                               creationTimestamp=timestamp(self.clock()))
        pod["metadata"].setdefault("ownerReferences", [])
        pod["status"] = {"phase": "Pending"}
        self.pods[name] = pod
        self._emit("pod", "ADDED", pod)
        return True

    def list_pool_pods(self) -> list[dict]:
        self._request("list", "pods")
        return [copy.deepcopy(p) for p in self.pods.values() if crd.LABEL_POOL in p["metadata"]["labels"]]

    def claim_pod(self, name: str, patch: dict) -> dict:
        """A merge patch with the resourceVersion precondition, as the API applies it."""
        pod = self.pods.get(name)
        if pod is None or pod["metadata"]["resourceVersion"] != patch["metadata"]["resourceVersion"]:
            self._request("patch", "pods", 404 if pod is None else 409)
            raise Conflict(f"pool pod {name} changed or is gone")
        self._request("patch", "pods")
        metadata = patch["metadata"]
        for key, value in metadata["labels"].items():
            if value is None:
                pod["metadata"]["labels"].pop(key, None)
            else:
                pod["metadata"]["labels"][key] = value
        pod["metadata"].setdefault("annotations", {}).update(metadata["annotations"])
        pod["metadata"]["ownerReferences"] = copy.deepcopy(metadata["ownerReferences"])
        pod["spec"].update(copy.deepcopy(patch.get("spec", {})))
        pod["metadata"]["resourceVersion"] = str(next(self._rv))
        self._emit("pod", "MODIFIED", pod)
        return copy.deepcopy(pod)

    def pool_pods(self) -> list[str]:
        return sorted(n for n, p in self.pods.items()
                      if crd.LABEL_POOL in p["metadata"]["labels"] and not p["metadata"].get("deletionTimestamp"))

    def delete_pod(self, name: str) -> None:
        if name not in self.pods:
            self._request("delete", "pods", 404)
            return
        self._request("delete", "pods")
        self._mark_deleting(name)

    def _mark_deleting(self, name: str) -> None:
        pod = self.pods[name]
        pod["metadata"]["deletionTimestamp"] = timestamp(self.clock())
        pod["metadata"]["resourceVersion"] = str(next(self._rv))
        self._emit("pod", "MODIFIED", pod)

    def patch_session_status(self, name: str, resource_version: str, status: dict) -> dict:
        session = self.sessions.get(name)
        if session is None or session["metadata"]["resourceVersion"] != resource_version:
            self._request("patch", "myservicesessions/status", 404 if session is None else 409)
            raise Conflict(f"session {name} changed or is gone")
        self._request("patch", "myservicesessions/status")
        if status.get("phase") == crd.Phase.READY and session.get("status", {}).get("phase") != crd.Phase.READY:
            self.ready_after[name] = len(self.requests)  # what the gateway waited for
        session["status"] = {**session.get("status", {}), **copy.deepcopy(dict(status))}
        session["metadata"]["resourceVersion"] = str(next(self._rv))
        self._emit("session", "MODIFIED", session)
        return copy.deepcopy(session)

    def delete_session(self, name: str) -> None:
        if name not in self.sessions:
            self._request("delete", "myservicesessions", 404)
            return
        self._request("delete", "myservicesessions")
        self._delete_session(name, collect=True)

    def _delete_session(self, name: str, collect: bool) -> None:
        session = self.sessions.pop(name)
        self._emit("session", "DELETED", session)
        for pod_name, pod in list(self.pods.items()):  # garbage collection
            if any(ref["uid"] == session["metadata"]["uid"] for ref in pod["metadata"].get("ownerReferences", [])):
                if collect:
                    self._emit("pod", "DELETED", self.pods.pop(pod_name))
                else:
                    self._mark_deleting(pod_name)

    def create_event(self, event: dict) -> None:
        self._request("create", "events", 201)
        self.events.append(copy.deepcopy(dict(event)))

    # --- what the tests read ----------------------------------------------------------

    def phase(self, name: str) -> tuple[str, str] | None:
        status = self.sessions[name].get("status", {}) if name in self.sessions else None
        return None if status is None else (status.get("phase"), status.get("reason"))

    def reads(self) -> list:
        return [r for r in self.requests if r[0] in ("get", "list", "watch")]

    def writes(self) -> list:
        return [r for r in self.requests if r[0] not in ("get", "list", "watch")]


class InlineExecutor(concurrent.futures.Executor):
    """Runs each API call at once on the loop's thread: the fake needs no locks and the
    tests are deterministic (awaiting the call still yields to the loop)."""

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)


class Harness:
    """The reconciler as kopf runs it: indexes first, then the handler, event by event."""

    def __init__(self, settings, kube: FakeKube | None = None, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.kube = kube or FakeKube(self.clock)
        self.settings = settings
        self.start()

    def start(self) -> None:
        """A fresh operator process: empty indexes, a new reconciler; kopf's initial
        listing indexes every existing object before any handler runs."""
        self.metrics = OperatorMetrics()
        self.sessions, self.pods = OperatorIndexer(), OperatorIndexer()
        self.reconciler = Reconciler(self.settings, self.kube, metrics=self.metrics, clock=self.clock,
                                     executor=InlineExecutor())
        self.reconciler.bind(Indexes(self.sessions.index, self.pods.index))
        self.kube.watch.clear()
        for body in self.kube.sessions.values():
            self._index("session", None, body)
        for body in self.kube.pods.values():
            self._index("pod", None, body)

    async def relist(self) -> None:
        """The handlers of kopf's initial listing (type None), after all is indexed."""
        listed = [("session", b) for b in self.kube.sessions.values()] + [("pod", b) for b in self.kube.pods.values()]
        for kind, body in listed:
            await self._handle(kind, None, copy.deepcopy(body))
        await self.reconciler.settle()

    def _index(self, kind: str, type: str | None, body: dict) -> None:
        indexer, function = (self.sessions, index_session) if kind == "session" else (self.pods, index_pod)
        key = (body["metadata"].get("namespace"), body["metadata"]["name"], body["metadata"]["uid"])
        if type == "DELETED":
            indexer.discard(key)
        else:
            indexer.replace(key, function(body))

    async def _handle(self, kind: str, type: str | None, body: dict) -> None:
        if kind == "session":
            await self.reconciler.session_changed(body["metadata"]["name"], deleted=type == "DELETED")
        else:
            session = body["metadata"]["labels"].get(crd.LABEL_SESSION)
            self.reconciler.pool_changed(body["metadata"]["name"], deleted=type == "DELETED", labelled=bool(session))
            if session:
                await self.reconciler.pod_changed(session, deleted=type == "DELETED")

    async def deliver(self, only: str | None = None, hold: str | None = None, where=None) -> int:
        """Deliver watch events until none is left (only of one kind, or holding one kind
        back, or only those `where(kind, type, body)` accepts); each is indexed, then handled.
        Returns how many were delivered."""
        delivered = 0
        while True:
            pending = [e for e in self.kube.watch if (only is None or e[0] == only) and e[0] != hold
                       and (where is None or where(*e))]
            if not pending:
                return delivered
            event = pending[0]
            self.kube.watch.remove(event)
            kind, type, body = event
            self._index(kind, type, body)
            await self._handle(kind, type, body)
            await self.reconciler.settle()
            delivered += 1

    async def concurrently(self) -> None:
        """Index every waiting event, then run all their handlers at once (a burst)."""
        events, self.kube.watch[:] = list(self.kube.watch), []
        for kind, type, body in events:
            self._index(kind, type, body)
        await asyncio.gather(*(self._handle(kind, type, body) for kind, type, body in events))
        await self.reconciler.settle()

    async def at(self, seconds_later: float) -> None:
        """Time passes; the deadlines that came are run, then what they caused is delivered."""
        self.clock.advance(seconds_later)
        await self.reconciler.run_due()
        await self.reconciler.settle()
        await self.deliver()
