"""The reconcile step of one session, and what triggers it.

Three triggers run the same step for one session, from memory (kopf's indexes
of sessions and pods, indexes.py), never from a GET or a LIST:
- an event of the session (kopf delivers it, and has indexed it already);
- an event of its pod (a pod that ended or went also frees a slot: the oldest
  waiting sessions are admitted at once);
- its deadline, when time changes what it should be (timer.py): Pending and
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

A warm start is one write on the session's critical path: the status, Ready on a
free pool pod (the assignment); the pod is labelled and owned after, off that
path (_label). Only this operator assigns (it holds the Lease), from its index,
so the assignment needs no lock on the pod; what the index does not show yet is
in assignments.Assignments. A session's step reads its pod from the pool pod
its status names until the pod is labelled as its own.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
from collections.abc import Callable, Mapping

from myservice_api.crd import Phase, PodSource, is_terminal
from myservice_api.names import pod_name

from . import events, pool, transitions
from .assignments import Assignments
from .background import Background
from .clients import Conflict, PodRejected
from .eventrecorder import EventRecorder
from .indexes import Indexes, PodRecord, SessionRecord, session_record
from .lifecycle import Action, next_deadline, plan
from .metrics import OperatorMetrics
from .podstate import NO_POD, PodKind, PodState, observe_pod
from .poolkeeper import POOL_DEADLINE, PoolKeeper
from .pods import make_pod
from .settings import Settings
from .slots import Admission
from .timer import DeadlineTimer
from .times import utcnow

log = logging.getLogger("myservice_operator")

# A step that raised (the API answered 5xx, timed out) runs again this much later.
RETRY_SECONDS = 5.0


class Reconciler:
    """The step and its triggers. Its collaborators, one concern each: the slots it
    hands out (slots.Admission), the Events it posts (eventrecorder.EventRecorder), the
    one timer (timer.DeadlineTimer), the API threads and background tasks
    (background.Background) and the warm pool (poolkeeper.PoolKeeper)."""

    def __init__(self, settings: Settings, kube, *, metrics: OperatorMetrics | None = None,
                 clock: Callable[[], datetime.datetime] = utcnow,
                 executor: concurrent.futures.Executor | None = None,
                 event_executor: concurrent.futures.Executor | None = None) -> None:
        self.settings = settings
        self.kube = kube
        self.metrics = metrics or OperatorMetrics()
        self.clock = clock
        self.deadlines = DeadlineTimer(clock)
        self.indexes: Indexes | None = None
        self.background = Background(executor)
        self.events = EventRecorder(kube, spawn=self.background.spawn,
                                    dropped=self.metrics.events_dropped, executor=event_executor or executor)
        self.admission = Admission(settings.max_sessions)
        # name -> (resourceVersions older than the write, the session as written)
        self._written: dict[str, tuple[frozenset[str], SessionRecord]] = {}
        self.assignments = Assignments()
        self.pool = PoolKeeper(settings, kube, members=self._pool_members, background=self.background,
                               deadlines=self.deadlines, clock=clock, retry_seconds=RETRY_SECONDS,
                               assigned=self._is_assigned)
        self._labelling: set[str] = set()  # pool pods whose label patch is being sent
        self._busy: set[str] = set()
        self._again: set[str] = set()

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
        self.admission.pod_indexed(session)
        await self.reconcile(session, trigger="pod")
        self._grant()

    def pool_changed(self, pod: str, *, deleted: bool, labelled: bool = False) -> None:
        """An event of a pool pod, or of a pod that was one (`labelled`: it has a session
        label now; pod_changed runs for its session next)."""
        self.pool.changed(pod, deleted=deleted)
        session = self.assignments.session_of(pod) or (self.indexes.assigned_to(pod) if self.indexes else None)
        if labelled or deleted:
            self.assignments.drop(pod)  # the index says it all from now on
        if session is None or labelled:
            return
        # An unlabelled pod assigned to a session changed: its session's pod changed.
        self.background.spawn(self.reconcile(session, trigger="pod"))
        if deleted:
            # Gone before it was labelled: it holds no slot any more, and its session (if
            # still there) fails as its pod went.
            self.admission.pod_indexed(session)
            self._grant()

    async def start_pool(self) -> None:
        await self.pool.start()

    def _pool_members(self) -> list:
        return self.indexes.pool_members() if self.indexes is not None else []

    def _is_assigned(self, pod: str) -> bool:
        """Whether a pool pod is a session's: its status names it (the index), or a write
        naming it is on its way or not seen by the watch yet (assignments)."""
        if self.assignments.session_of(pod) is not None:
            return True
        return self.indexes is not None and self.indexes.assigned_to(pod) is not None

    async def run_deadlines(self) -> None:
        """The operator's one timer (timer.py), until cancelled."""
        await self.deadlines.run(self.run_due)

    async def run_due(self) -> None:
        """Reconcile the sessions whose deadline has come (and the pool, when its is)."""
        due = self.deadlines.pop_due()
        if POOL_DEADLINE in due:
            due.remove(POOL_DEADLINE)
            self.pool.refill()
        await asyncio.gather(*(self.reconcile(name, trigger="deadline") for name in due))

    async def settle(self) -> None:
        """Wait for the steps and Event posts started in the background (tests)."""
        await self.background.settle()

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
                    self.deadlines.set(name, self.clock().timestamp() + RETRY_SECONDS)
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
        unlabelled = None if own is not None else self._unlabelled(session)
        if unlabelled is not None:
            self._adopt(session, unlabelled)
        action = plan(session.status, created_at=session.created, now=now, settings=self.settings)
        if self.admission.is_granted(name):
            if action == Action.EXPIRE:
                action = Action.ADMIT  # a slot came just in time: take it
            elif action != Action.ADMIT:
                self.admission.release(name)  # no longer waiting (e.g. failed meanwhile)
                self._grant()
        if action == Action.ADMIT:
            if own is not None:
                await self._observe(session, own.state, now)  # found (e.g. after a restart)
            elif foreign:
                log.info("pod %s still belongs to a deleted session: waiting", pod_name(name))
            else:
                await self._admit(session, now)
        elif action == Action.OBSERVE:
            await self._observe(session, self._pod_state(session, own, unlabelled), now)
        elif action in (Action.EXPIRE, Action.TIMEOUT):
            # What the pod says first (it may have become Ready since the last event);
            # only a session whose pod made no progress times out.
            if not await self._observe(session, self._pod_state(session, own, unlabelled), now):
                seconds = self.settings.ready_timeout_seconds
                failed = (transitions.expired_status(seconds, now) if action == Action.EXPIRE
                          else transitions.timed_out_status(session.status.get("podName") or pod_name(name),
                                                            seconds, now))
                if await self._write(session, failed, now) and _holds_slot(own):
                    await self.background.call(self.kube.delete_pod, own.name)  # frees the slot now, not at the TTL
        elif action == Action.WAIT:
            if self.admission.is_unindexed(name):
                # Finished before its pod was ever seen (a watch gap): the pod no longer
                # holds a slot here; if it still runs, its event will say so.
                self.admission.release(name)
                self._grant()
            # A failed session's unfinished pod is deleted when it fails; this repeats
            # a delete that was lost (e.g. an operator restart in between).
            if session.phase == Phase.FAILED and _holds_slot(own):
                await self.background.call(self.kube.delete_pod, own.name)
        elif action == Action.DELETE:
            log.info("deleting finished session %s (TTL over)", name)
            await self.background.call(self.kube.delete_session, name)
            self._forget(name)
            return
        self._schedule(name)

    def _pod_state(self, session: SessionRecord, own: PodRecord | None,
                   unlabelled: pool.Member | None = None) -> PodState:
        if own is not None:
            return own.state
        if unlabelled is not None:
            return unlabelled.state  # assigned, not labelled yet: its pod all the same
        if self.admission.is_unindexed(session.name):
            # Created, not indexed yet: it is starting, not missing.
            return PodState(PodKind.STARTING, name=pod_name(session.name))
        return NO_POD

    async def _observe(self, session: SessionRecord, state: PodState, now: datetime.datetime) -> bool:
        """Apply what the pod's state means; False when it changes nothing."""
        patch = transitions.transition(session.status, state, port=self.settings.instance_port, now=now)
        if not patch:
            return False
        if await self._write(session, patch, now) and transitions.releases_pod(patch, state) and state.name:
            await self.background.call(self.kube.delete_pod, state.name)  # frees its slot now, not at the TTL
        return True

    # --- admission ------------------------------------------------------------------

    async def _admit(self, session: SessionRecord, now: datetime.datetime) -> None:
        if self.admission.is_unindexed(session.name):
            return  # its pod exists and its event is on the way
        if not self.admission.is_granted(session.name):
            self.admission.wait(session.name, session.created_at)
            self._grant(current=session.name)
        if self.admission.is_granted(session.name):
            await self._start(session, now)
        elif not transitions.says_pending(session.status):
            await self._write(session, transitions.pending_status(), now)

    def _grant(self, current: str | None = None) -> None:
        """Give the free slots to the oldest waiting sessions; each but `current` is started
        by a step of its own."""
        if self.indexes is None:
            return
        for name in self.admission.grant(live_pods=self.indexes.live_pods(), passed_over=self._passed_over):
            if name != current:
                self.background.spawn(self.reconcile(name, trigger="admission"))

    def _passed_over(self, name: str) -> bool:
        """Admission passes over a session with a pod, or no longer waiting as far as our
        own writes know."""
        if self.indexes.has_pod(name):
            return True
        session = self._current(name)
        return session is None or not session.waiting

    async def _start(self, session: SessionRecord, now: datetime.datetime) -> None:
        if await self._claim(session, now):
            return
        manifest = make_pod(resource=session.name, uid=session.uid, session_id=session.session_id,
                            settings=self.settings)
        try:
            created = await self.background.call(self.kube.create_pod, manifest)
        except PodRejected as error:
            self.admission.release(session.name)
            if await self._write(session, transitions.rejected_status(str(error), now), now):
                self._grant()  # the slot to the next one (if not written, the next event decides)
            return
        except Exception:
            # The slot goes back; this session asks again at its retry (granting it
            # again now would retry at once, in a loop while the API fails).
            self.admission.release(session.name)
            raise
        # Its slot until the pod's event (also when it existed).
        self.admission.created(session.name, indexed=self.indexes.has_pod(session.name))
        if not created:
            # Someone's pod of that name exists but is not indexed yet: its event decides.
            log.info("pod %s already existed", manifest["metadata"]["name"])
            return
        log.info("pod %s created", manifest["metadata"]["name"])
        await self._observe(session, observe_pod(manifest), now)

    # --- the warm pool ------------------------------------------------------------------

    async def _claim(self, session: SessionRecord, now: datetime.datetime) -> bool:
        """Assign the session a Ready warm pool pod by writing its status Ready on it: the one
        write it waits for; the pod is labelled after, in the background (_label). False when
        the pool has none to give (a cold start then)."""
        reserved = self._reserved(session.name)
        member = reserved or self.pool.take()
        if member is None:
            return False
        self.assignments.assign(member.name, session.name)  # nobody else's from here on
        patch = transitions.claimed_status(session.status, member.state, port=self.settings.instance_port, now=now)
        try:
            written = await self._write(session, patch, now)
        except Exception:
            # Perhaps written (the answer was lost): the pod stays the session's. Its next step
            # finds it in the status, or writes it again (a 409 if the first one landed).
            self.admission.release(session.name)  # as a failed create: the slot goes back
            raise
        if not written:
            # The session changed or went: the next event decides. A fresh pick was surely not
            # written and is free again; a reserved one may have been (an earlier answer lost).
            if reserved is None:
                self.assignments.drop(member.name)
                self.pool.untake(member.name)
            return True
        # Its slot until its pod, labelled, is indexed as the session's (as a created one).
        self.admission.created(session.name, indexed=False)
        self._label_soon(session.name, member.name)
        self.pool.refill()  # after the write the session waits for, not before
        return True

    def _reserved(self, name: str) -> pool.Member | None:
        """The pool pod an earlier claim of this session assigned without knowing whether its
        status write landed, while it can still serve; else None (and the pod not held)."""
        pod = self.assignments.pod_of(name)
        if pod is None:
            return None
        member = self.indexes.pool_member(pod)
        if member is not None and member.state.kind == PodKind.READY:
            return member
        if member is not None:
            self.pool.release(pod)  # maybe named in a status that landed: never back to the pool
        else:
            self.assignments.drop(pod)
        return None

    def _unlabelled(self, session: SessionRecord) -> pool.Member | None:
        """The warm pool pod the session's status names, while it is not labelled as the
        session's (as the index has it), else None."""
        pod = session.status.get("podName") if session.status.get("podSource") == PodSource.WARM else None
        return self.indexes.pool_member(pod) if pod else None

    def _adopt(self, session: SessionRecord, member: pool.Member) -> None:
        """The session's status names a pool pod not labelled yet (just written, or found after a
        failover: the old leader wrote the status, not the labels): hold the pod and the
        session's slot, and label it."""
        self.assignments.assign(member.name, session.name)
        if not is_terminal(session.phase) and not self.admission.holds_slot(session.name):
            self.admission.created(session.name, indexed=False)
        self._label_soon(session.name, member.name)

    def _label_soon(self, name: str, pod: str) -> None:
        if self.assignments.needs_label(pod) and pod not in self._labelling:
            self._labelling.add(pod)
            self.background.spawn(self._label(name, pod))

    async def _label(self, name: str, pod: str) -> None:
        """Label the assigned pool pod as the session's and make the session its owner (so that
        garbage collection takes it with the session), guarded by the pod's resourceVersion as
        indexed; a 409 is tried again with a newer one when the index has it, else at the pod's
        next event or the session's retry deadline (_schedule)."""
        try:
            while True:
                member = self.indexes.pool_member(pod)
                session = self._current(name)
                if (member is None or member.deleting or session is None or session.deleting
                        or not self.assignments.needs_label(pod, member.resource_version)):
                    return
                try:
                    await self.pool.label(member, resource=name, uid=session.uid, session_id=session.session_id,
                                          now=self.clock())
                except Conflict as error:
                    log.info("warm pool pod %s not labelled yet: %s", pod, error)
                    self.assignments.stale(pod, member.resource_version)
                    continue
                self.assignments.labelled(pod)
                return
        except Exception:
            log.exception("labelling warm pool pod %s for session %s failed; again in %ss", pod, name,
                          RETRY_SECONDS)
            self.metrics.reconcile_errors.labels("label").inc()
        finally:
            self._labelling.discard(pod)

    # --- writes -----------------------------------------------------------------------

    async def _write(self, session: SessionRecord, patch: Mapping, now: datetime.datetime) -> bool:
        """Patch the status if the session did not change since `session` was seen; post an Event."""
        body = dict(patch)
        if session.generation is not None:
            body["observedGeneration"] = session.generation
        try:
            written = await self.background.call(self.kube.patch_session_status, session.name,
                                                 session.resource_version, body)
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
            self.events.record(event)
        return True

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
            pod = self.assignments.pod_of(name)
            if pod is not None and self.assignments.needs_label(pod):
                # Its pod not labelled yet (normally milliseconds): a lost label patch is sent again.
                retry = self.clock().timestamp() + RETRY_SECONDS
                when = retry if when is None else min(when, retry)
        self.deadlines.set(name, when)

    def _forget(self, name: str) -> None:
        self.deadlines.set(name, None)
        self._written.pop(name, None)
        pod = self.assignments.pod_of(name)
        if pod is not None:
            # Assigned and not labelled yet: no owner, so garbage collection will not take it.
            # Kept assigned (never handed out) until its deletion's event.
            self.pool.release(pod)
        if self.admission.forget(name):
            self._grant()


def _holds_slot(pod: PodRecord | None) -> bool:
    """A pod that still runs and is not being deleted yet."""
    return pod is not None and pod.live and not pod.deleting
