"""Local backend: one instance child process per session, on its own Unix socket.

The instance starts at the session's first call; its exit (Shutdown, a limit, a
crash) ends the session and frees its slot. The session table (sessions.py)
holds the per-user limit and the ended sessions as for Kubernetes; processes.py
starts, watches and stops the children; localpool.py keeps the warm pool.

With a warm pool (`warm_pool` N > 0) the backend also keeps up to N idle
instances started, unbound, and already answering, and a new session's first
call takes one. Pool members are ordinary children (same exit-with-parent, same
close()); they are started with `--wait-for-claim`, so their idle and lifetime
clocks start at the claim (SIGUSR1), not while they wait in the pool.

With a command (`command`: `--instance-command`) every instance, pool members
included, is that command (processes.py, commands.py). A command's pool member is
claimed by its session's first call alone, as a pool pod is on Kubernetes: it
gets no SIGUSR1, whose default action would kill a program that does not expect it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import time

from myservice import errors
from myservice_api.crd import PodSource
from myservice_instance.server import CLAIM_SIGNAL

from . import localpool, sessions
from .base import Endpoint, SessionKey, SessionOwner
from .processes import Child, InstanceLimits, ProcessSupervisor, closing, process_alive

log = logging.getLogger("myservice.gateway.local")


@dataclasses.dataclass(eq=False)  # identity: pool members are kept in ordered sets
class _Instance:
    child: Child
    key: SessionKey | None  # None: an unclaimed pool member
    pooled: bool = False  # started for the pool (its clocks wait for the claim)
    ready: asyncio.Future[Endpoint] = dataclasses.field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def name(self) -> str:
        return self.child.name


class LocalBackend:
    def __init__(self, *, max_instances: int, start_timeout: float = 20.0, max_per_user: int = 0,
                 limits: InstanceLimits = InstanceLimits(), warm_pool: int = 0,
                 ended_remembered: int = sessions.ENDED_REMEMBERED, command: tuple[str, ...] = ()) -> None:
        self.max_instances = max_instances
        # No ready timeout of its own: a start that fails within start_timeout ends the wait.
        self.sessions = sessions.SessionTable(max_per_user=max_per_user, ended_remembered=ended_remembered)
        self._instances: dict[SessionKey, _Instance] = {}
        self._processes = ProcessSupervisor(start_timeout=start_timeout, limits=limits, command=command)
        self._pool: localpool.WarmPool[_Instance] = localpool.WarmPool(
            size=warm_pool, max_instances=max_instances, processes=lambda: self.process_count,
            start_member=self._start_member)
        self._names = itertools.count(1)
        self._closing = False

    @property
    def live_count(self) -> int:
        return len(self._instances)

    @property
    def process_count(self) -> int:
        """Every live process: sessions' and the pool's (what max_instances bounds)."""
        return len(self._instances) + len(self._pool)

    @property
    def warm_idle_count(self) -> int:
        """Pool members ready to be taken."""
        return len(self._pool.ready)

    @property
    def socket_dir(self) -> str:
        return self._processes.socket_dir

    def pids(self) -> list[int]:
        """The sessions' instance processes."""
        return [i.child.pid for i in self._instances.values() if i.child.process]

    def pool_pids(self) -> list[int]:
        """Ready, unclaimed pool members, in the order they will be taken."""
        return [i.child.pid for i in self._pool.ready if i.child.process]

    async def start(self) -> None:
        if self._pool.size > self.max_instances:
            log.warning("warm pool %d is larger than max instances %d: at most %d idle instances",
                        self._pool.size, self.max_instances, self.max_instances)
        self._pool.refill()

    async def prepare(self, owner: SessionOwner) -> None:
        # Instances start at the first call: a Login alone holds no capacity.
        pass

    async def endpoint(self, key: SessionKey, *, timeout: float | None) -> Endpoint:
        instance = self._instances.get(key)
        if instance is None:
            if key in self.sessions.ended:
                raise errors.session_ended(key.session_id)
            if self._closing or self.max_instances == 0:
                raise errors.no_available_instances()
            self.sessions.admit(key.username)
            instance = self._instance_for_new_session(key)
        if instance.child.endpoint is not None:
            return instance.child.endpoint
        return await self.sessions.wait_for_start(self._started(instance), call_timeout=timeout)

    @staticmethod
    async def _started(instance: _Instance) -> tuple[Endpoint, PodSource]:
        return await asyncio.shield(instance.ready), PodSource.COLD

    def _instance_for_new_session(self, key: SessionKey) -> _Instance:
        """Take a pool member or start a process for `key`; raises when full."""
        begun = time.monotonic()
        while True:
            source = self._pool.source_for_new_session()
            if source is localpool.Source.READY_MEMBER:
                member = self._pool.take_ready()
                if not process_alive(member.child.process):
                    # Its watcher logs the exit and the pool replaces it; never handed out.
                    log.warning("pool instance %s (pid %d) has exited: not handed out", member.name, member.child.pid)
                    continue
                self._claim(member, key)
                log.info("session %s -> %s (pid %d, %s): warm, from the pool (%d idle left)", key, member.name,
                         member.child.pid, member.child.endpoint.address, len(self._pool.ready))
                self.sessions.started(time.monotonic() - begun, PodSource.WARM)
                self._pool.claimed()
                instance = member
            elif source is localpool.Source.STARTING_MEMBER:
                instance = self._pool.take_starting()
                self._claim(instance, key)
                log.info("session %s -> %s: pool instance still starting, taken", key, instance.name)
            elif source is localpool.Source.NEW_PROCESS:
                instance = _Instance(Child(self._next_name()), key=key)
                self._hold(instance)
                self._processes.spawn(self._run(instance))
            else:
                raise errors.all_instances_busy()
            self._pool.refill()
            return instance

    def _claim(self, member: _Instance, key: SessionKey) -> None:
        """Hand an unclaimed pool member to a session, for good; start its clocks
        if it is up (a member still starting gets the signal once it is)."""
        member.key = key
        self._hold(member)
        if member.child.endpoint is not None:
            self._signal_claim(member)

    def _signal_claim(self, member: _Instance) -> None:
        if self._processes.command:  # its first call is its claim (see the module's docstring)
            return
        try:
            os.kill(member.child.pid, CLAIM_SIGNAL)
        except ProcessLookupError:  # it died: its watcher ends the session
            pass

    def _next_name(self) -> str:
        return f"myservice-local-{next(self._names)}"

    def _start_member(self) -> _Instance:
        member = _Instance(Child(self._next_name()), key=None, pooled=True)
        log.info("warm pool: starting %s (%d idle, %d starting, size %d)", member.name, len(self._pool.ready),
                 len(self._pool.starting) + 1, self._pool.size)
        self._processes.spawn(self._run(member))
        return member

    def _hold(self, instance: _Instance) -> None:
        self._instances[instance.key] = instance
        self.sessions.slots.hold(instance.key.username, instance.key)

    def _release(self, instance: _Instance) -> None:
        """Free the instance's slot (idempotent: only the instance that holds it)."""
        if instance.key is not None and self._instances.get(instance.key) is instance:
            del self._instances[instance.key]
            self.sessions.slots.release(instance.key.username, instance.key)

    def _start_failed(self, instance: _Instance, error: Exception) -> None:
        if instance.key is None:  # before any await: no session may take it now
            self._pool.failed(instance)
        log.error("%s %s failed to start: %s", "pool instance" if instance.key is None else "instance",
                  instance.name, error)

    async def _run(self, instance: _Instance) -> None:
        """The child's life: start, publish its endpoint, wait for its exit, free the slot."""
        begun = time.monotonic()
        child = instance.child
        if not await self._processes.start(child, wait_for_claim=instance.pooled, session=instance.key,
                                           on_failure=lambda error: self._start_failed(instance, error)):
            self._release(instance)  # not ended: a later call may retry
            instance.ready.set_exception(errors.no_available_instances())
            instance.ready.exception()  # mark retrieved: waiters may be gone
            self._pool.refill()
            return
        if instance.key is None:
            self._pool.started(instance)
            log.info("warm pool: %s ready (pid %d, %s) in %.2fs, %d idle", instance.name, child.pid,
                     child.endpoint.address, time.monotonic() - begun, len(self._pool.ready))
        else:
            if instance.pooled:  # claimed while it was starting: its clocks start now
                self._signal_claim(instance)
            log.info("session %s -> %s (pid %d, %s)", instance.key, instance.name, child.pid, child.endpoint.address)
        instance.ready.set_result(child.endpoint)
        self._pool.refill()
        returncode, why = await self._processes.wait_exit(child)
        if instance.key is None:  # ended in the pool, unclaimed (killed, crashed, or close())
            self._pool.exited(instance)
            if not self._closing:
                log.warning("warm pool: %s (pid %d) exited with %s while idle%s; replacing it", instance.name,
                            child.pid, returncode, f": {why}" if why else "")
                self._pool.refill()
            await child.endpoint.channel.close()
            return
        log.info("instance %s of session %s exited with %s%s", instance.name, instance.key, returncode,
                 f": {why}" if why else "")
        self._release(instance)
        self._pool.refill()  # its process slot is free
        self.sessions.ended.add(instance.key)
        closing(child.endpoint.channel)

    async def end_sessions_of(self, username: str) -> int:
        """SIGTERM to each of the user's instances: their own graceful end (O(user's sessions))."""
        keys = self.sessions.slots.held(username)
        for key in keys:
            self.sessions.ended.add(key)
            instance = self._instances.get(key)
            if instance is not None and instance.child.process and process_alive(instance.child.process):
                instance.child.process.terminate()
        return len(keys)

    async def close(self, grace: float = 5.0) -> None:
        """Terminate every child and wait for it; SIGKILL after `grace` seconds."""
        self._closing = True
        self._pool.close()
        await self._processes.close(grace)
