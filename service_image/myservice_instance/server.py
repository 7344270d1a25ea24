"""Run one instance: gRPC server with MyService, health and reflection."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from myservice import contract, reflection
from myservice_api import settings
from myservice.v1 import myservice_pb2

from . import decoding
from .limits import Activity, Ending, Limits, format_seconds
from .servicer import InstanceServicer

log = logging.getLogger("myservice.instance")

# Time given to in-flight calls after Shutdown or SIGTERM.
STOP_GRACE_SECONDS = 5.0
# Where kubelet reads a container's termination message from (its default terminationMessagePath).
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
# A warm pool member (--wait-for-claim) starts its idle and lifetime clocks when
# this arrives: the local backend sends it when it hands the member to a session.
CLAIM_SIGNAL = signal.SIGUSR1


def default_pod_name() -> str:
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


class LimitTimer:
    """The one timer that ends the instance at its limits.

    It sleeps until the next moment the limits could be reached (Activity.next_check),
    asks Activity.expired() then, and sleeps again if not: no task per call, no poll.
    """

    def __init__(self, activity: Activity, *, loop: asyncio.AbstractEventLoop,
                 on_expiry: Callable[[Ending], None]) -> None:
        self._activity = activity
        self._loop = loop
        self._on_expiry = on_expiry
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        when = self._activity.next_check(self._loop.time())
        self._handle = None if when is None else self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        ending = self._activity.expired(self._loop.time())
        if ending is None:
            self.start()
        else:
            self._handle = None
            self._on_expiry(ending)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def default_termination_log() -> str | None:
    """kubelet's termination message file when we run in a pod (it mounts it writable), else None."""
    path = DEFAULT_TERMINATION_LOG
    return path if os.path.exists(path) and os.access(path, os.W_OK) else None


def report_ending(ending: Ending, *, announce: bool, termination_log: str | None) -> None:
    """Say why the instance ends on its own: in the log, in the termination message
    (the operator turns it into the session's status.reason), and on stdout for the
    local backend ("ENDED <Reason> <message>")."""
    log.info("instance ending: %s", ending.line())
    if termination_log:
        try:
            with open(termination_log, "w", encoding="utf-8") as f:
                f.write(ending.line())
        except OSError as e:
            log.warning("cannot write the termination message to %s: %s", termination_log, e)
    if announce:
        sys.stdout.write(f"ENDED {ending.reason} {ending.message}\n")
        sys.stdout.flush()


@dataclasses.dataclass
class Instance:
    """A started instance: its server, where it listens, and what ends it."""
    server: grpc.aio.Server
    bound: int
    """The bound port (0 for a Unix socket)."""
    shutdown_requested: asyncio.Event
    activity: Activity


async def start_instance(
    *, host: str = "0.0.0.0", port: int = settings.INSTANCE_PORT.default, pod_name: str | None = None,
    unix_socket: str | None = None,
    limits: Limits = Limits(idle_timeout=0, max_lifetime=0), wait_for_claim: bool = False,
) -> Instance:
    """Start an instance on host:port, or on a Unix socket when given (its limits
    are enforced by serve(); with wait_for_claim their clocks start at CLAIM_SIGNAL)."""
    shutdown_requested = asyncio.Event()
    activity = Activity(limits, clock=asyncio.get_running_loop().time, started=not wait_for_claim)
    server = grpc.aio.server()
    servicer = InstanceServicer(pod_name or default_pod_name(), shutdown_requested, activity)
    decoding.add_servicer(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable(server, (myservice_pb2.DESCRIPTOR.services_by_name["MyService"].full_name,
                               health.SERVICE_NAME))
    address = f"unix:{unix_socket}" if unix_socket else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind": say it plainly
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {address} (address in use or not available)")
    if unix_socket:
        bound = 0
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(contract.SERVICE, health_pb2.HealthCheckResponse.SERVING)
    return Instance(server, bound, shutdown_requested, activity)


async def serve(*, host: str, port: int, pod_name: str | None, announce: bool, unix_socket: str | None = None,
                limits: Limits = Limits(), termination_log: str | None = None, wait_for_claim: bool = False) -> int:
    instance = await start_instance(host=host, port=port, pod_name=pod_name, unix_socket=unix_socket, limits=limits,
                                    wait_for_claim=wait_for_claim)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, instance.shutdown_requested.set)
    endings: list[Ending] = []

    def on_expiry(ending: Ending) -> None:
        endings.append(ending)
        instance.shutdown_requested.set()

    timer = LimitTimer(instance.activity, loop=loop, on_expiry=on_expiry)
    timer.start()

    def claimed() -> None:  # by the claim signal or the first call, whichever came first
        log.info("instance claimed for a session: idle and lifetime clocks start now")
        timer.cancel()
        timer.start()

    instance.activity.on_clocks_started = claimed
    # Installed before the LISTENING line (the backend signals only announced members);
    # a plain instance ignores it rather than dying of SIGUSR1's default action.
    loop.add_signal_handler(CLAIM_SIGNAL, instance.activity.start_clocks if wait_for_claim else lambda: None)
    where = f"unix:{unix_socket}" if unix_socket else f"{host}:{instance.bound}"
    log.info("instance %s listening on %s (idle timeout %s, max lifetime %s%s)", pod_name or default_pod_name(), where,
             describe_limit(limits.idle_timeout), describe_limit(limits.max_lifetime),
             ", both from its claim" if wait_for_claim else "")
    if announce:
        # The local backend reads this one line to learn where we listen (port 0
        # means the kernel chose): "LISTENING <port>" or "LISTENING unix:<path>".
        sys.stdout.write(f"LISTENING {where if unix_socket else instance.bound}\n")
        sys.stdout.flush()
    await instance.shutdown_requested.wait()
    timer.cancel()
    if endings:
        report_ending(endings[0], announce=announce, termination_log=termination_log)
    log.info("instance stopping (grace %.0fs)", STOP_GRACE_SECONDS)
    await instance.server.stop(STOP_GRACE_SECONDS)
    return 0


def describe_limit(seconds: float) -> str:
    return format_seconds(seconds) if seconds else "off"
