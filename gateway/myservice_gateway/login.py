"""The Login RPC: decode, validate, admit, authenticate, issue a session-bound
token, prepare the session. The decisions live in plain functions and in
loginguard.py; this adapter only turns them into gRPC answers."""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging

import grpc
from google.protobuf import duration_pb2, message, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from myservice import errors
from myservice.v1 import myservice_pb2 as pb

from . import clientaddress, loginguard, tokens
from .backends.base import Backend, SessionOwner
from .hashpool import HashPool, LoginQueueTimeout
from .hashproc import CheckerProcesses
from .recentlogins import RecentLogins
from .settings import GatewaySettings
from .users import UserStore, UserStoreError, credentials_too_long

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


class Throttled(Exception):
    """A waiting Login refused when its turn came (LoginGuard.recheck)."""

    def __init__(self, refusal: loginguard.Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclasses.dataclass(eq=False)
class Attempt:
    """One password check that several identical Logins (same username, same
    password) share: a client that opens 30 sessions of one user at once pays one
    hash, not 30. Every Login keeps its own ticket (its own failure counts)."""
    job: asyncio.Future  # the hash pool's: (user, seconds)
    tickets: list[loginguard.Ticket]
    callers: int = 0


class LoginHandler:
    def __init__(self, *, users: UserStore, token_config: tokens.TokenConfig, backend: Backend,
                 guard: loginguard.LoginGuard, hash_pool: HashPool,
                 recent: RecentLogins | None = None, trusted_proxies: tuple = (),
                 checker: CheckerProcesses | None = None) -> None:
        self._users = users
        self._token_config = token_config
        self._backend = backend
        self._guard = guard
        self._hash_pool = hash_pool
        self._recent = recent if recent is not None else RecentLogins(0)
        self._trusted_proxies = trusted_proxies
        self._attempts: dict[object, Attempt] = {}  # by RecentLogins.attempt_key
        self._checker = checker  # the users store's hashing processes, if any: ended with us

    @classmethod
    def from_settings(cls, settings: GatewaySettings, *, users: UserStore, token_config: tokens.TokenConfig,
                      backend: Backend, checker: CheckerProcesses | None = None) -> LoginHandler:
        return cls(users=users, token_config=token_config, backend=backend,
                   guard=loginguard.LoginGuard(login_limits(settings)),
                   hash_pool=HashPool(workers=settings.login_hash_workers, nice=settings.login_hash_nice,
                                      max_wait=settings.login_queue_max_wait),
                   recent=RecentLogins(settings.login_cache_seconds), trusted_proxies=settings.trusted_proxies,
                   checker=checker)

    @property
    def guard(self) -> loginguard.LoginGuard:
        return self._guard

    def hash_processes(self) -> list[int]:
        """The pids of the processes that check passwords (hashproc.py), if any."""
        return self._checker.pids() if self._checker is not None else []

    def close(self) -> None:
        self._hash_pool.close()
        if self._checker is not None:
            self._checker.close()

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
        peer = clientaddress.client_key(context.peer(), context.invocation_metadata(), self._trusted_proxies)
        if credentials_too_long(request.username, request.password):
            # Refused after a refusal's work (users.py); the long strings are not kept
            # while it waits: a waiting Login holds at most 2 KiB of credentials.
            request = pb.LoginRequest(username=request.username[:64], session_id=request.session_id)
            too_long = True
        else:
            too_long = False
        del request_bytes
        user = None if too_long else self._returning_user(request, peer)
        if user is None:
            admission = self._guard.admit(request.username, peer)
            if isinstance(admission, loginguard.Refusal):
                log.debug("login refused for peer %s: %s", context.peer(), admission.error.message)
                await context.abort_with_status(retry_status(admission.error, admission.retry_after))
            try:
                user = await self._authenticate(admission, request, too_long=too_long)
            except UserStoreError as e:
                log.error("user store: %s", e)
                await errors.failed_to_get_user().abort(context)
            except LoginQueueTimeout:
                await context.abort_with_status(retry_status(errors.login_busy(), self._guard.drain_seconds()))
            except Throttled as e:
                await context.abort_with_status(retry_status(e.refusal.error, e.refusal.retry_after))
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
        user = self._users.known(request.username)  # no file read on the loop
        if user is None or not self._recent.matches(request.username, request.password, user.password_hash):
            return None
        return user

    async def _authenticate(self, ticket: loginguard.Ticket, request: pb.LoginRequest, *, too_long: bool):
        """The user if the password matches, else None; hashed on the pool, in the
        guard's fair order, once for all identical Logins waiting at the same time.
        The tickets go back to the guard when the job is really over (hashed, or
        dropped from the line), not when a call ends: a caller that hangs up mid-hash
        still holds its place until the hash is done, and its failure still counts."""
        # An over-long Login shares nothing: each pays a whole refusal, as any refusal does.
        key = object() if too_long else self._recent.attempt_key(request.username, request.password)
        attempt = self._attempts.get(key)
        if attempt is None or attempt.job.done():  # done: a result not yet handed out, or dropped
            attempt = self._start_attempt(key, ticket, request, too_long=too_long)
        else:
            attempt.tickets.append(ticket)
        attempt.callers += 1
        try:
            user, _seconds = await asyncio.shield(attempt.job)
        except asyncio.CancelledError:
            attempt.callers -= 1
            if not attempt.callers and not attempt.job.done():
                attempt.job.cancel()  # nobody waits for it: dropped if it has not started
            raise
        return user

    def _start_attempt(self, key: object, ticket: loginguard.Ticket, request: pb.LoginRequest, *,
                       too_long: bool) -> Attempt:
        guard = self._guard

        def ended(done: concurrent.futures.Future | None) -> None:
            if self._attempts.get(key) is attempt:
                del self._attempts[key]  # here, not later: no Login may join an attempt that is over
            failed, seconds = attempt_failed(done), hash_seconds(done)
            for i, each in enumerate(attempt.tickets):
                guard.finish(each, failed=failed, hash_seconds=seconds if i == 0 else None)

        check, args = (self._users.refuse, ()) if too_long else (self._users.authenticate,
                                                                 (request.username, request.password))
        def refused() -> Throttled | None:
            refusal = guard.recheck(ticket)
            return None if refusal is None else Throttled(refusal)

        job = self._hash_pool.start(check, *args, on_end=ended, rank=lambda: guard.rank(ticket),
                                    on_start=lambda: guard.turn(ticket), refused=refused)
        attempt = self._attempts[key] = Attempt(job, [ticket])
        return attempt
