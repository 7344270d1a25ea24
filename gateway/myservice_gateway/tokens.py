"""JWT issue and strict verification (pure functions of key, claims and clock)."""
from __future__ import annotations

import dataclasses
import time
import uuid

import jwt

ALGORITHM = "HS256"  # pinned: decoding accepts this one algorithm only
REQUIRED_CLAIMS = ["sub", "role", "sid", "iat", "exp", "jti", "iss", "aud"]


class InvalidToken(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class TokenConfig:
    key: bytes
    issuer: str
    audience: str
    ttl_seconds: int


@dataclasses.dataclass(frozen=True)
class Claims:
    username: str
    role: str
    session_id: str
    expires_at: int


def issue(config: TokenConfig, *, username: str, role: str, session_id: str, now: float | None = None) -> tuple[str, int]:
    """Sign a token bound to `session_id`; returns (token, exp as unix seconds)."""
    iat = int(time.time() if now is None else now)
    exp = iat + config.ttl_seconds
    claims = {
        "sub": username, "role": role, "sid": session_id, "iat": iat, "exp": exp,
        "jti": uuid.uuid4().hex, "iss": config.issuer, "aud": config.audience,
    }
    return jwt.encode(claims, config.key, algorithm=ALGORITHM), exp


def strip_bearer(authorization: str) -> str:
    scheme, _, rest = authorization.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest else authorization.strip()


def verify(config: TokenConfig, token: str, *, session_id: str) -> Claims:
    """Decode strictly and check the token belongs to `session_id`."""
    if not token:
        raise InvalidToken("missing token")
    try:
        claims = jwt.decode(
            token, config.key, algorithms=[ALGORITHM], audience=config.audience, issuer=config.issuer,
            options={"require": REQUIRED_CLAIMS, "verify_signature": True},
        )
    except jwt.PyJWTError as e:
        raise InvalidToken(str(e)) from None
    if not session_id or claims["sid"] != session_id:
        raise InvalidToken("token is not bound to this session-id")
    return Claims(str(claims["sub"]), str(claims["role"]), str(claims["sid"]), int(claims["exp"]))
