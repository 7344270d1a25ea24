"""The SDK's instance: your servicers, plus everything the platform asks of an
instance (docs/instances.md) — health, the session rules, idle and lifetime ends
with their reasons, the warm pool's claim wait, Shutdown, graceful SIGTERM."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from myservice import logfilters, reflection

from .calls import CallGuard, Registrar
from .endings import report_ending
from .limits import Activity, Ending, format_seconds
from .sessions import SessionBinding
from .settings import InstanceSettings
from .timer import LimitTimer

log = logging.getLogger("myservice.instance")

# Time given to in-flight calls after Shutdown, SIGTERM or a limit.
STOP_GRACE_SECONDS = 5.0
# The least time an ending instance keeps listening, answering new calls "has ended" at
# once: calls already on their way (forwarded while its Shutdown was being answered) get
# the contract's answer rather than a reset connection, and the Shutdown's own answer is
# written out before the server and its connections are torn down.
STOP_LINGER_SECONDS = 0.25
# After the grace, the calls cut (CallGuard.cut) have this long to send their status
# before stop(0) (a handler deaf to its cancel is then cancelled by grpc itself).
CUT_WAIT_SECONDS = 0.5
# A warm pool member (wait_for_claim) starts its idle and lifetime clocks when this
# arrives (the local backend sends it when it hands the member to a session) or at
# its session's first call, whichever comes first.
CLAIM_SIGNAL = signal.SIGUSR1


@dataclasses.dataclass
class Running:
    """A started instance: its server, where it listens, and what ends it."""
    server: grpc.aio.Server
    bound: int
    """The bound port (0 for a Unix socket)."""
    shutdown_requested: asyncio.Event
    activity: Activity
    health: health.aio.HealthServicer
    address: str
    guard: CallGuard
    """Every call of the servicers goes through it; closed once the instance ends."""


class Instance:
    """One session's instance, built from your servicers (see the package's docstring).

    bind_sessions: keep the session rules — the first call binds the instance to its
    `session-id`; another session's call gets INTERNAL "Session conflict: was=…, now=…";
    after an ends_session call, "session … has ended". False for a service that wants
    none (the gateway already sends it its own session's calls only).
    """

    def __init__(self, *, bind_sessions: bool = True) -> None:
        self.binding = SessionBinding()
        self._bind_sessions = bind_sessions
        self._servicers: list[tuple[Callable[[Any, Any], None], Any]] = []
        self.settings = InstanceSettings()
        self._pod_name = ""  # settings.name(), once started: servicers may ask per message
        self._running: Running | None = None

    # --- what a service author calls ---------------------------------------------

    def add_servicer(self, add_to_server: Callable[[Any, Any], None], servicer: Any) -> None:
        """Serve `servicer` with its generated `add_…Servicer_to_server` (or any function
        that adds handlers to a server). Every call of it is a call of the session."""
        self._servicers.append((add_to_server, servicer))

    @property
    def pod_name(self) -> str:
        """The instance's name (POD_NAME on Kubernetes)."""
        return self._pod_name or self.settings.name()

    @property
    def session_id(self) -> str | None:
        """The session this instance is bound to (None before its first call, or
        without session rules)."""
        return self.binding.server_session_id

    def shutdown_after(self, context: grpc.aio.ServicerContext) -> None:
        """End the instance (exit 0) once this call has completed: for a handler that
        decides by itself that the session is over (ends_session marks a whole method)."""
        context.add_done_callback(lambda _context: self.stop())

    def stop(self) -> None:
        """End the instance now, gracefully: new calls answered "has ended", STOP_GRACE_SECONDS
        for those in flight (stop_serving)."""
        if self._running is not None:
            self._running.shutdown_requested.set()

    # --- running it ------------------------------------------------------------------

    def run(self, argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
        """Parse the instance flags (argv, default sys.argv[1:]; [] for the environment
        only) and serve until the instance ends; the exit status (0: ended normally)."""
        from .cli import build_parser, run  # the flags are the CLI's, for every SDK service

        parser = build_parser(prog or os.path.basename(sys.argv[0]) or "instance")
        return run(parser.parse_args(sys.argv[1:] if argv is None else list(argv)), self)

    async def start(self, settings: InstanceSettings | None = None, *, unix_socket: str | None = None) -> Running:
        """Start serving on settings.host:port (or a Unix socket): health SERVING once it
        listens. The limits are enforced by serve(); start() alone is for tests."""
        if settings is not None:
            self.settings = settings
        own = self.settings
        self._pod_name = own.name()
        # grpc's ERROR and traceback for a client gone while a stream is answered: the call
        # guard already says it in one INFO line ("cancelled by the client").
        logfilters.quiet_client_cancels(drop=True)
        shutdown_requested = asyncio.Event()
        activity = Activity(own.limits, clock=asyncio.get_running_loop().time, started=not own.wait_for_claim)
        server = grpc.aio.server()
        guard = CallGuard(activity=activity, binding=self.binding if self._bind_sessions else None,
                          end=shutdown_requested.set)
        registrar = Registrar(server, guard)
        for add_to_server, servicer in self._servicers:
            add_to_server(servicer, registrar)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable(server, (*registrar.service_names, health.SERVICE_NAME))
        address = f"unix:{unix_socket}" if unix_socket else f"{own.host}:{own.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError:  # grpc's "Failed to bind": say it plainly
            bound = 0
        if bound == 0:
            raise OSError(f"cannot listen on {address} (address in use or not available)")
        await server.start()
        # "" is what kubelet's grpc probe and the local backend ask for.
        for name in ("", *registrar.service_names):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._running = Running(server, 0 if unix_socket else bound, shutdown_requested, activity, health_servicer,
                                address if unix_socket else f"{own.host}:{bound}", guard)
        return self._running

    async def serve(self, settings: InstanceSettings | None = None, *, unix_socket: str | None = None,
                    announce: bool = False) -> int:
        """Start, then run until Shutdown, SIGTERM/SIGINT or a limit; stop gracefully; 0.
        `announce`: the local backend's stdout protocol ('LISTENING …', 'ENDED …')."""
        running = await self.start(settings, unix_socket=unix_socket)
        own = self.settings
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, running.shutdown_requested.set)
        endings: list[Ending] = []

        def on_expiry(ending: Ending) -> None:
            endings.append(ending)
            running.shutdown_requested.set()

        timer = LimitTimer(running.activity, loop=loop, on_expiry=on_expiry)
        timer.start()

        def claimed() -> None:  # by the claim signal or the first call, whichever came first
            log.info("instance claimed for a session: idle and lifetime clocks start now")
            timer.cancel()
            timer.start()

        running.activity.on_clocks_started = claimed
        # Installed before the LISTENING line (the backend signals only announced members);
        # a plain instance ignores it rather than dying of SIGUSR1's default action.
        loop.add_signal_handler(CLAIM_SIGNAL, running.activity.start_clocks if own.wait_for_claim else lambda: None)
        log.info("instance %s listening on %s (idle timeout %s, max lifetime %s%s)", own.name(), running.address,
                 describe_limit(own.idle_timeout), describe_limit(own.max_lifetime),
                 ", both from its claim" if own.wait_for_claim else "")
        if announce:
            # The local backend reads this one line to learn where we listen (port 0
            # means the kernel chose): "LISTENING <port>" or "LISTENING unix:<path>".
            sys.stdout.write(f"LISTENING {running.address if unix_socket else running.bound}\n")
            sys.stdout.flush()
        try:
            await running.shutdown_requested.wait()
            timer.cancel()
            if endings:
                report_ending(endings[0], announce=announce, termination_log=own.termination_log_path())
            await stop_serving(running, grace=STOP_GRACE_SECONDS, linger=STOP_LINGER_SECONDS)
        finally:
            timer.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, CLAIM_SIGNAL):  # the loop may outlive us (a library's user)
                loop.remove_signal_handler(sig)
        return 0


async def stop_serving(running: Running, *, grace: float, linger: float) -> None:
    """End an instance's serving: health NOT_SERVING and every new call refused ("has
    ended") at once; then, once its calls in flight have finished (at most `grace`
    seconds) and at least `linger` seconds after this began, stop the server at once.

    Calls still in flight when the grace ends are cut by the guard with the contract's
    UNAVAILABLE rather than left to stop(0) and grpc's own "Cancelling all calls".

    Not server.stop(grace) straight away: a call reaching grpc.aio's server after its
    stop has begun is neither served nor refused until the grace ends (then UNAVAILABLE
    "Cancelling all calls"), so an Echo racing a Shutdown waited the whole grace (about
    1 in 200 races). Here the server keeps taking calls while it drains, and the guard
    answers them; stop(0) comes only when nothing is left to wait for."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    running.guard.close()
    no_calls = asyncio.Event()
    running.activity.on_no_calls = no_calls.set
    if not running.activity.in_flight:
        no_calls.set()
    log.info("instance stopping: new calls refused, %d in flight (grace %.0fs)", running.activity.in_flight, grace)
    await running.health.enter_graceful_shutdown()  # NOT_SERVING: no probe calls it ready now
    try:
        await asyncio.wait_for(no_calls.wait(), grace)
    except asyncio.TimeoutError:
        # Cut by us, not by stop(0): each gets the contract's UNAVAILABLE, whichever way
        # its client came (the front's fast path passes an instance's trailers as they are).
        log.info("instance stopping: %d call(s) still in flight after %.0fs, cut (UNAVAILABLE)",
                 running.guard.cut(), grace)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(no_calls.wait(), CUT_WAIT_SECONDS)
    await asyncio.sleep(max(0.0, began + linger - loop.time()))
    await running.server.stop(0)


def describe_limit(seconds: float) -> str:
    return format_seconds(seconds) if seconds else "off"

