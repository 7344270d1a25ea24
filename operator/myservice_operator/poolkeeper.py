"""The warm pool's adapter: keeps pool.plan()'s pods, hands members to the reconciler.

The decisions are pool.py's (pure); this holds what the watch's index cannot know yet
and does the requests:
- members being created, until their first event (so a refill does not make them twice);
- members taken (handed to a claim), until their next event (the index lags the claim:
  no member is handed out twice);
- members being deleted, until they are gone.
Members assigned to a session (its status names them, assignments.py) are the
reconciler's to say (`assigned`): never handed out, never deleted as surplus or stale.

Triggers: every pool pod event (and every event of a pod that was one), a claim, the
pool's own deadline (a member not Ready in time; the end of a burst of claims, which holds
the creates: pool.refill_held), and one LIST at start.
"""
from __future__ import annotations

import collections
import datetime
import logging
from collections.abc import Callable, Mapping

from . import pool
from .background import Background, Urgency
from .indexes import pool_member
from .settings import Settings
from .timer import DeadlineTimer

log = logging.getLogger("myservice_operator")

# The deadline key of the pool's own check; not a session name (those are DNS labels).
POOL_DEADLINE = "<warm pool>"


class PoolKeeper:
    def __init__(self, settings: Settings, kube, *, members: Callable[[], list[pool.Member]],
                 background: Background, deadlines: DeadlineTimer,
                 clock: Callable[[], datetime.datetime], retry_seconds: float,
                 assigned: Callable[[str], bool] = lambda pod: False) -> None:
        self.settings = settings
        self.kube = kube
        self.template = pool.template_hash(settings) if settings.warm_pool_size else ""
        self._members = members  # the index's pool pods
        self._assigned = assigned  # a pool pod some session's status names (or is being written to)
        self._background = background
        self._deadlines = deadlines
        self._clock = clock
        self._retry_seconds = retry_seconds
        self._creating: set[str] = set()
        self._taken: set[str] = set()
        self._deleting: set[str] = set()
        self._claims: collections.deque[float] = collections.deque()  # when members were taken (s)
        self._held = False
        # What plan() must leave alone, and what pick() must not hand out (a member being
        # deleted may still look usable in the index).
        self._not_free = _Where(lambda pod: pod in self._taken or self._assigned(pod))
        self._not_pickable = _Where(lambda pod: pod in self._deleting or pod in self._not_free)

    @property
    def enabled(self) -> bool:
        return self.settings.warm_pool_size > 0

    def changed(self, pod: str, *, deleted: bool) -> None:
        """An event of a pool pod, or of a pod that was one: the index has it now.
        (With no pool, members left from a larger one are deleted: plan() with size 0.)"""
        self._creating.discard(pod)
        self._taken.discard(pod)
        if deleted:
            self._deleting.discard(pod)
        self.refill()

    async def start(self) -> None:
        """At start, before the watch's index is complete: one LIST of the pool's pods
        decides what to make now; from then on their events do."""
        if not self.enabled:
            return
        try:
            listed = await self._background.call(self.kube.list_pool_pods, urgency=Urgency.UPKEEP)
        except Exception:
            log.exception("listing the warm pool failed; it fills from the watch's events instead")
            return
        # Creates only: whether a listed member is a session's already (its status written,
        # the pod not labelled yet: a failover between the claim's two writes) only the
        # sessions' index says, and it is complete only when the first event is handled.
        self.refill([pool_member(body) for body in listed], delete=False)

    def take(self) -> pool.Member | None:
        """A Ready member for a claim, marked taken until its next event (the reconciler's
        assignments hold it from then on) or untake(); None when the pool has none."""
        if not self.enabled:
            return None
        member = pool.pick(self._members(), template=self.template, taken=self._not_pickable)
        if member is not None:
            self._taken.add(member.name)
            now = self._clock().timestamp()
            self._recent_claims(now)  # forget those out of the window: the deque stays small
            self._claims.append(now)
        return member

    def _recent_claims(self, now: float) -> int:
        while self._claims and self._claims[0] <= now - pool.BURST_WINDOW_SECONDS:
            self._claims.popleft()
        return len(self._claims)

    def untake(self, pod: str) -> None:
        """A member taken for a claim that was not written: free to hand out again."""
        self._taken.discard(pod)

    async def label(self, member: pool.Member, *, resource: str, uid: str, session_id: str,
                    now: datetime.datetime) -> dict:
        """The guarded patch that labels `member` as the session's and makes the session its
        owner; the pod as patched (clients.Conflict: it changed since the index saw it, or went)."""
        patch = pool.claim_patch(member, resource=resource, uid=uid, session_id=session_id,
                                 settings=self.settings, now=now)
        labelled = await self._background.call(self.kube.claim_pod, member.name, patch,
                                                urgency=Urgency.UPKEEP)
        log.info("warm pool pod %s labelled for session %s", member.name, resource)
        return labelled

    def release(self, pod: str) -> None:
        """Delete a pod assigned to a session that went before the pod was labelled: its
        instance may have served that session (it binds to its first caller), so it never
        goes back to the pool."""
        if pod not in self._deleting:
            self._deleting.add(pod)
            self._background.spawn(self._delete(pod))

    def refill(self, members: list[pool.Member] | None = None, *, delete: bool = True) -> None:
        """Create and delete pool pods as pool.plan() says (members: the index's, unless given)."""
        members = self._members() if members is None else members
        timeout = self.settings.ready_timeout_seconds
        decided = pool.plan(members, size=self.settings.warm_pool_size, template=self.template,
                            creating=len(self._creating), taken=self._not_free, now=self._clock(),
                            start_timeout_seconds=timeout, max_starting=self.settings.warm_pool_max_starting)
        for name in decided.delete if delete else ():
            if name not in self._deleting:
                self._deleting.add(name)
                self._background.spawn(self._delete(name))
        now = self._clock().timestamp()
        create, wake = decided.create, None
        if create and pool.refill_held(
                recent_claims=self._recent_claims(now), size=self.settings.warm_pool_size,
                free=pool.free_ready(members, template=self.template, taken=self._not_pickable),
                max_starting=self.settings.warm_pool_max_starting):
            if not self._held:
                log.info("warm pool refill held during a burst of claims")
            self._held, create = True, 0
            wake = self._claims[-1] + pool.BURST_WINDOW_SECONDS + 0.01  # asked again after it
        elif self._held:
            self._held = False
            log.info("warm pool refill resumed")
        for _ in range(create):
            manifest = pool.make_member(self.settings, template=self.template)
            self._creating.add(manifest["metadata"]["name"])
            self._background.spawn(self._create(manifest))
        check = pool.next_check(members, start_timeout_seconds=timeout)
        when = [t for t in (wake, None if check is None else check.timestamp()) if t is not None]
        self._deadlines.set(POOL_DEADLINE, min(when) if when else None)

    async def _create(self, manifest: Mapping) -> None:
        name = manifest["metadata"]["name"]
        try:
            await self._background.call(self.kube.create_pod, manifest, urgency=Urgency.UPKEEP)
        except Exception as error:
            # Made again at the next pool event or check (not at once: no loop while the API fails).
            self._creating.discard(name)
            log.warning("warm pool pod %s not created: %s", name, error)
            self._deadlines.set(POOL_DEADLINE, self._clock().timestamp() + self._retry_seconds)
        else:
            log.info("warm pool pod %s created", name)

    async def _delete(self, name: str) -> None:
        try:
            await self._background.call(self.kube.delete_pod, name, urgency=Urgency.UPKEEP)
        except Exception as error:
            self._deleting.discard(name)
            log.warning("warm pool pod %s not deleted: %s", name, error)
        else:
            log.info("warm pool pod %s deleted", name)


class _Where:
    """A predicate as a container: pool.pick() and pool.plan() ask `name in taken`."""

    def __init__(self, test: Callable[[str], bool]) -> None:
        self._test = test

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._test(name)
