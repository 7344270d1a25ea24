"""Local backend: one instance child process per session, on its own Unix socket.

An instance's exit (Shutdown or crash) ends its session and frees its slot.
Stopping the backend terminates every child; children also die with the
gateway (`--exit-with-parent`: no Python runs between fork and exec, which
would be unsafe next to gRPC's threads), so a killed gateway leaves no orphans either.
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

from myservice import contract

from .base import INSTANCE_CHANNEL_OPTIONS, BackendError, Endpoint, SessionKey, SessionOwner

log = logging.getLogger("myservice.gateway.local")

ENDED_SESSIONS_REMEMBERED = 10_000


@dataclasses.dataclass
class _Instance:
    pod_name: str
    key: SessionKey
    process: asyncio.subprocess.Process | None = None
    endpoint: Endpoint | None = None
    ready: asyncio.Future[Endpoint] = dataclasses.field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclasses.dataclass(frozen=True)
class InstanceLimits:
    """The session limits every local instance enforces itself (0 = off)."""
    idle_timeout: float = 0
    max_lifetime: float = 0


def instance_command(pod_name: str, socket_path: str) -> list[str]:
    return [sys.executable, "-m", "myservice_instance", "--unix-socket", socket_path,
            "--pod-name", pod_name, "--announce-port", "--exit-with-parent", str(os.getpid())]


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
                 limits: InstanceLimits = InstanceLimits()) -> None:
        self.max_instances = max_instances
        self.start_timeout = start_timeout
        self.max_per_user = max_per_user  # 0: no per-user limit
        self.limits = limits
        self._instances: dict[SessionKey, _Instance] = {}
        self._live_by_user: collections.Counter[str] = collections.Counter()
        self._ended: collections.OrderedDict[SessionKey, None] = collections.OrderedDict()
        self._names = itertools.count(1)
        self.on_session_start: Callable[[float], None] = lambda seconds: None
        self._watchers: set[asyncio.Task] = set()
        self._closing = False
        # Instances listen on Unix sockets here: cheaper per call than loopback TCP
        # (docs/benchmarks.md), and reachable only by this machine's users.
        self._socket_dir = tempfile.mkdtemp(prefix="myservice-instances-")

    @property
    def live_count(self) -> int:
        return len(self._instances)

    def pids(self) -> list[int]:
        return [i.process.pid for i in self._instances.values() if i.process]

    async def start(self) -> None:
        pass

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
            if len(self._instances) >= self.max_instances:
                raise BackendError(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.ALL_INSTANCES_BUSY)
            instance = _Instance(pod_name=f"myservice-local-{next(self._names)}", key=key)
            self._add(instance)
            task = asyncio.create_task(self._run(instance))
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)
        if instance.endpoint is not None:
            return instance.endpoint
        started = time.monotonic()
        try:
            endpoint = await asyncio.wait_for(asyncio.shield(instance.ready), timeout)
            self.on_session_start(time.monotonic() - started)
            return endpoint
        except asyncio.TimeoutError:
            raise BackendError(grpc.StatusCode.DEADLINE_EXCEEDED, "instance did not start within the call's deadline") from None

    def _add(self, instance: _Instance) -> None:
        self._instances[instance.key] = instance
        self._live_by_user[instance.key.username] += 1

    def _remove(self, instance: _Instance) -> None:
        """Free the instance's slot (idempotent: only the instance that holds it)."""
        if self._instances.get(instance.key) is instance:
            del self._instances[instance.key]
            self._live_by_user[instance.key.username] -= 1
            if not self._live_by_user[instance.key.username]:
                del self._live_by_user[instance.key.username]

    async def _run(self, instance: _Instance) -> None:
        """Start the child, publish its endpoint, wait for its exit, free the slot."""
        session = instance.key
        try:
            socket_path = os.path.join(self._socket_dir, instance.pod_name)
            instance.process = await asyncio.create_subprocess_exec(
                *instance_command(instance.pod_name, socket_path), env=instance_environment(self.limits),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, start_new_session=True,
            )
            line = await asyncio.wait_for(instance.process.stdout.readline(), self.start_timeout)
            address = target_of(line)
            instance.endpoint = Endpoint(address, instance.pod_name, grpc.aio.insecure_channel(address, options=INSTANCE_CHANNEL_OPTIONS))
            instance.ready.set_result(instance.endpoint)
            log.info("session %s -> %s (pid %d, %s)", session, instance.pod_name, instance.process.pid, address)
        except Exception as e:  # noqa: BLE001 - any start failure means "no instance"
            log.error("instance %s failed to start: %s", instance.pod_name, e)
            if instance.process and instance.process.returncode is None:
                instance.process.kill()
            if instance.process:
                await instance.process.wait()
            self._remove(instance)  # free the slot first; not ended: a later call may retry
            instance.ready.set_exception(BackendError(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.NO_AVAILABLE_INSTANCES))
            instance.ready.exception()  # mark retrieved: waiters may be gone
            return
        # The instance says why it ends on its own (idle, lifetime) in its last line.
        last = b""
        async for line in instance.process.stdout:
            last = line
        returncode = await instance.process.wait()
        why = end_reason(last)
        log.info("instance %s of session %s exited with %s%s", instance.pod_name, session, returncode,
                 f": {why}" if why else "")
        self._end(instance)

    def _end(self, instance: _Instance) -> None:
        self._remove(instance)
        self._ended[instance.key] = None
        while len(self._ended) > ENDED_SESSIONS_REMEMBERED:
            self._ended.popitem(last=False)
        if instance.endpoint:
            asyncio.get_running_loop().create_task(instance.endpoint.channel.close())

    async def close(self, grace: float = 5.0) -> None:
        """Terminate every child and wait for it; SIGKILL after `grace` seconds."""
        self._closing = True
        processes = [i.process for i in self._instances.values() if i.process and i.process.returncode is None]
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
