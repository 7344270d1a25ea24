"""Users: username -> (password hash, role), from a JSON file and/or the
documented development user. Hashes are argon2id or bcrypt (Helm's htpasswd).

File format: {"users": {"alice": {"password_hash": "$argon2id$...", "role": "admin"}}}
"""
from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import os

import argon2
import bcrypt
from argon2.low_level import core as argon2_core
from argon2.low_level import ffi as argon2_ffi
from argon2.low_level import lib as argon2_lib

DEV_USERNAME = "TestUser"
DEV_PASSWORD = "TestPassword"
DEV_ROLE = "user"

_argon2 = argon2.PasswordHasher()  # argon2id with the library's recommended parameters


class UserStoreError(Exception):
    """The store could not be read: maps to INTERNAL "failed to get user"."""


@dataclasses.dataclass(frozen=True)
class User:
    username: str
    password_hash: str
    role: str


def hash_password(password: str) -> str:
    return _argon2.hash(password)


# Verified against when the user does not exist, so that an unknown user costs
# the same time as a wrong password (no user enumeration by timing).
_DUMMY_HASH = hash_password("not-a-real-password")


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check of a password against an argon2 or bcrypt hash. CPU-heavy:
    call it off the event loop."""
    if password_hash.startswith(("$2a$", "$2b$", "$2y$")):
        try:
            return bcrypt.checkpw(password.encode(), password_hash.encode())
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


def parse_users(document: object) -> dict[str, User]:
    """Validate a users document (see module docstring)."""
    if not isinstance(document, dict) or not isinstance(document.get("users"), dict):
        raise UserStoreError('users file must be a JSON object {"users": {name: {password_hash, role}}}')
    users = {}
    for name, entry in document["users"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("password_hash"), str):
            raise UserStoreError(f"user {name!r}: password_hash missing")
        users[name] = User(name, entry["password_hash"], str(entry.get("role") or "user"))
    return users


class UserStore:
    """Users from a file (re-read when it changes, as a mounted Secret does) plus
    the optional development user."""

    def __init__(self, *, users_file: str | None, dev_user: bool) -> None:
        self._users_file = users_file
        self._file_users: dict[str, User] = {}
        self._file_stamp: tuple[int, int] | None = None
        self._dev = {DEV_USERNAME: User(DEV_USERNAME, hash_password(DEV_PASSWORD), DEV_ROLE)} if dev_user else {}
        if users_file:
            self._reload()  # fail fast at start-up on a bad file

    def _reload(self) -> None:
        assert self._users_file
        try:
            stat = os.stat(self._users_file)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._file_stamp:
                return
            with open(self._users_file, encoding="utf-8") as f:
                self._file_users = parse_users(json.load(f))
            self._file_stamp = stamp
        except (OSError, ValueError) as e:
            raise UserStoreError(f"cannot read users file {self._users_file}: {e}") from e

    def get(self, username: str) -> User | None:
        if self._users_file:
            self._reload()
        return self._file_users.get(username) or self._dev.get(username)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password matches, else None. Blocking (hashing)."""
        user = self.get(username)
        if user is None:
            verify_password(_DUMMY_HASH, password)
            return None
        return user if verify_password(user.password_hash, password) else None
