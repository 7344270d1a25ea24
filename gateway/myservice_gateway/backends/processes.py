"""Instance child processes of the local backend: start, connect, watch, stop.

Each instance is `python -m myservice_instance` on its own Unix socket in a
private directory. It says where it listens in its first stdout line
('LISTENING unix:<path>') and, when a limit ends it, why in its last ('ENDED
<Reason> <message>'): that is the whole stdout protocol (`target_of`,
`end_reason`). Children die with the gateway (`--exit-with-parent`: no Python
runs between fork and exec, which would be unsafe next to gRPC's threads), so a
killed gateway leaves no orphans either; close() terminates the rest.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from myservice_api import settings

from .base import Endpoint, instance_channel

log = logging.getLogger("myservice.gateway.local")


@dataclasses.dataclass(frozen=True)
class InstanceLimits:
    """The session limits every local instance enforces itself (0 = off)."""
    idle_timeout: float = 0
    max_lifetime: float = 0


def instance_command(pod_name: str, socket_path: str | None, *, wait_for_claim: bool = False) -> list[str]:
    """socket_path None: on a free loopback TCP port (announced), which HAProxy can reach."""
    where = ["--unix-socket", socket_path] if socket_path else ["--host", "127.0.0.1", "--port", "0"]
    return [sys.executable, "-m", "myservice_instance", *where,
            "--pod-name", pod_name, "--announce-port", "--exit-with-parent", str(os.getpid()),
            *(["--wait-for-claim"] if wait_for_claim else [])]


def instance_environment(limits: InstanceLimits, base: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the limits go the way they go to a pod (the
    instance's own settings variables), so both modes configure it alike."""
    env = dict(os.environ if base is None else base)
    env[settings.SESSION_IDLE_TIMEOUT.env] = f"{limits.idle_timeout:g}"
    env[settings.SESSION_MAX_LIFETIME.env] = f"{limits.max_lifetime:g}"
    return env


def target_of(announcement: bytes) -> str:
    """The gRPC target from an instance's 'LISTENING …' line."""
    if not announcement.startswith(b"LISTENING "):
        raise RuntimeError(f"instance did not announce where it listens (got {announcement!r})")
    where = announcement.split()[1].decode()
    return where if where.startswith("unix:") else f"127.0.0.1:{int(where)}"


def end_reason(line: bytes) -> str:
    """'Reason (message)' from an instance's last line 'ENDED <Reason> <message>', else ''."""
    if not line.startswith(b"ENDED "):
        return ""
    reason, _, message = line[6:].decode(errors="replace").strip().partition(" ")
    return f"{reason} ({message})" if message else reason


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


@dataclasses.dataclass(eq=False)  # identity: children are kept in sets
class Child:
    """One instance process: its process once spawned, its endpoint once it answers."""
    name: str
    process: asyncio.subprocess.Process | None = None
    endpoint: Endpoint | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


class ProcessSupervisor:
    """Starts instance children, watches them to their exit, stops them all at close()."""

    def __init__(self, *, start_timeout: float, limits: InstanceLimits = InstanceLimits()) -> None:
        self.start_timeout = start_timeout
        self.limits = limits
        # Instances listen on Unix sockets here: cheaper per call than loopback TCP
        # (docs/benchmarks.md), and reachable only by this machine's users.
        self.socket_dir = tempfile.mkdtemp(prefix="myservice-instances-")
        # The front (front/front.py) turns this on: HAProxy routes to host:port only.
        self.loopback_tcp = False
        self._children: set[Child] = set()
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, work: Coroutine) -> None:
        """Run `work` (a child's life) in the background; close() cancels what is left."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, child: Child, *, wait_for_claim: bool = False,
                    on_failure: Callable[[Exception], None] = lambda error: None) -> bool:
        """Start the child and connect to it: True once it answers. A pool member
        (`wait_for_claim`) is also asked for its health, on the channel its session
        will use: the first call then pays for neither the connection nor the
        server's warm-up. On failure, `on_failure` runs at once (before any await),
        then the process is killed and reaped, and False is returned."""
        begun = time.monotonic()
        channel = None
        try:
            socket_path = None if self.loopback_tcp else os.path.join(self.socket_dir, child.name)
            child.process = await asyncio.create_subprocess_exec(
                *instance_command(child.name, socket_path, wait_for_claim=wait_for_claim),
                env=instance_environment(self.limits), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, start_new_session=True,
            )
            self._children.add(child)
            line = await asyncio.wait_for(child.process.stdout.readline(), self.start_timeout)
            address = target_of(line)
            channel = instance_channel(address)
            if wait_for_claim:
                remaining = max(0.1, self.start_timeout - (time.monotonic() - begun))
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=remaining)
            child.endpoint = Endpoint(address, child.name, channel)
            return True
        except Exception as e:  # noqa: BLE001 - any start failure means "no instance"
            on_failure(e)
            if child.process and child.process.returncode is None:
                child.process.kill()
            if child.process:
                await child.process.wait()
            if channel is not None:
                await channel.close()
            self._children.discard(child)
            return False

    async def wait_exit(self, child: Child) -> tuple[int, str]:
        """Wait for a started child's exit: (its exit status, why it ended in its own words or '')."""
        last = b""
        async for line in child.process.stdout:
            last = line
        returncode = await child.process.wait()
        self._children.discard(child)
        return returncode, end_reason(last)

    async def close(self, grace: float = 5.0) -> None:
        """Terminate every child and wait for it; SIGKILL after `grace` seconds."""
        processes = [c.process for c in self._children if c.process and c.process.returncode is None]
        for p in processes:
            p.terminate()
        if processes:
            _, pending = await asyncio.wait([asyncio.create_task(p.wait()) for p in processes], timeout=grace)
            for p in processes:
                if p.returncode is None:
                    p.kill()
            if pending:
                await asyncio.wait(pending)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def closing(channel: grpc.aio.Channel) -> None:
    """Close a channel in the background (from code that cannot await)."""
    asyncio.get_running_loop().create_task(channel.close())
