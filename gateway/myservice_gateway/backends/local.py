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

import grpc

from myservice import contract

from .base import INSTANCE_CHANNEL_OPTIONS, BackendError, Endpoint, SessionOwner

log = logging.getLogger("myservice.gateway.local")

ENDED_SESSIONS_REMEMBERED = 10_000


@dataclasses.dataclass
class _Instance:
    pod_name: str
    process: asyncio.subprocess.Process | None = None
    endpoint: Endpoint | None = None
    ready: asyncio.Future[Endpoint] = dataclasses.field(default_factory=lambda: asyncio.get_running_loop().create_future())


def instance_command(pod_name: str, socket_path: str) -> list[str]:
    return [sys.executable, "-m", "myservice_instance", "--unix-socket", socket_path,
            "--pod-name", pod_name, "--announce-port", "--exit-with-parent", str(os.getpid())]


def target_of(announcement: bytes) -> str:
    """The gRPC target from an instance's 'LISTENING …' line."""
    if not announcement.startswith(b"LISTENING "):
        raise RuntimeError(f"instance did not announce where it listens (got {announcement!r})")
    where = announcement.split()[1].decode()
    return where if where.startswith("unix:") else f"127.0.0.1:{int(where)}"


class LocalBackend:
    def __init__(self, *, max_instances: int, start_timeout: float = 20.0) -> None:
        self.max_instances = max_instances
        self.start_timeout = start_timeout
        self._instances: dict[str, _Instance] = {}
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._names = itertools.count(1)
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

    async def acquire(self, session_id: str, *, timeout: float | None) -> Endpoint:
        instance = self._instances.get(session_id)
        if instance is None:
            if session_id in self._ended:
                raise BackendError(grpc.StatusCode.FAILED_PRECONDITION, contract.session_ended(session_id))
            if self._closing or self.max_instances == 0:
                raise BackendError(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.NO_AVAILABLE_INSTANCES)
            if len(self._instances) >= self.max_instances:
                raise BackendError(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.ALL_INSTANCES_BUSY)
            instance = _Instance(pod_name=f"myservice-local-{next(self._names)}")
            self._instances[session_id] = instance
            task = asyncio.create_task(self._run(session_id, instance))
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)
        if instance.endpoint is not None:
            return instance.endpoint
        try:
            return await asyncio.wait_for(asyncio.shield(instance.ready), timeout)
        except asyncio.TimeoutError:
            raise BackendError(grpc.StatusCode.DEADLINE_EXCEEDED, "instance did not start within the call's deadline") from None

    async def _run(self, session_id: str, instance: _Instance) -> None:
        """Start the child, publish its endpoint, wait for its exit, free the slot."""
        try:
            instance.process = await asyncio.create_subprocess_exec(
                *instance_command(instance.pod_name, os.path.join(self._socket_dir, instance.pod_name)), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, start_new_session=True,
            )
            line = await asyncio.wait_for(instance.process.stdout.readline(), self.start_timeout)
            address = target_of(line)
            instance.endpoint = Endpoint(address, instance.pod_name, grpc.aio.insecure_channel(address, options=INSTANCE_CHANNEL_OPTIONS))
            instance.ready.set_result(instance.endpoint)
            log.info("session %s -> %s (pid %d, %s)", session_id, instance.pod_name, instance.process.pid, address)
        except Exception as e:  # noqa: BLE001 - any start failure means "no instance"
            log.error("instance %s failed to start: %s", instance.pod_name, e)
            if instance.process and instance.process.returncode is None:
                instance.process.kill()
            if instance.process:
                await instance.process.wait()
            self._instances.pop(session_id, None)  # free the slot first; not ended: a later call may retry
            instance.ready.set_exception(BackendError(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.NO_AVAILABLE_INSTANCES))
            instance.ready.exception()  # mark retrieved: waiters may be gone
            return
        returncode = await instance.process.wait()
        log.info("instance %s of session %s exited with %s", instance.pod_name, session_id, returncode)
        self._end(session_id, instance)

    def _end(self, session_id: str, instance: _Instance) -> None:
        if self._instances.get(session_id) is instance:
            del self._instances[session_id]
        self._ended[session_id] = None
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
