"""Returning users skip the hash: a Login whose (username, password, stored hash)
passed a real check less than `seconds` ago is answered without hashing again.

What is kept per username is an HMAC-SHA256 of the three, keyed by 32 random bytes
that exist only in this process (never written, gone at restart): the passwords
are not kept, and a digest cannot be checked against a guess without the key. A
wrong password, or a changed users file (another stored hash for that user: a new
password, a removed user), never matches, and falls through to the real check.
The trade-off: for `seconds` after a success, whoever reads the gateway's memory
(key and digests together) can test guesses of that password at HMAC speed instead
of argon2's. 0 seconds turns it off. Event loop only; bounded: least recently used
users first out."""
from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

# Users remembered at most (~150 bytes each).
SIZE = 10_000


class RecentLogins:
    def __init__(self, seconds: float, *, size: int = SIZE, clock: Callable[[], float] = time.monotonic,
                 key: bytes | None = None) -> None:
        self.seconds = seconds  # 0: off
        self._size = size
        self._clock = clock
        self._key = key if key is not None else secrets.token_bytes(32)
        self._entries: collections.OrderedDict[str, tuple[bytes, float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _digest(self, username: str, password: str, stored_hash: str) -> bytes:
        # Length-prefixed, so that no two different triples feed the same bytes.
        message = b"".join(len(p).to_bytes(4, "big") + p
                           for p in (username.encode(), password.encode(), stored_hash.encode()))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def attempt_key(self, username: str, password: str) -> bytes:
        """A key naming (username, password) without holding the password: identical
        Logins in flight at once share one check (login.py)."""
        return self._digest(username, password, "")

    def matches(self, username: str, password: str, stored_hash: str) -> bool:
        """Whether this password passed the real check against this stored hash lately."""
        entry = self._entries.get(username)
        if entry is None:
            return False
        digest, expires = entry
        if expires <= self._clock():
            del self._entries[username]
            return False
        if not hmac.compare_digest(digest, self._digest(username, password, stored_hash)):
            return False
        self._entries.move_to_end(username)
        return True

    def remember(self, username: str, password: str, stored_hash: str) -> None:
        """After a real check passed (and only then)."""
        if self.seconds <= 0:
            return
        self._entries[username] = (self._digest(username, password, stored_hash), self._clock() + self.seconds)
        self._entries.move_to_end(username)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, username: str) -> None:
        self._entries.pop(username, None)
