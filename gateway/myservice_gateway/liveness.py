"""Is the gateway's event loop running? Asked from another thread (the /metrics HTTP
server's, for /livez): the loop must run a callback within LIVENESS_WAIT seconds.

A wedged loop (blocked by a bug, deadlocked) still accepts TCP connections (the kernel
does) and still serves /metrics (its own thread): neither a tcpSocket probe nor /metrics
sees it. Behind the front the gRPC port is HAProxy's, so kubelet's grpc probe cannot ask
the Python gateway either; /livez is the chart's liveness probe of the gateway container
then."""
from __future__ import annotations

import asyncio
import threading

LIVENESS_PATH = "/livez"
# A loop this late on three probes in a row (the chart's failureThreshold) is wedged, not busy.
LIVENESS_WAIT = 2.0


class LoopLiveness:
    def __init__(self, loop: asyncio.AbstractEventLoop, wait: float = LIVENESS_WAIT) -> None:
        self.loop, self.wait = loop, wait

    def __call__(self) -> tuple[bool, str]:
        """(live, a line saying so). Called from any thread but the loop's own."""
        ran = threading.Event()
        try:
            self.loop.call_soon_threadsafe(ran.set)
        except RuntimeError:  # closed
            return False, "the gateway's event loop is closed"
        if ran.wait(self.wait):
            return True, "live"
        return False, f"the gateway's event loop did not run within {self.wait:g} s"
