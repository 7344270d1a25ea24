"""Authentication of every proxied call: the proxy asks `Authenticator.check`
while it looks up the call's handler, and an unauthenticated call gets a handler
that only answers UNAUTHENTICATED, so it never reaches a backend. Login, health
and reflection are served by their own handlers and never get here.

(A grpc.aio ServerInterceptor would do the same job at the cost of an extra
coroutine per call on the gateway's hot path: see docs/benchmarks.md.)"""
from __future__ import annotations

import collections
import logging
import time

import grpc

from myservice import contract

from . import rpckinds, tokens

log = logging.getLogger("myservice.gateway.auth")

def metadata_value(metadata, key: str) -> str:
    for k, v in metadata or ():
        if k == key:
            return v if isinstance(v, str) else ""
    return ""


MISSING_TOKEN = "missing authorization token"
MISSING_SESSION_ID = "missing session-id"
INVALID_TOKEN = "invalid token"


# Verified (token, session-id) pairs remembered, least recently used dropped first.
VERIFIED_CACHE_SIZE = 4096


class VerifiedTokens:
    """A bounded LRU of (token, session-id) pairs that passed tokens.verify, each
    until its exp. Decoding and HMAC-checking the same token on every call of a
    session is the largest cost of auth (docs/benchmarks.md); a hit stands for
    exactly what tokens.verify would decide again: same key and claims (the key
    is fixed per gateway), nothing but exp depends on the clock (iat/nbf only
    ever become "more valid"), and exp is checked again here, as PyJWT does it:
    expired when exp <= now. Only successes are remembered: a bad token is
    verified (and logged) every time."""

    def __init__(self, maxsize: int = VERIFIED_CACHE_SIZE, clock=time.time) -> None:
        self._maxsize = maxsize
        self._clock = clock
        self._exp: collections.OrderedDict[tuple[str, str], int] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._exp)

    def valid(self, token: str, session_id: str) -> bool:
        key = (token, session_id)
        exp = self._exp.get(key)
        if exp is None:
            return False
        if exp <= self._clock():
            del self._exp[key]
            return False
        self._exp.move_to_end(key)
        return True

    def add(self, token: str, session_id: str, exp: int) -> None:
        self._exp[(token, session_id)] = exp
        self._exp.move_to_end((token, session_id))
        while len(self._exp) > self._maxsize:
            self._exp.popitem(last=False)


def check(config: tokens.TokenConfig, metadata, verified: VerifiedTokens | None = None) -> str | None:
    """None if the call is authenticated, else the message for the client. Which
    check a bad token failed (signature, expiry, session) is logged, not told.
    With `verified`, a token already verified for this session-id and not yet
    expired is not decoded again."""
    authorization = metadata_value(metadata, contract.AUTHORIZATION)
    if not authorization:
        return MISSING_TOKEN
    session_id = metadata_value(metadata, contract.SESSION_ID)
    if not session_id:
        return MISSING_SESSION_ID
    token = tokens.strip_bearer(authorization)
    if verified is not None and verified.valid(token, session_id):
        return None
    try:
        claims = tokens.verify(config, token, session_id=session_id)
    except tokens.InvalidToken as e:
        log.info("rejected token for session-id %r: %s", session_id, e)
        return INVALID_TOKEN
    if verified is not None:
        verified.add(token, session_id, claims.expires_at)
    return None


def reject(request_streaming: bool, response_streaming: bool, message: str) -> grpc.RpcMethodHandler:
    """A handler of the call's own kind that only answers UNAUTHENTICATED."""
    async def unary_reject(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def stream_reject(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    return rpckinds.method_handler(request_streaming, response_streaming,
                                   stream_reject if response_streaming else unary_reject)


class Authenticator:
    """Decides, before any handler runs, whether a proxied call may go on."""

    def __init__(self, config: tokens.TokenConfig) -> None:
        self._config = config
        self._verified = VerifiedTokens()

    def check(self, metadata) -> str | None:
        return check(self._config, metadata, self._verified)
