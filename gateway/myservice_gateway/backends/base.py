"""The backend interface: get or allocate the instance of a session, release it.

The proxy only ever sees this; local processes and Kubernetes pods fit behind it.
"""
from __future__ import annotations

import dataclasses
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
class SessionOwner:
    session_id: str
    username: str
    role: str


class Backend(Protocol):
    async def start(self) -> None:
        """Begin serving (connect, start watches)."""

    async def prepare(self, owner: SessionOwner) -> None:
        """Called at Login. Must not fail for lack of capacity (that comes on the call)."""

    async def acquire(self, session_id: str, *, timeout: float | None) -> Endpoint:
        """The session's instance, allocating it on first use; raises BackendError."""

    async def close(self) -> None:
        """Stop: release every instance this backend owns."""
