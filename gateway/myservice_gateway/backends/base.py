"""The backend interface: prepare a session at Login, find (or start) its
instance for a call. The proxy only ever sees this; local processes and
Kubernetes pods fit behind it, over the shared session table (sessions.py).
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import grpc

from myservice import contract

from .sessions import SessionTable

# Channels from the gateway to instances: calls are never retried by gRPC (a
# retried call could reach an instance twice), which also spares the retry
# machinery's work on every call. An instance's message may be at most what a
# client takes by default (4 MiB): the channel refuses a larger one before it is
# taken in whole (an instance cannot make the gateway hold more per message), and
# the proxy answers the client RESOURCE_EXHAUSTED in our words; a larger limit
# would only forward what a default client refuses with a text about its own
# connection.
INSTANCE_CHANNEL_OPTIONS = (("grpc.enable_retries", 0),
                            ("grpc.max_receive_message_length", contract.MAX_ANSWER_BYTES))


def instance_channel(address: str) -> grpc.aio.Channel:
    """The channel to one instance (host:port or unix:path), both backends."""
    return grpc.aio.insecure_channel(address, options=INSTANCE_CHANNEL_OPTIONS)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a session's instance answers."""
    address: str  # host:port
    pod_name: str
    channel: grpc.aio.Channel


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
    sessions: SessionTable
    """Its sessions: slots per user (live sessions, for metrics), ended ones, and the
    listener told how long each new session's first call waited, and its source."""

    async def start(self) -> None:
        """Begin serving (connect, start watches)."""

    async def prepare(self, owner: SessionOwner) -> None:
        """Called at Login; raises errors.ContractError (e.g. the per-user limit, where
        Login is what starts the instance). Must not fail for lack of global capacity
        (that comes on the call)."""

    async def endpoint(self, key: SessionKey, *, timeout: float | None) -> Endpoint:
        """Where the session's instance answers, waiting (within `timeout`) for it to
        start on a first call; raises errors.ContractError."""

    async def end_sessions_of(self, username: str) -> int:
        """End every live session of a user who was removed from the users file;
        the number ended. Their calls are told "has ended" (the tokens are refused
        before that: userwatch.py)."""
        ...

    async def close(self) -> None:
        """Stop: end every instance this backend started (local) or stop watching (Kubernetes)."""
