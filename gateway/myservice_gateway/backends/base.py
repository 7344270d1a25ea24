"""The backend interface: get or allocate the instance of a session, release it.

The proxy only ever sees this; local processes and Kubernetes pods fit behind it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import grpc

# Channels from the gateway to instances: calls are never retried by gRPC (a
# retried call could reach an instance twice), which also spares the retry
# machinery's work on every call.
INSTANCE_CHANNEL_OPTIONS = (("grpc.enable_retries", 0),)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a session's instance answers."""
    address: str  # host:port
    pod_name: str
    channel: grpc.aio.Channel


@dataclasses.dataclass(frozen=True)
class BackendError(Exception):
    """A status the gateway returns instead of forwarding the call."""
    code: grpc.StatusCode
    message: str


@dataclasses.dataclass(frozen=True)
class SessionKey:
    """What names a session everywhere: the user who logged in and the session_id
    they chose. Two users who pick the same session_id have two sessions."""
    username: str
    session_id: str

    def __str__(self) -> str:  # for logs: session ids are printable ASCII (Login checks)
        return f"{self.username}/{self.session_id}"


@dataclasses.dataclass(frozen=True)
class SessionOwner:
    session_id: str
    username: str
    role: str

    @property
    def key(self) -> SessionKey:
        return SessionKey(self.username, self.session_id)


class Backend(Protocol):
    on_session_start: Callable[..., None]  # (seconds waited, "warm" | "cold")
    """Told how long a call waited for its session's instance (first calls only)."""

    @property
    def live_count(self) -> int:
        """Sessions holding an instance (local) or a slot (Kubernetes), for metrics."""

    async def start(self) -> None:
        """Begin serving (connect, start watches)."""

    async def prepare(self, owner: SessionOwner) -> None:
        """Called at Login; raises BackendError (e.g. the per-user limit, where Login is
        what starts the instance). Must not fail for lack of global capacity (that
        comes on the call)."""

    async def acquire(self, key: SessionKey, *, timeout: float | None) -> Endpoint:
        """The session's instance, allocating it on first use; raises BackendError."""

    async def close(self) -> None:
        """Stop: release every instance this backend owns."""
