"""Authentication of every proxied call: the proxy's handler asks
`Authenticator.authenticate` first, and an unauthenticated call is answered
UNAUTHENTICATED before it reaches a backend. The answer is the session the call
belongs to, (token's user, session-id), which is all the proxy routes by.
Login, health and reflection are served by their own handlers and never get here.

(A grpc.aio ServerInterceptor would do the same job at the cost of an extra
coroutine per call on the gateway's hot path: see docs/benchmarks.md.)"""
from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

from myservice import contract, errors

from . import tokens
from .backends.base import SessionKey

log = logging.getLogger("myservice.gateway.auth")

# What a log line echoes of a value the client chose: a session-id may be ~8 KiB
# (gRPC's metadata limit) and is logged per refused call.
SHOWN_CHARS = 64


def shown(value: str, limit: int = SHOWN_CHARS) -> str:
    """A client's value for a log line: escaped (repr) and cut to `limit` characters."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


def call_credentials(metadata) -> tuple[str, str]:
    """The call's (authorization, session-id), each given exactly once.

    Read in one pass, and a second value of either key rejects the call: the
    value checked against the token must be the only one that routing and the
    instance can ever see (a token for one session, routed by another's id, is
    a takeover)."""
    authorization = session_id = None
    for key, value in metadata or ():
        if key == contract.AUTHORIZATION:
            if authorization is not None:
                raise errors.repeated_credentials()
            authorization = value if isinstance(value, str) else ""
        elif key == contract.SESSION_ID:
            if session_id is not None:
                raise errors.repeated_credentials()
            session_id = value if isinstance(value, str) else ""
    if not authorization:
        raise errors.missing_token()
    if not session_id:
        raise errors.missing_session_id()
    return authorization, session_id


# Verified (token, session-id) pairs remembered, least recently used dropped first.
VERIFIED_CACHE_SIZE = 16384  # ~300 B each (bench/gateway_session_memory.py): 5 MiB


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
        self._entries: collections.OrderedDict[tuple[str, str], tuple[int, SessionKey]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def session(self, token: str, session_id: str) -> SessionKey | None:
        """The session the token was verified for, if it still holds."""
        key = (token, session_id)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def add(self, token: str, session_id: str, exp: int, session: SessionKey) -> None:
        self._entries[(token, session_id)] = (exp, session)
        self._entries.move_to_end((token, session_id))
        while len(self._entries) > self._maxsize:
            self._entries.popitem(last=False)


def authenticate(config: tokens.TokenConfig, metadata, verified: VerifiedTokens | None = None) -> SessionKey:
    """The session a call belongs to: the token's user and its session-id, which
    the token must be bound to. Raises errors.ContractError (UNAUTHENTICATED). Which check a bad token failed
    (signature, expiry, session) is logged, not told. With `verified`, a token
    already verified for this session-id and not yet expired is not decoded again."""
    authorization, session_id = call_credentials(metadata)
    token = tokens.strip_bearer(authorization)
    if verified is not None:
        session = verified.session(token, session_id)
        if session is not None:
            return session
    try:
        claims = tokens.verify(config, token, session_id=session_id)
    except tokens.InvalidToken as e:
        log.info("rejected token for session-id %s: %s", shown(session_id), shown(str(e), 200))
        raise errors.invalid_token() from None
    session = SessionKey(claims.username, claims.session_id)
    if verified is not None:
        verified.add(token, session_id, claims.expires_at, session)
    return session


class Authenticator:
    """Decides, before any backend work, which session a proxied call belongs to.
    `user_exists` (userwatch.py): a valid token of a user removed from the users
    file is refused like any invalid token."""

    def __init__(self, config: tokens.TokenConfig, user_exists: Callable[[str], bool] | None = None) -> None:
        self._config = config
        self._verified = VerifiedTokens()
        self._user_exists = user_exists

    def authenticate(self, metadata) -> SessionKey:
        session = authenticate(self._config, metadata, self._verified)
        if self._user_exists is not None and not self._user_exists(session.username):
            log.info("rejected token of removed user %r", session.username[:64])
            raise errors.invalid_token()
        return session
