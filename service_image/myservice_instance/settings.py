"""The instance's settings, read from its flags and environment (a flag wins),
each declared once (myservice_api.settings). The variables are the inputs of the
instance contract (docs/instances.md): any image gets them, whether or not it is
built with this SDK."""
from __future__ import annotations

import dataclasses
import os
import socket

from myservice_api import settings
from myservice_api.settings import declare

from .limits import Limits

HOST_ENV = "MYSERVICE_INSTANCE_HOST"
POD_NAME_ENV = "POD_NAME"
# Set to 1 in a pool member's env (the operator's pool pods, the local pool).
WAIT_FOR_CLAIM_ENV = "MYSERVICE_INSTANCE_WAIT_FOR_CLAIM"
# Where to write "<Reason>: <message>" when the instance ends itself: the local
# backend gives each command a file of its own; in a pod, kubelet's file below.
TERMINATION_LOG_ENV = "MYSERVICE_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
# Set by the local backend for a command started for a known session (not for a
# pool member, not on Kubernetes): for logs only, the calls' metadata is what counts.
SESSION_ID_ENV = "MYSERVICE_SESSION_ID"
SESSION_USER_ENV = "MYSERVICE_SESSION_USER"


def default_termination_log() -> str | None:
    """kubelet's termination message file when we run in a pod (it mounts it writable), else None."""
    path = DEFAULT_TERMINATION_LOG
    return path if os.path.exists(path) and os.access(path, os.W_OK) else None


@dataclasses.dataclass(frozen=True)
class InstanceSettings:
    """What an instance reads from its flags and environment (a flag wins)."""
    host: str = declare(
        "0.0.0.0", env=HOST_ENV, flag="--host",
        help="address to listen on")
    port: int = settings.INSTANCE_PORT.field(
        flag="--port", help="port to listen on; 0 picks a free one")
    idle_timeout: float = settings.SESSION_IDLE_TIMEOUT.field(
        flag="--idle-timeout",
        help="end after this long without a call of the session (an open stream is a call; health "
             "checks are not)")
    max_lifetime: float = settings.SESSION_MAX_LIFETIME.field(
        flag="--max-lifetime", help="end this long after the start, calls or not")
    wait_for_claim: bool = declare(
        False, env=WAIT_FOR_CLAIM_ENV, flag="--wait-for-claim", parse=lambda raw: raw.strip() == "1",
        help="a warm pool member: the idle and lifetime clocks start at SIGUSR1 (the local backend's "
             "claim for a session) or at the first call of the session, not at the start (the "
             "variable: on if 1, as in a pool member)")
    pod_name: str | None = declare(
        None, env=POD_NAME_ENV, flag="--pod-name", default_text="$HOSTNAME",
        help="the instance's name in logs and answers (on Kubernetes its pod's)")
    termination_log: str | None = declare(
        None, env=TERMINATION_LOG_ENV, flag="--termination-log", metavar="PATH",
        default_text=f"{DEFAULT_TERMINATION_LOG} if writable",
        help="write '<Reason>: <message>' here when a limit ends the instance; the flag '' = nowhere")

    @property
    def limits(self) -> Limits:
        return Limits(idle_timeout=self.idle_timeout, max_lifetime=self.max_lifetime)

    def name(self) -> str:
        return self.pod_name or os.environ.get("HOSTNAME") or socket.gethostname()

    def termination_log_path(self) -> str | None:
        """The file to write the reason to: None for nowhere."""
        if self.termination_log is None:
            return default_termination_log()
        return self.termination_log or None
