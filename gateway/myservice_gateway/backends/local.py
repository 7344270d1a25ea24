"""Local backend: one instance child process per session, on its own Unix socket.

An instance's exit (Shutdown or crash) ends its session and frees its slot.
Stopping the backend terminates every child; children also die with the
gateway (`--exit-with-parent`: no Python runs between fork and exec, which
would be unsafe next to gRPC's threads), so a killed gateway leaves no orphans either.

With a warm pool (`warm_pool` N > 0) the backend also keeps up to N idle
instances started, unbound, and already answering (a health check over the
channel the session will use), and a new session's first call takes one
(localpool.py decides which source, and how many to start). Pool members are
ordinary instances and children like any other (same exit-with-parent, same
close()); they are started with `--wait-for-claim`, so their idle and lifetime
clocks start at the claim (SIGUSR1), not while they wait in the pool.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from myservice import contract
from myservice_instance.server import CLAIM_SIGNAL

from . import localpool
from .base import INSTANCE_CHANNEL_OPTIONS, BackendError, Endpoint, SessionKey, SessionOwner

log = logging.getLogger("myservice.gateway.local")

ENDED_SESSIONS_REMEMBERED = 10_000


@dataclasses.dataclass(eq=False)  # identity: pool members are kept in ordered sets
class _Instance:
    pod_name: str
    key: SessionKey | None  # None: an unclaimed pool member
    pooled: bool = False  # started for the pool (its clocks wait for the claim)
    process: asyncio.subprocess.Process | None = None
    endpoint: Endpoint | None = None
    ready: asyncio.Future[Endpoint] = dataclasses.field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclasses.dataclass(frozen=True)
class InstanceLimits:
    """The session limits every local instance enforces itself (0 = off)."""
    idle_timeout: float = 0
    max_lifetime: float = 0


def instance_command(pod_name: str, socket_path: str, *, wait_for_claim: bool = False) -> list[str]:
    return [sys.executable, "-m", "myservice_instance", "--unix-socket", socket_path,
            "--pod-name", pod_name, "--announce-port", "--exit-with-parent", str(os.getpid()),
            *(["--wait-for-claim"] if wait_for_claim else [])]


def process_alive(process: asyncio.subprocess.Process) -> bool:
    """True unless the child has exited or is exiting, even if asyncio has not seen
    it yet. waitid with WNOWAIT looks without reaping (asyncio's child watcher still
    does); but a killed multi-threaded process is not waitable until its last thread
    is gone, while its main thread already shows as a zombie in /proc: both are asked."""
    if process.returncode is not None:
        return False
    try:
        if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return False
    except ChildProcessError:  # already reaped: gone
        return False
    try:
        with open(f"/proc/{process.pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def instance_environment(limits: InstanceLimits, base: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the limits go the way they go to a pod (the
    instance's own settings variables), so both modes configure it alike."""
    env = dict(os.environ if base is None else base)
    env["MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS"] = f"{limits.idle_timeout:g}"
    env["MYSERVICE_SESSION_MAX_LIFETIME_SECONDS"] = f"{limits.max_lifetime:g}"
    return env


def end_reason(line: bytes) -> str:
    """'Reason (message)' from an instance's last line 'ENDED <Reason> <message>', else ''."""
    if not line.startswith(b"ENDED "):
        return ""
    reason, _, message = line[6:].decode(errors="replace").strip().partition(" ")
    return f"{reason} ({message})" if message else reason


def target_of(announcement: bytes) -> str:
    """The gRPC target from an instance's 'LISTENING …' line."""
    if not announcement.startswith(b"LISTENING "):
        raise RuntimeError(f"instance did not announce where it listens (got {announcement!r})")
    where = announcement.split()[1].decode()
    return where if where.startswith("unix:") else f"127.0.0.1:{int(where)}"


class LocalBackend:
    def __init__(self, *, max_instances: int, start_timeout: float = 20.0, max_per_user: int = 0,
                 limits: InstanceLimits = InstanceLimits(), warm_pool: int = 0) -> None:
        self.max_instances = max_instances
        self.start_timeout = start_timeout
        self.max_per_user = max_per_user  # 0: no per-user limit
        self.limits = limits
        self.warm_pool = warm_pool  # idle instances kept started (0: off)
        self.pool_starts_at_once = localpool.starts_at_once()
        self._instances: dict[SessionKey, _Instance] = {}
        # Unclaimed pool members, oldest first (dicts as ordered sets).
        self._pool_ready: dict[_Instance, None] = {}
        self._pool_starting: dict[_Instance, None] = {}
        self._pool_failures = 0  # consecutive failed pool starts
        self._pool_not_before = 0.0  # monotonic time before which the pool starts no member
        self._pool_timer: asyncio.TimerHandle | None = None
        self._live_by_user: collections.Counter[str] = collections.Counter()
        self._ended: collections.OrderedDict[SessionKey, None] = collections.OrderedDict()
        self._names = itertools.count(1)
        # Told how long a new session's first call waited and how its instance was had ("warm", "cold").
        self.on_session_start: Callable[..., None] = lambda seconds, pod="cold": None
        self._watchers: set[asyncio.Task] = set()
        self._closing = False
        # Instances listen on Unix sockets here: cheaper per call than loopback TCP
        # (docs/benchmarks.md), and reachable only by this machine's users.
        self._socket_dir = tempfile.mkdtemp(prefix="myservice-instances-")

    @property
    def live_count(self) -> int:
        return len(self._instances)

    @property
    def process_count(self) -> int:
        """Every live process: sessions' and the pool's (what max_instances bounds)."""
        return len(self._instances) + len(self._pool_ready) + len(self._pool_starting)

    @property
    def warm_idle_count(self) -> int:
        """Pool members ready to be taken."""
        return len(self._pool_ready)

    def pids(self) -> list[int]:
        """The sessions' instance processes."""
        return [i.process.pid for i in self._instances.values() if i.process]

    def pool_pids(self) -> list[int]:
        """Ready, unclaimed pool members, in the order they will be taken."""
        return [i.process.pid for i in self._pool_ready if i.process]

    async def start(self) -> None:
        if self.warm_pool > self.max_instances:
            log.warning("warm pool %d is larger than max instances %d: at most %d idle instances",
                        self.warm_pool, self.max_instances, self.max_instances)
        self._refill()

    async def prepare(self, owner: SessionOwner) -> None:
        # Instances start at the first call: a Login alone holds no capacity.
        pass

    async def acquire(self, key: SessionKey, *, timeout: float | None) -> Endpoint:
        instance = self._instances.get(key)
        if instance is None:
            if key in self._ended:
                raise BackendError(grpc.StatusCode.FAILED_PRECONDITION, contract.session_ended(key.session_id))
            if self._closing or self.max_instances == 0:
                raise BackendError(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.NO_AVAILABLE_INSTANCES)
            if self.max_per_user and self._live_by_user[key.username] >= self.max_per_user:
                raise BackendError(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.per_user_limit(self.max_per_user))
            instance = self._instance_for_new_session(key)
        if instance.endpoint is not None:
            return instance.endpoint
        started = time.monotonic()
        try:
            endpoint = await asyncio.wait_for(asyncio.shield(instance.ready), timeout)
            self.on_session_start(time.monotonic() - started, "cold")
            return endpoint
        except asyncio.TimeoutError:
            raise BackendError(grpc.StatusCode.DEADLINE_EXCEEDED, "instance did not start within the call's deadline") from None

    def _instance_for_new_session(self, key: SessionKey) -> _Instance:
        """Take a pool member or start a process for `key`; raises BackendError when full."""
        started = time.monotonic()
        while True:
            source = localpool.source_for_new_session(
                ready=len(self._pool_ready), starting=len(self._pool_starting),
                processes=self.process_count, max_instances=self.max_instances)
            if source is localpool.Source.WARM:
                member = next(iter(self._pool_ready))
                del self._pool_ready[member]
                if not process_alive(member.process):
                    # Its watcher logs the exit and the pool replaces it; never handed out.
                    log.warning("pool instance %s (pid %d) has exited: not handed out", member.pod_name,
                                member.process.pid)
                    continue
                self._claim(member, key)
                log.info("session %s -> %s (pid %d, %s): warm, from the pool (%d idle left)", key,
                         member.pod_name, member.process.pid, member.endpoint.address, len(self._pool_ready))
                self.on_session_start(time.monotonic() - started, "warm")
                # One hold per series of claims, not one per claim: steady claims still refill.
                if time.monotonic() >= self._pool_not_before:
                    self._hold_pool_starts(localpool.CLAIM_QUIET_SECONDS)
                instance = member
            elif source is localpool.Source.POOL_STARTING:
                instance = next(iter(self._pool_starting))
                del self._pool_starting[instance]
                self._claim(instance, key)
                log.info("session %s -> %s: pool instance still starting, taken", key, instance.pod_name)
            elif source is localpool.Source.COLD:
                instance = _Instance(pod_name=self._next_name(), key=key)
                self._add(instance)
                self._spawn(instance)
            else:
                raise BackendError(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.ALL_INSTANCES_BUSY)
            self._refill()
            return instance

    def _claim(self, member: _Instance, key: SessionKey) -> None:
        """Hand an unclaimed pool member to a session, for good; start its clocks
        if it is up (a member still starting gets the signal once it is)."""
        member.key = key
        self._add(member)
        if member.endpoint is not None:
            self._signal_claim(member)

    @staticmethod
    def _signal_claim(member: _Instance) -> None:
        try:
            os.kill(member.process.pid, CLAIM_SIGNAL)
        except ProcessLookupError:  # it died: its watcher ends the session
            pass

    def _next_name(self) -> str:
        return f"myservice-local-{next(self._names)}"

    def _spawn(self, instance: _Instance) -> None:
        task = asyncio.create_task(self._run(instance))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _hold_pool_starts(self, seconds: float) -> None:
        self._pool_not_before = max(self._pool_not_before, time.monotonic() + seconds)

    def _refill(self) -> None:
        """Start pool members in the background, as localpool.pool_starts_due says;
        not while held back (just after a claim, or after failed starts)."""
        if self._closing or not self.warm_pool:
            return
        wait = self._pool_not_before - time.monotonic()
        if wait > 0:
            if self._pool_timer is None:
                self._pool_timer = asyncio.get_running_loop().call_later(wait, self._timed_refill)
            return
        due = localpool.pool_starts_due(
            pool_size=self.warm_pool, members=len(self._pool_ready) + len(self._pool_starting),
            starting=len(self._pool_starting), processes=self.process_count, max_instances=self.max_instances,
            at_once=self.pool_starts_at_once)
        for _ in range(due):
            member = _Instance(pod_name=self._next_name(), key=None, pooled=True)
            self._pool_starting[member] = None
            log.info("warm pool: starting %s (%d idle, %d starting, size %d)", member.pod_name,
                     len(self._pool_ready), len(self._pool_starting), self.warm_pool)
            self._spawn(member)

    def _timed_refill(self) -> None:
        self._pool_timer = None
        self._refill()

    def _add(self, instance: _Instance) -> None:
        self._instances[instance.key] = instance
        self._live_by_user[instance.key.username] += 1

    def _remove(self, instance: _Instance) -> None:
        """Free the instance's slot (idempotent: only the instance that holds it)."""
        if instance.key is not None and self._instances.get(instance.key) is instance:
            del self._instances[instance.key]
            self._live_by_user[instance.key.username] -= 1
            if not self._live_by_user[instance.key.username]:
                del self._live_by_user[instance.key.username]

    async def _run(self, instance: _Instance) -> None:
        """Start the child, publish its endpoint, wait for its exit, free the slot."""
        begun = time.monotonic()
        channel = None
        try:
            socket_path = os.path.join(self._socket_dir, instance.pod_name)
            instance.process = await asyncio.create_subprocess_exec(
                *instance_command(instance.pod_name, socket_path, wait_for_claim=instance.pooled),
                env=instance_environment(self.limits), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, start_new_session=True,
            )
            line = await asyncio.wait_for(instance.process.stdout.readline(), self.start_timeout)
            address = target_of(line)
            channel = grpc.aio.insecure_channel(address, options=INSTANCE_CHANNEL_OPTIONS)
            if instance.pooled:
                # Ready means it has answered, on the channel its session will use: the
                # first call then pays for neither the connection nor the server's warm-up.
                remaining = max(0.1, self.start_timeout - (time.monotonic() - begun))
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=remaining)
            instance.endpoint = Endpoint(address, instance.pod_name, channel)
        except Exception as e:  # noqa: BLE001 - any start failure means "no instance"
            unclaimed = instance.key is None
            if unclaimed:  # first, before any await: no session may take it now
                self._pool_starting.pop(instance, None)
                self._pool_failures += 1
                self._hold_pool_starts(localpool.retry_delay(self._pool_failures))
            log.error("%s %s failed to start: %s", "pool instance" if unclaimed else "instance", instance.pod_name, e)
            if instance.process and instance.process.returncode is None:
                instance.process.kill()
            if instance.process:
                await instance.process.wait()
            if channel is not None:
                await channel.close()
            self._remove(instance)  # free the slot first; not ended: a later call may retry
            instance.ready.set_exception(BackendError(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.NO_AVAILABLE_INSTANCES))
            instance.ready.exception()  # mark retrieved: waiters may be gone
            self._refill()
            return
        pid = instance.process.pid
        if instance.key is None:
            del self._pool_starting[instance]
            self._pool_ready[instance] = None
            self._pool_failures = 0
            log.info("warm pool: %s ready (pid %d, %s) in %.2fs, %d idle", instance.pod_name, pid, address,
                     time.monotonic() - begun, len(self._pool_ready))
        else:
            if instance.pooled:  # claimed while it was starting: its clocks start now
                self._signal_claim(instance)
            log.info("session %s -> %s (pid %d, %s)", instance.key, instance.pod_name, pid, address)
        instance.ready.set_result(instance.endpoint)
        self._refill()
        # The instance says why it ends on its own (idle, lifetime) in its last line.
        last = b""
        async for line in instance.process.stdout:
            last = line
        returncode = await instance.process.wait()
        why = end_reason(last)
        if instance.key is None:  # ended in the pool, unclaimed (killed, crashed, or close())
            self._pool_ready.pop(instance, None)
            if not self._closing:
                log.warning("warm pool: %s (pid %d) exited with %s while idle%s; replacing it", instance.pod_name,
                            pid, returncode, f": {why}" if why else "")
                self._refill()
            await instance.endpoint.channel.close()
            return
        log.info("instance %s of session %s exited with %s%s", instance.pod_name, instance.key, returncode,
                 f": {why}" if why else "")
        self._end(instance)

    def _end(self, instance: _Instance) -> None:
        self._remove(instance)
        self._refill()  # its process slot is free
        self._ended[instance.key] = None
        while len(self._ended) > ENDED_SESSIONS_REMEMBERED:
            self._ended.popitem(last=False)
        if instance.endpoint:
            asyncio.get_running_loop().create_task(instance.endpoint.channel.close())

    async def close(self, grace: float = 5.0) -> None:
        """Terminate every child and wait for it; SIGKILL after `grace` seconds."""
        self._closing = True
        if self._pool_timer is not None:
            self._pool_timer.cancel()
        everyone = [*self._instances.values(), *self._pool_ready, *self._pool_starting]
        processes = [i.process for i in everyone if i.process and i.process.returncode is None]
        for p in processes:
            p.terminate()
        if processes:
            _, pending = await asyncio.wait([asyncio.create_task(p.wait()) for p in processes], timeout=grace)
            for p in processes:
                if p.returncode is None:
                    p.kill()
            if pending:
                await asyncio.wait(pending)
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        shutil.rmtree(self._socket_dir, ignore_errors=True)
