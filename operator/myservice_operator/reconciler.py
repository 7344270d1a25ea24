"""The reconcile step of one session, and what triggers it.

Three triggers run the same step for one session, from memory (kopf's indexes
of sessions and pods, indexes.py), never from a GET or a LIST:
- an event of the session (kopf delivers it, and has indexed it already);
- an event of its pod (a pod that ended or went also frees a slot: the oldest
  waiting sessions are admitted at once);
- its deadline, when time changes what it should be (deadlines.py): Pending and
  Starting time out, a finished session's TTL ends. A Ready session has none.

So a session costs API requests only when it changes: the pod create, one
status write and one Event per transition, and the TTL delete. Replayed,
duplicated or out-of-order events are harmless:
- the step is level-triggered: it looks at the session's and its pod's latest
  state and writes only the difference (transitions.py);
- status is patched with a resourceVersion precondition, so a decision made on
  a stale view is dropped (409) and made again on the next event of the session;
  the session as written is remembered until the watch catches up with it, so
  the operator's own writes do not make its next decision stale;
- one step at a time per session (a trigger meanwhile runs it once more after);
- a slot given to a session is held from the decision until its pod is indexed
  (granted, then created), so concurrent admissions cannot both take the last
  slot; the pod has a fixed name and AlreadyExists counts as created.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping

from myservice_api.crd import Phase, PodSource
from myservice_api.names import pod_name

from . import admission, events, transitions
from .clients import Conflict, PodRejected
from .deadlines import Deadlines
from .indexes import Indexes, PodRecord, SessionRecord, session_record
from .lifecycle import Action, next_deadline, plan
from .metrics import OperatorMetrics
from .podstate import NO_POD, PodKind, PodState, observe_pod
from .poolkeeper import POOL_DEADLINE, PoolKeeper
from .pods import make_pod
from .settings import Settings
from .times import utcnow

log = logging.getLogger("myservice_operator")

# A step that raised (the API answered 5xx, timed out) runs again this much later.
RETRY_SECONDS = 5.0
# Threads for the blocking `kubernetes` client calls: the requests in flight at once.
API_THREADS = 8
# Events are for people, best effort (client-go's recorder, too, drops them when its
# queue is full): posted by threads of their own, so that they never hold up a status
# write, and dropped (counted) beyond a backlog instead of draining long after a burst.
EVENT_THREADS = 2
EVENT_BACKLOG = 500


class Reconciler:
    def __init__(self, settings: Settings, kube, *, metrics: OperatorMetrics | None = None,
                 clock: Callable[[], datetime.datetime] = utcnow,
                 executor: concurrent.futures.Executor | None = None,
                 event_executor: concurrent.futures.Executor | None = None) -> None:
        self.settings = settings
        self.kube = kube
        self.metrics = metrics or OperatorMetrics()
        self.clock = clock
        self.deadlines = Deadlines()
        self.indexes: Indexes | None = None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(API_THREADS, thread_name_prefix="kube")
        self._event_executor = event_executor or executor or concurrent.futures.ThreadPoolExecutor(
            EVENT_THREADS, thread_name_prefix="kube-events")
        self._events_in_flight = 0
        # name -> (resourceVersions older than the write, the session as written)
        self._written: dict[str, tuple[frozenset[str], SessionRecord]] = {}
        # Sessions given a slot whose pod is not created yet, and those whose pod is
        # created but not indexed yet: each holds its slot.
        self._granted: set[str] = set()
        self._unindexed: set[str] = set()
        self._waiting = admission.WaitingQueue()
        self.pool = PoolKeeper(settings, kube, members=self._pool_members, api=self._api, spawn=self._spawn,
                               set_deadline=self._set_deadline, clock=clock, retry_seconds=RETRY_SECONDS)
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    def bind(self, indexes: Indexes) -> None:
        """Read sessions and pods from these indexes from now on (kopf's, at startup)."""
        first = self.indexes is None
        self.indexes = indexes
        if first:
            self.metrics.watch_index(indexes.sessions_in, indexes.live_pods, indexes.pool_members)

    # --- triggers -----------------------------------------------------------------

    async def session_changed(self, name: str, *, deleted: bool) -> None:
        if deleted:
            self._forget(name)
            return
        await self.reconcile(name, trigger="session")

    async def pod_changed(self, session: str, *, deleted: bool) -> None:
        # The pod is indexed now (or gone): it counts for itself.
        self._unindexed.discard(session)
        await self.reconcile(session, trigger="pod")
        self._grant()

    def pool_changed(self, pod: str, *, deleted: bool) -> None:
        self.pool.changed(pod, deleted=deleted)

    async def start_pool(self) -> None:
        await self.pool.start()

    def _pool_members(self) -> list:
        return self.indexes.pool_members() if self.indexes is not None else []

    async def run_due(self) -> None:
        """Reconcile the sessions whose deadline has come (and the pool, when its is)."""
        due = self.deadlines.pop_due(self.clock().timestamp())
        if POOL_DEADLINE in due:
            due.remove(POOL_DEADLINE)
            self.pool.refill()
        await asyncio.gather(*(self.reconcile(name, trigger="deadline") for name in due))

    async def run_deadlines(self) -> None:
        """The one timer of the operator: sleeps until the earliest deadline (or a new, earlier one)."""
        while True:
            await self.run_due()
            earliest = self.deadlines.earliest()
            timeout = None if earliest is None else max(0.0, earliest - self.clock().timestamp())
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def settle(self) -> None:
        """Wait for the steps and Event posts started in the background (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    # --- the step -------------------------------------------------------------------

    async def reconcile(self, name: str, *, trigger: str) -> None:
        if name in self._busy:
            self._again.add(name)  # the running step goes once more
            return
        self._busy.add(name)
        try:
            while True:
                self._again.discard(name)
                try:
                    await self._step(name)
                except Exception:
                    log.exception("reconciling session %s (%s) failed; again in %ss", name, trigger, RETRY_SECONDS)
                    self.metrics.reconcile_errors.labels(trigger).inc()
                    self._set_deadline(name, self.clock().timestamp() + RETRY_SECONDS)
                if name not in self._again:
                    break
        finally:
            self._busy.discard(name)

    async def _step(self, name: str) -> None:
        session = self._current(name)
        if session is None or session.deleting:
            self._forget(name)
            return  # gone or going: its pod follows by garbage collection
        now = self.clock()
        pods = self.indexes.pods_of(name)
        own = next((pod for pod in pods if pod.owner_uid == session.uid), None)
        foreign = any(pod.owner_uid != session.uid for pod in pods)
        action = plan(session.status, created_at=session.created, now=now, settings=self.settings)
        if name in self._granted:
            if action == Action.EXPIRE:
                action = Action.ADMIT  # a slot came just in time: take it
            elif action != Action.ADMIT:
                self._granted.discard(name)  # no longer waiting (e.g. failed meanwhile)
                self._grant()
        if action == Action.ADMIT:
            if own is not None:
                await self._observe(session, own.state, now)  # found (e.g. after a restart)
            elif foreign:
                log.info("pod %s still belongs to a deleted session: waiting", pod_name(name))
            else:
                await self._admit(session, now)
        elif action == Action.OBSERVE:
            await self._observe(session, self._pod_state(session, own), now)
        elif action in (Action.EXPIRE, Action.TIMEOUT):
            # What the pod says first (it may have become Ready since the last event);
            # only a session whose pod made no progress times out.
            if not await self._observe(session, self._pod_state(session, own), now):
                seconds = self.settings.ready_timeout_seconds
                failed = (transitions.expired_status(seconds, now) if action == Action.EXPIRE
                          else transitions.timed_out_status(session.status.get("podName") or pod_name(name),
                                                            seconds, now))
                if await self._write(session, failed, now) and _holds_slot(own):
                    await self._api(self.kube.delete_pod, own.name)  # frees the slot now, not at the TTL
        elif action == Action.WAIT:
            if name in self._unindexed:
                # Finished before its pod was ever seen (a watch gap): the pod no longer
                # holds a slot here; if it still runs, its event will say so.
                self._unindexed.discard(name)
                self._grant()
            # A failed session's unfinished pod is deleted when it fails; this repeats
            # a delete that was lost (e.g. an operator restart in between).
            if session.phase == Phase.FAILED and _holds_slot(own):
                await self._api(self.kube.delete_pod, own.name)
        elif action == Action.DELETE:
            log.info("deleting finished session %s (TTL over)", name)
            await self._api(self.kube.delete_session, name)
            self._forget(name)
            return
        self._schedule(name)

    def _pod_state(self, session: SessionRecord, own: PodRecord | None) -> PodState:
        if own is not None:
            return own.state
        if session.name in self._unindexed:
            # Created, not indexed yet: it is starting, not missing.
            return PodState(PodKind.STARTING, name=pod_name(session.name))
        return NO_POD

    async def _observe(self, session: SessionRecord, state: PodState, now: datetime.datetime) -> bool:
        """Apply what the pod's state means; False when it changes nothing."""
        patch = transitions.transition(session.status, state, port=self.settings.instance_port, now=now)
        if not patch:
            return False
        if await self._write(session, patch, now) and transitions.releases_pod(patch, state) and state.name:
            await self._api(self.kube.delete_pod, state.name)  # frees its slot now, not at the TTL
        return True

    # --- admission ------------------------------------------------------------------

    async def _admit(self, session: SessionRecord, now: datetime.datetime) -> None:
        if session.name in self._unindexed:
            return  # its pod exists and its event is on the way
        if session.name not in self._granted:
            self._waiting.add((session.created_at, session.name))
            self._grant(current=session.name)
        if session.name in self._granted:
            await self._start(session, now)
        elif not transitions.says_pending(session.status):
            await self._write(session, transitions.pending_status(), now)

    def _grant(self, current: str | None = None) -> None:
        """Give the free slots to the oldest waiting sessions; each but `current` is started
        by a step of its own."""
        if self.indexes is None:
            return
        if not self._waiting:
            return
        being_created = len(self._granted) + len(self._unindexed)
        free = admission.free_slots(self.settings.max_sessions, self.indexes.live_pods(), being_created)
        for name in self._waiting.take(free, _NotWaiting(self)):
            self._granted.add(name)
            if name != current:
                self._spawn(self.reconcile(name, trigger="admission"))

    async def _start(self, session: SessionRecord, now: datetime.datetime) -> None:
        if await self._claim(session, now):
            return
        manifest = make_pod(resource=session.name, uid=session.uid, session_id=session.session_id,
                            settings=self.settings)
        try:
            created = await self._api(self.kube.create_pod, manifest)
        except PodRejected as error:
            self._granted.discard(session.name)
            if await self._write(session, transitions.rejected_status(str(error), now), now):
                self._grant()  # the slot to the next one (if not written, the next event decides)
            return
        except Exception:
            # The slot goes back; this session asks again at its retry (granting it
            # again now would retry at once, in a loop while the API fails).
            self._granted.discard(session.name)
            raise
        self._granted.discard(session.name)
        if not self.indexes.has_pod(session.name):
            # Its slot until the pod's event (also when it existed); an event that came
            # before the create's answer has indexed the pod, which counts for itself.
            self._unindexed.add(session.name)
        if not created:
            # Someone's pod of that name exists but is not indexed yet: its event decides.
            log.info("pod %s already existed", manifest["metadata"]["name"])
            return
        log.info("pod %s created", manifest["metadata"]["name"])
        await self._observe(session, observe_pod(manifest), now)

    # --- the warm pool ------------------------------------------------------------------

    async def _claim(self, session: SessionRecord, now: datetime.datetime) -> bool:
        """Give the session a Ready warm pool pod and write it Ready; False when the pool
        has none to give, or the claim failed its precondition (a cold start then)."""
        member = self.pool.take()
        if member is None:
            return False
        try:
            claimed = await self.pool.claim(member, resource=session.name, uid=session.uid,
                                            session_id=session.session_id, now=now)
        except Conflict as error:
            log.info("warm pool pod not claimed, a cold start instead: %s", error)
            return False
        except Exception:
            self._granted.discard(session.name)  # as a failed create: the slot goes back
            raise
        self._granted.discard(session.name)
        if not self.indexes.has_pod(session.name):
            self._unindexed.add(session.name)  # its slot, until the pod's event (as a created one)
        await self._write(session, transitions.claimed_status(session.status, observe_pod(claimed),
                                                              port=self.settings.instance_port, now=now), now)
        self.pool.refill()  # after the write the session waits for, not before
        return True

    # --- writes -----------------------------------------------------------------------

    async def _write(self, session: SessionRecord, patch: Mapping, now: datetime.datetime) -> bool:
        """Patch the status if the session did not change since `session` was seen; post an Event."""
        body = dict(patch)
        if session.generation is not None:
            body["observedGeneration"] = session.generation
        try:
            written = await self._api(self.kube.patch_session_status, session.name, session.resource_version, body)
        except Conflict as error:
            log.debug("status not written, decided again on the next event: %s", error)
            return False
        older = self._written.get(session.name, (frozenset(), None))[0] | {session.resource_version}
        self._written[session.name] = (older, session_record(written))
        if "phase" in patch:
            log.info("session %s: %s (%s) %s", session.name, patch["phase"], patch.get("reason", ""),
                     patch.get("message", ""))
            if patch["phase"] == Phase.READY:
                source = patch.get("podSource") or session.status.get("podSource") or PodSource.COLD
                self.metrics.session_start.labels(str(source)).observe((now - session.created).total_seconds())
            event = events.session_event(session.reference(), type=transitions.event_type(patch),
                                         reason=patch.get("reason", patch["phase"]),
                                         message=patch.get("message", ""), now=now)
            self._post_later(event)
        return True

    def _post_later(self, event: Mapping) -> None:
        if self._events_in_flight >= EVENT_BACKLOG:
            self.metrics.events_dropped.inc()
            return
        self._events_in_flight += 1
        self._spawn(self._post(event))

    async def _post(self, event: Mapping) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._event_executor, functools.partial(self.kube.create_event, event))
        except Exception as error:  # an Event is for people: a lost one changes nothing
            log.warning("event %s on %s not posted: %s", event["reason"], event["involvedObject"]["name"], error)
        finally:
            self._events_in_flight -= 1

    def _current(self, name: str) -> SessionRecord | None:
        """The newest known state of the session: the index's, or our own write's while
        the watch has not delivered it yet."""
        indexed = self.indexes.session(name)
        written = self._written.get(name)
        if written is None:
            return indexed
        older, record = written
        if indexed is not None and indexed.resource_version in older:
            return record
        del self._written[name]  # the index has it (or newer)
        return indexed

    # --- bookkeeping -----------------------------------------------------------------

    def _schedule(self, name: str) -> None:
        session = self._current(name)
        when = None
        if session is not None and not session.deleting:
            deadline = next_deadline(session.status, created_at=session.created, settings=self.settings)
            when = deadline.timestamp() if deadline else None
        self._set_deadline(name, when)

    def _set_deadline(self, name: str, when: float | None) -> None:
        if self.deadlines.set(name, when):
            self._wake.set()

    def _forget(self, name: str) -> None:
        self.deadlines.set(name, None)
        self._written.pop(name, None)
        self._waiting.discard(name)
        if name in self._granted or name in self._unindexed:
            self._granted.discard(name)
            self._unindexed.discard(name)
            self._grant()

    def _spawn(self, step: Coroutine) -> None:
        task = asyncio.get_running_loop().create_task(step)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _api(self, call: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(call, *args))


class _NotWaiting:
    """The sessions admission passes over: already given a slot, with a pod, or no
    longer waiting as far as our own writes know."""

    def __init__(self, reconciler: Reconciler) -> None:
        self._reconciler = reconciler

    def __contains__(self, name: object) -> bool:
        r = self._reconciler
        if name in r._granted or name in r._unindexed or r.indexes.has_pod(name):
            return True
        session = r._current(name)
        return session is None or not session.waiting


def _holds_slot(pod: PodRecord | None) -> bool:
    """A pod that still runs and is not being deleted yet."""
    return pod is not None and pod.live and not pod.deleting
