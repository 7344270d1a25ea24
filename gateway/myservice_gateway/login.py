"""The Login RPC: decode, validate, admit, authenticate, issue a session-bound
token, prepare the session. The decisions live in plain functions and in
loginguard.py; this adapter only turns them into gRPC answers."""
from __future__ import annotations

import concurrent.futures
import logging

import grpc
from google.protobuf import duration_pb2, message, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from myservice import errors
from myservice.v1 import myservice_pb2 as pb

from . import loginguard, tokens
from .backends.base import Backend, SessionOwner
from .hashpool import HashPool, LoginQueueTimeout
from .recentlogins import RecentLogins
from .settings import GatewaySettings
from .users import UserStore, UserStoreError

log = logging.getLogger("myservice.gateway.login")


def retry_status(error: errors.ContractError, retry_after: float) -> grpc.Status:
    """The error's status carrying a google.rpc.RetryInfo that says how long to wait
    (sent as grpc-status-details-bin; rounded up to the millisecond)."""
    millis = max(1, int(-(-retry_after * 1000 // 1)))
    delay = duration_pb2.Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)
    status = status_pb2.Status(code=getattr(code_pb2, error.code.name), message=error.message)
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return rpc_status.to_status(status)


def login_limits(settings: GatewaySettings) -> loginguard.LoginLimits:
    return loginguard.LoginLimits(
        hash_workers=settings.login_hash_workers,
        queue=settings.login_queue,
        peer_concurrency=settings.login_peer_concurrency,
        user_failures=loginguard.BucketPolicy(settings.login_user_failure_burst,
                                              settings.login_user_failures_per_minute / 60),
        peer_failures=loginguard.BucketPolicy(settings.login_peer_failure_burst,
                                              settings.login_peer_failures_per_minute / 60),
    )


def attempt_failed(done: concurrent.futures.Future | None) -> bool:
    """Whether a hash job counts against the caller's buckets: a wrong password or an
    unknown user does, also when the caller went away while it ran (else hanging up
    would make guessing free); a job that never ran (None) or a broken users file
    does not."""
    if done is None or done.cancelled() or done.exception() is not None:
        return False
    user, _seconds = done.result()
    return user is None


def hash_seconds(done: concurrent.futures.Future | None) -> float | None:
    if done is None or done.cancelled() or done.exception() is not None:
        return None
    return done.result()[1]


class LoginHandler:
    def __init__(self, *, users: UserStore, token_config: tokens.TokenConfig, backend: Backend,
                 guard: loginguard.LoginGuard, hash_pool: HashPool,
                 recent: RecentLogins | None = None) -> None:
        self._users = users
        self._token_config = token_config
        self._backend = backend
        self._guard = guard
        self._hash_pool = hash_pool
        self._recent = recent if recent is not None else RecentLogins(0)

    @classmethod
    def from_settings(cls, settings: GatewaySettings, *, users: UserStore, token_config: tokens.TokenConfig,
                      backend: Backend) -> LoginHandler:
        return cls(users=users, token_config=token_config, backend=backend,
                   guard=loginguard.LoginGuard(login_limits(settings)),
                   hash_pool=HashPool(workers=settings.login_hash_workers, nice=settings.login_hash_nice,
                                      max_wait=settings.login_queue_max_wait),
                   recent=RecentLogins(settings.login_cache_seconds))

    @property
    def guard(self) -> loginguard.LoginGuard:
        return self._guard

    def close(self) -> None:
        self._hash_pool.close()

    async def login(self, request_bytes: bytes, context: grpc.aio.ServicerContext) -> pb.LoginResponse:
        # Registered without a deserializer, so that undecodable bytes get our answer
        # instead of grpc's UNKNOWN naming a protobuf exception class.
        try:
            request = pb.LoginRequest.FromString(request_bytes)
        except message.DecodeError:
            await errors.malformed_request().abort(context)
        invalid = errors.login_problem(request.username, request.session_id)
        if invalid:
            await invalid.abort(context)
        peer = loginguard.peer_key(context.peer())
        user = self._returning_user(request, peer)
        if user is None:
            admission = self._guard.admit(request.username, peer)
            if isinstance(admission, loginguard.Refusal):
                log.debug("login refused for peer %s: %s", context.peer(), admission.error.message)
                await context.abort_with_status(retry_status(admission.error, admission.retry_after))
            try:
                user = await self._authenticate(admission, request)
            except UserStoreError as e:
                log.error("user store: %s", e)
                await errors.failed_to_get_user().abort(context)
            except LoginQueueTimeout:
                await context.abort_with_status(retry_status(errors.login_busy(), self._guard.drain_seconds()))
            if user is None:
                await errors.invalid_credentials().abort(context)
            self._recent.remember(request.username, request.password, user.password_hash)
        try:
            token, exp = tokens.issue(self._token_config, username=user.username, role=user.role,
                                      session_id=request.session_id)
        except Exception as e:  # noqa: BLE001 - any signing failure
            log.error("signing failed: %s", e)
            await errors.failed_to_create_token().abort(context)
        try:
            await self._backend.prepare(SessionOwner(request.session_id, user.username, user.role))
        except errors.ContractError as e:  # its code and message are meant for the client
            await e.abort(context)
        except Exception:  # noqa: BLE001 - e.g. the Kubernetes API unreachable: say so, name nothing internal
            log.exception("backend could not prepare session %r of %r", request.session_id, user.username)
            await errors.backend_unavailable().abort(context)
        return pb.LoginResponse(token=token, expires_at=timestamp_pb2.Timestamp(seconds=exp), role=user.role)

    def _returning_user(self, request: pb.LoginRequest, peer: str):
        """The user, without hashing, if this password passed a real check against the
        same stored hash lately (recentlogins.py) and no failures hold the Login back;
        else None: the Login takes the hashing path."""
        if not self._recent.seconds or self._guard.failures_wait(request.username, peer) > 0:
            return None
        try:
            user = self._users.get(request.username)
        except UserStoreError:
            return None  # the hashing path says so
        if user is None or not self._recent.matches(request.username, request.password, user.password_hash):
            return None
        return user

    async def _authenticate(self, ticket: loginguard.Ticket, request: pb.LoginRequest):
        """The user if the password matches, else None; hashed on the pool. The ticket
        goes back to the guard when the job is really over (hashed, or dropped from
        the line), not when this call ends: a caller that hangs up mid-hash still
        holds its worker until the hash is done."""
        def ended(done: concurrent.futures.Future | None) -> None:
            self._guard.finish(ticket, failed=attempt_failed(done), hash_seconds=hash_seconds(done))

        user, _seconds = await self._hash_pool.start(self._users.authenticate, request.username, request.password,
                                                     on_end=ended)
        return user
