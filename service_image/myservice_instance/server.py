"""Run our echo instance (`myservice instance`), and the names the local backend
and the tests know it by."""
from __future__ import annotations

from myservice_api import settings

from .app import CLAIM_SIGNAL, STOP_GRACE_SECONDS, Running
from .endings import report_ending
from .limits import Limits
from .servicer import echo_instance
from .settings import DEFAULT_TERMINATION_LOG, InstanceSettings, default_termination_log
from .timer import LimitTimer

__all__ = ["CLAIM_SIGNAL", "DEFAULT_TERMINATION_LOG", "STOP_GRACE_SECONDS", "LimitTimer", "Running",
           "default_termination_log", "report_ending", "start_instance"]


async def start_instance(
    *, host: str = "0.0.0.0", port: int = settings.INSTANCE_PORT.default, pod_name: str | None = None,
    unix_socket: str | None = None,
    limits: Limits = Limits(idle_timeout=0, max_lifetime=0), wait_for_claim: bool = False,
) -> Running:
    """Start an echo instance on host:port, or on a Unix socket when given (for tests:
    its limits are enforced only by Instance.serve)."""
    own = InstanceSettings(host=host, port=port, pod_name=pod_name, idle_timeout=limits.idle_timeout,
                           max_lifetime=limits.max_lifetime, wait_for_claim=wait_for_claim)
    return await echo_instance().start(own, unix_socket=unix_socket)
