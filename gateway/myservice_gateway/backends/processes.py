"""Instance child processes of the local backend: start, connect, watch, stop.

By default each instance is `python -m myservice_instance` on its own Unix socket
in a private directory. It says where it listens in its first stdout line
('LISTENING unix:<path>') and, when a limit ends it, why in its last ('ENDED
<Reason> <message>'): that is the whole stdout protocol (`target_of`,
`end_reason`). With a command (`--instance-command`) each instance is that
command on loopback TCP instead, ready when its health says so (commands.py).
Children die with the gateway (`--exit-with-parent`, or launch.py for a command:
no Python runs between fork and exec, which would be unsafe next to gRPC's
threads), so a killed gateway leaves no orphans either; close() terminates the rest.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from myservice_api import settings

from .. import settings as gateway_settings

from . import commands
from .base import Endpoint, SessionKey, instance_channel

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


# Every variable the gateway reads (each declared once in settings.py, old names included).
GATEWAY_VARIABLES = frozenset(name for s in settings.declared(gateway_settings.GatewaySettings)
                              for name in (s.env, *s.aliases))


def instance_environment(limits: InstanceLimits, base: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the limits go the way they go to a pod (the
    instance's own settings variables), so both modes configure it alike. The
    gateway's own settings stay out: an instance may run its users' code, which
    must not read the gateway's signing key or users file (a service's own
    MYSERVICE_* variables still pass, as the interpreter's do)."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in GATEWAY_VARIABLES}
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
    termination_log: str | None = None  # a command's: where it says why it ended

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


class ProcessSupervisor:
    """Starts instance children, watches them to their exit, stops them all at close()."""

    def __init__(self, *, start_timeout: float, limits: InstanceLimits = InstanceLimits(),
                 command: tuple[str, ...] = ()) -> None:
        self.start_timeout = start_timeout
        self.limits = limits
        self.command = command  # empty: our own instance
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

    async def start(self, child: Child, *, wait_for_claim: bool = False, session: SessionKey | None = None,
                    on_failure: Callable[[Exception], None] = lambda error: None) -> bool:
        """Start the child and connect to it: True once it answers. A pool member
        (`wait_for_claim`) is also asked for its health, on the channel its session
        will use: the first call then pays for neither the connection nor the
        server's warm-up. On failure, `on_failure` runs at once (before any await),
        then the process is killed and reaped, and False is returned. `session`:
        the session it is started for (None: a pool member), told to a command."""
        begun = time.monotonic()
        channel = None
        try:
            if self.command:
                channel = await self._start_command(child, wait_for_claim=wait_for_claim, session=session)
                return True
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
                signal_group(child.process, signal.SIGKILL)
            if child.process:
                await child.process.wait()
            if channel is not None:
                await channel.close()
            self._children.discard(child)
            return False

    async def _start_command(self, child: Child, *, wait_for_claim: bool, session: SessionKey | None) -> grpc.aio.Channel:
        """Start the command for `child` on a free loopback port; return once its health is SERVING."""
        begun = time.monotonic()
        port = commands.free_port()
        child.termination_log = os.path.join(self.socket_dir, f"{child.name}.termination-log")
        env = commands.environment(instance_environment(self.limits), name=child.name, port=port,
                                   termination_log=child.termination_log, wait_for_claim=wait_for_claim,
                                   session=session)
        child.process = await asyncio.create_subprocess_exec(
            *commands.launcher(self.command, os.getpid()), env=env, stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True)
        self._children.add(child)
        address = f"{commands.HOST}:{port}"
        await commands.wait_serving(address, child.process, self.start_timeout)
        channel = instance_channel(address)
        try:
            # Connected before its session's first call, as a pool member of ours is.
            remaining = max(0.1, self.start_timeout - (time.monotonic() - begun))
            await asyncio.wait_for(channel.channel_ready(), remaining)
        except BaseException:
            await channel.close()
            raise
        child.endpoint = Endpoint(address, child.name, channel)
        return channel

    async def wait_exit(self, child: Child) -> tuple[int, str]:
        """Wait for a started child's exit: (its exit status, why it ended in its own words or '')."""
        last = b""
        if child.process.stdout is not None:  # our instance's stdout protocol
            async for line in child.process.stdout:
                last = line
        returncode = await child.process.wait()
        self._children.discard(child)
        return returncode, end_reason(last) or commands.ending_of(child.termination_log)

    async def close(self, grace: float = 5.0) -> None:
        """Terminate every child and wait for it; SIGKILL after `grace` seconds."""
        processes = [c.process for c in self._children if c.process and c.process.returncode is None]
        for p in processes:
            signal_group(p, signal.SIGTERM)
        if processes:
            _, pending = await asyncio.wait([asyncio.create_task(p.wait()) for p in processes], timeout=grace)
            for p in processes:
                if p.returncode is None:
                    signal_group(p, signal.SIGKILL)
            if pending:
                await asyncio.wait(pending)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def signal_group(process: asyncio.subprocess.Process, sig: int) -> None:
    """Signal the child and whatever it started (its own process group: every child
    is started in a new session), so a command's helpers go with it."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:  # gone already
        pass


def closing(channel: grpc.aio.Channel) -> None:
    """Close a channel in the background (from code that cannot await)."""
    asyncio.get_running_loop().create_task(channel.close())
