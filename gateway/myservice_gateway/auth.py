"""Authentication of every call except Login (and health/reflection): an
interceptor that either continues or answers UNAUTHENTICATED. The proxy behind
it never sees an unauthenticated call."""
from __future__ import annotations

import collections
import logging
import time

import grpc

from myservice import contract

from . import tokens

log = logging.getLogger("myservice.gateway.auth")

# Open to everyone: how one gets a token, and the infrastructure services.
PUBLIC_PREFIXES = (contract.LOGIN_METHOD, "/grpc.health.v1.Health/", "/grpc.reflection.")


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


def _reject(kind_factory, message: str):
    async def unary_reject(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def stream_reject(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    streaming_response = kind_factory in (grpc.unary_stream_rpc_method_handler, grpc.stream_stream_rpc_method_handler)
    return kind_factory(stream_reject if streaming_response else unary_reject)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, config: tokens.TokenConfig) -> None:
        self._config = config
        self._verified = VerifiedTokens()

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(PUBLIC_PREFIXES):
            return await continuation(handler_call_details)
        problem = check(self._config, handler_call_details.invocation_metadata, self._verified)
        if problem is None:
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.request_streaming and handler.response_streaming:
            factory = grpc.stream_stream_rpc_method_handler
        elif handler.request_streaming:
            factory = grpc.stream_unary_rpc_method_handler
        elif handler.response_streaming:
            factory = grpc.unary_stream_rpc_method_handler
        else:
            factory = grpc.unary_unary_rpc_method_handler
        return _reject(factory, problem)
