"""Users: username -> (password hash, role), from a JSON file and/or the
documented development user, and the password check of a Login.

File format: {"users": {"alice": {"password_hash": "$argon2id$...", "role": "admin"},
                        "bob": {"password": "plain text", "role": "user"}}}
A `password_hash` is argon2 (what `myservice hash-password` and the chart make) or
bcrypt ($2a$/$2b$/$2y$, accepted for existing files). A plain `password` is hashed
with argon2id in memory when the file is read; on a re-read only entries whose
(name, password) changed are hashed again.

No enumeration by timing: every Login refused for its credentials does the same
hashing work, whatever the path (unknown user, wrong password for an argon2 or a
bcrypt user, an over-long password): one argon2id check with the default
parameters, plus one bcrypt check at the store's bcrypt cost when the store holds a
bcrypt user; dummy hashes stand in for the checks a path has no hash for. Which
checks run is decided by `checks()`, a plain function. Successes are not padded.

Long input: a username or password over 1024 bytes (UTF-8) is refused after that
same work and is never checked against a real user's hash. bcrypt reads only 72
bytes: a longer password never matches a bcrypt hash (it is not cut to 72, so two
passwords that share 72 bytes are not the same password); such a user needs an
argon2 hash.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from typing import NamedTuple

import argon2
import bcrypt
from argon2.low_level import core as argon2_core
from argon2.low_level import ffi as argon2_ffi
from argon2.low_level import lib as argon2_lib

log = logging.getLogger("myservice.gateway.users")

DEV_USERNAME = "TestUser"
DEV_PASSWORD = "TestPassword"
DEV_ROLE = "user"

# Longest username and password (UTF-8 bytes) a Login may carry; longer ones are refused.
MAX_USERNAME_BYTES = 1024
MAX_PASSWORD_BYTES = 1024
# bcrypt reads this many bytes of a password and ignores the rest.
BCRYPT_MAX_BYTES = 72

ARGON2 = "argon2"
BCRYPT = "bcrypt"

_BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_DUMMY_PASSWORD = "not-a-real-password"

_argon2 = argon2.PasswordHasher()  # argon2id with the library's recommended parameters

Verifier = Callable[[str, str], bool]  # (stored hash, password) -> matches


class UserStoreError(Exception):
    """The store could not be read: maps to INTERNAL "failed to get user"."""


@dataclasses.dataclass(frozen=True)
class User:
    username: str
    password_hash: str
    role: str


def hash_password(password: str) -> str:
    return _argon2.hash(password)


# Verified against when a refusal has no argon2 hash of its own (an unknown user, a
# bcrypt user, an over-long password): the library's default parameters, as every
# hash that hash_password, `myservice hash-password` and the chart make.
_DUMMY_HASH = hash_password(_DUMMY_PASSWORD)


def hash_kind(password_hash: str) -> str | None:
    """ARGON2, BCRYPT, or None for a string that is neither (it never matches)."""
    if _BCRYPT_HASH.fullmatch(password_hash):
        return BCRYPT
    try:
        argon2.extract_parameters(password_hash)
    except (argon2.exceptions.InvalidHashError, ValueError):
        return None
    return ARGON2


def bcrypt_cost(password_hash: str) -> int | None:
    match = _BCRYPT_HASH.fullmatch(password_hash)
    return int(match.group(1)) if match else None


_bcrypt_dummies: dict[int, str] = {}


def bcrypt_dummy(cost: int) -> str:
    """A bcrypt hash of this cost that no Login's password is checked against for real.
    Made once per cost (~2^cost work: 65 ms at cost 10 here)."""
    if cost not in _bcrypt_dummies:
        _bcrypt_dummies[cost] = bcrypt.hashpw(_DUMMY_PASSWORD.encode(), bcrypt.gensalt(rounds=cost)).decode()
    return _bcrypt_dummies[cost]


def credentials_too_long(username: str, password: str) -> bool:
    """Whether a Login's username or password is over the limits: it is refused as
    "invalid username or password" (after the same work as any refusal: call
    `UserStore.refuse()` in place of `authenticate`, and the strings need not be kept)."""
    return (len(username.encode()) > MAX_USERNAME_BYTES
            or len(password.encode()) > MAX_PASSWORD_BYTES)


class Check(NamedTuple):
    kind: str           # ARGON2 or BCRYPT
    password_hash: str
    real: bool          # the user's own hash (a match logs in); else a dummy, run for its cost


def checks(user: User | None, password: str, *, bcrypt_dummy: str | None) -> tuple[Check, ...]:
    """The password checks of one Login, in order. The first is the real one when the
    Login can succeed at all; a match of it ends the Login (successes are not padded).
    A refusal runs them all, and that is the same work on every path: one argon2
    check, plus one bcrypt check when the store holds bcrypt users (`bcrypt_dummy`,
    a hash at the store's bcrypt cost; None when it holds none).

    No real check: no user, a username or password over the limits, a stored hash
    that is neither argon2 nor bcrypt, a password over 72 bytes for a bcrypt hash."""
    real = None
    if user is not None and not credentials_too_long(user.username, password):
        kind = hash_kind(user.password_hash)
        if kind == BCRYPT and len(password.encode()) > BCRYPT_MAX_BYTES:
            kind = None  # bcrypt would read 72 bytes of it: never a match, never cut
        if kind is not None:
            real = Check(kind, user.password_hash, True)
    plan = [real] if real else []
    if real is None or real.kind != ARGON2:
        plan.append(Check(ARGON2, _DUMMY_HASH, False))
    if bcrypt_dummy is not None and (real is None or real.kind != BCRYPT):
        plan.append(Check(BCRYPT, bcrypt_dummy, False))
    return tuple(plan)


def _dummy_secret(check: Check, password: str) -> str:
    """What a dummy check hashes: the password itself when it is within the limits
    (so the work is what a real check of it would be), cut to what bcrypt reads."""
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        password = _DUMMY_PASSWORD
    if check.kind == BCRYPT:
        return password.encode()[:BCRYPT_MAX_BYTES].decode("utf-8", "ignore")
    return password


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check of a password against an argon2 or bcrypt hash. CPU-heavy:
    call it off the event loop. A password over 72 bytes never matches a bcrypt hash."""
    if password_hash.startswith(("$2a$", "$2b$", "$2y$")):
        secret = password.encode()
        if len(secret) > BCRYPT_MAX_BYTES:  # bcrypt 5 refuses it; 4.x would cut it
            return False
        try:
            return bcrypt.checkpw(secret, password_hash.encode())
        except ValueError:
            return False
    try:
        return _argon2_verify_on_this_thread(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError, ValueError):
        return False


def _argon2_verify_on_this_thread(password_hash: str, password: str) -> bool:
    """argon2's verify, computed by the calling thread alone. The library's own
    verify starts one thread per lane (4 with its defaults), so a single Login
    would take every core of a small machine; the lanes are independent, so one
    thread gets the same digest for the same CPU time, on one core (the hashing
    pool's workers are then exactly what Login may use: hashpool.py)."""
    params = argon2.extract_parameters(password_hash)  # InvalidHashError if it is no argon2 hash
    salt_b64, digest_b64 = password_hash.rsplit("$", 2)[1:]
    salt, digest = _unpadded_b64(salt_b64), _unpadded_b64(digest_b64)
    secret = password.encode()
    out = argon2_ffi.new("uint8_t[]", len(digest))
    c_secret, c_salt = argon2_ffi.new("uint8_t[]", secret), argon2_ffi.new("uint8_t[]", salt)
    context = argon2_ffi.new("argon2_context *", dict(
        version=params.version, out=out, outlen=len(digest), pwd=c_secret, pwdlen=len(secret),
        salt=c_salt, saltlen=len(salt), secret=argon2_ffi.NULL, secretlen=0, ad=argon2_ffi.NULL, adlen=0,
        t_cost=params.time_cost, m_cost=params.memory_cost, lanes=params.parallelism, threads=1,
        allocate_cbk=argon2_ffi.NULL, free_cbk=argon2_ffi.NULL, flags=argon2_lib.ARGON2_DEFAULT_FLAGS))
    if argon2_core(context, params.type.value) != argon2_lib.ARGON2_OK:
        return False
    return hmac.compare_digest(bytes(argon2_ffi.buffer(out, len(digest))), digest)


def _unpadded_b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def parse_users(document: object, *, hash_plain: Callable[[str, str], str] | None = None) -> dict[str, User]:
    """Validate a users document (see module docstring). `hash_plain(name, password)`
    makes the hash of a plain-password entry (default: a new argon2id hash)."""
    if hash_plain is None:
        hash_plain = lambda _name, password: hash_password(password)  # noqa: E731
    if not isinstance(document, dict) or not isinstance(document.get("users"), dict):
        raise UserStoreError('users file must be a JSON object {"users": {name: {password_hash, role}}}')
    users = {}
    for name, entry in document["users"].items():
        if not isinstance(entry, dict):
            raise UserStoreError(f"user {name!r}: password or password_hash missing")
        stored, plain = entry.get("password_hash"), entry.get("password")
        if stored is not None and plain is not None:
            raise UserStoreError(f"user {name!r}: give password or password_hash, not both")
        if isinstance(plain, str):
            if not plain:
                raise UserStoreError(f"user {name!r}: password is empty")
            if len(plain.encode()) > MAX_PASSWORD_BYTES:
                raise UserStoreError(f"user {name!r}: password is longer than {MAX_PASSWORD_BYTES} bytes")
            stored = hash_plain(name, plain)
        elif plain is not None:
            raise UserStoreError(f"user {name!r}: password must be a string")
        elif not isinstance(stored, str):
            raise UserStoreError(f"user {name!r}: password or password_hash missing")
        elif hash_kind(stored) is None:
            log.warning("users file: user %r: password_hash is neither argon2 nor bcrypt: this user cannot log in",
                        name)
        users[name] = User(name, stored, str(entry.get("role") or "user"))
    return users


def store_bcrypt_dummy(users: dict[str, User]) -> str | None:
    """The dummy bcrypt hash that refusals check against: at the highest bcrypt cost
    among the users (a file normally has one cost: htpasswd's 10), None without
    bcrypt users."""
    costs = [cost for user in users.values() if (cost := bcrypt_cost(user.password_hash)) is not None]
    return bcrypt_dummy(max(costs)) if costs else None


class UserStore:
    """Users from a file (re-read when it changes, as a mounted Secret does) plus
    the optional development user. `verify` checks one password against one hash
    (default: verify_password); tests pass their own to count the checks."""

    def __init__(self, *, users_file: str | None, dev_user: bool, verify: Verifier | None = None) -> None:
        self._users_file = users_file
        self._verify = verify
        self._file_users: dict[str, User] = {}
        self._file_stamp: tuple[int, int] | None = None
        # Hashes of plain-password entries, by a keyed digest of (name, password): a
        # re-read of an unchanged entry costs no hash (and keeps the same hash, so
        # recentlogins.py still knows its user). Only the current file's entries stay.
        self._plain_key = secrets.token_bytes(32)
        self._plain_hashes: dict[bytes, str] = {}
        # One re-read at a time: the event loop and the hashing threads all call get(), and
        # a slow re-read (plain entries to hash) must not put an older table back after a
        # newer one.
        self._reload_lock = threading.Lock()
        self._dev = {DEV_USERNAME: User(DEV_USERNAME, hash_password(DEV_PASSWORD), DEV_ROLE)} if dev_user else {}
        self._bcrypt_dummy = store_bcrypt_dummy(self._dev)
        if users_file:
            self._reload()  # fail fast at start-up on a bad file

    def _reload(self) -> None:
        with self._reload_lock:
            self._reload_locked()

    def _reload_locked(self) -> None:
        assert self._users_file
        try:
            stat = os.stat(self._users_file)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._file_stamp:
                return
            with open(self._users_file, encoding="utf-8") as f:
                document = json.load(f)
        except (OSError, ValueError) as e:
            raise UserStoreError(f"cannot read users file {self._users_file}: {e}") from e
        kept: dict[bytes, str] = {}

        def hash_plain(name: str, password: str) -> str:
            digest = self._plain_digest(name, password)
            kept[digest] = self._plain_hashes.get(digest) or hash_password(password)
            return kept[digest]

        try:
            file_users = parse_users(document, hash_plain=hash_plain)
        except UserStoreError as e:
            raise UserStoreError(f"cannot read users file {self._users_file}: {e}") from e
        self._file_users, self._plain_hashes, self._file_stamp = file_users, kept, stamp
        self._bcrypt_dummy = store_bcrypt_dummy({**self._dev, **file_users})

    def _plain_digest(self, name: str, password: str) -> bytes:
        message = b"".join(len(p).to_bytes(4, "big") + p for p in (name.encode(), password.encode()))
        return hmac.new(self._plain_key, message, hashlib.sha256).digest()

    def get(self, username: str) -> User | None:
        if self._users_file:
            self._reload()
        return self._file_users.get(username) or self._dev.get(username)

    def known(self, username: str) -> User | None:
        """As get(), without reading the file: for the event loop (a re-read may hash
        plain-password entries). None also when the file changed since it was read
        (one stat): the caller then takes the path that re-reads it off the loop."""
        if self._users_file:
            try:
                stat = os.stat(self._users_file)
            except OSError:
                return None
            if (stat.st_mtime_ns, stat.st_size) != self._file_stamp:
                return None
        return self._file_users.get(username) or self._dev.get(username)

    def names(self) -> frozenset[str]:
        """Every username, the file re-read if it changed. Blocking: call it off the loop."""
        if self._users_file:
            self._reload()
        return frozenset(self._file_users) | frozenset(self._dev)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password matches, else None. Blocking (hashing): every
        refusal does the same work (see checks())."""
        if credentials_too_long(username, password):
            return self.refuse()
        user = self.get(username)
        plan = checks(user, password, bcrypt_dummy=self._bcrypt_dummy)
        verify = self._verify or verify_password  # looked up per call: tests may replace it
        for check in plan:
            matched = verify(check.password_hash, password if check.real else _dummy_secret(check, password))
            if check.real and matched:
                return user
        return None

    def refuse(self) -> None:
        """A refusal's work without its credentials, for a Login over the length
        limits (credentials_too_long): the caller need not keep its strings. None."""
        if self._users_file:
            self._reload()
        verify = self._verify or verify_password
        for check in checks(None, _DUMMY_PASSWORD, bcrypt_dummy=self._bcrypt_dummy):
            verify(check.password_hash, _dummy_secret(check, _DUMMY_PASSWORD))
        return None
