"""Who may hash a password, and in what order: Login's admission, decided before
any hashing.

Password hashing is the gateway's one deliberately expensive operation (argon2id:
about 0.1-0.2 s of a core and 64 MiB per hash). Every Login asks
`LoginGuard.admit` first; it costs a few dictionary look-ups and answers one of:

- a `Ticket`: go on and wait in line for a hashing thread (hashpool.py); hand the
  ticket back to `finish` when the hash is done (or was dropped), saying whether
  the attempt failed;
- a `Refusal` (message + seconds to wait), answered at once with RESOURCE_EXHAUSTED
  and a RetryInfo, in this order of checks:
  1. the client address's or the username's failure bucket is empty: each failed
     attempt takes a token from both, the bucket refills at a steady rate, so
     repeated failures are slowed down while successes cost nothing. Attempts
     already admitted may overdraw a bucket (at most by the number in flight); the
     debt is then waited off. "too many login attempts" means exactly this, and
     `recheck` asks it again when a waiting Login's turn to hash comes;
  2. `hash_workers + queue` Logins are already hashing or waiting: "too many logins
     in progress" (capacity, nothing else).

Honest load is queued, not refused: there is no cap per address (behind a NAT, a
port-forward or a proxy many people share one). Instead the line is fair: `rank`
orders waiting Logins so that those whose address or username failed within the
last FAILURE_MEMORY_SECONDS come after those that did not (the buckets forgive a
failure within a second or so, too soon to tell a guesser from a person), and among
equals the address and the username served least recently come first; so a flood
from one address, or against one username, waits behind everyone else's turns
instead of taking them.

Buckets and turn stamps live in bounded LRU tables: a flood of made-up usernames or
addresses evicts the least recently seen entries (they start afresh) instead of
growing memory. Usernames are keyed by a 16-byte digest, so a huge username costs
no more memory than a short one.

Pure logic: time comes from an injected clock, the module does no I/O.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import ipaddress
import time
import urllib.parse
from collections.abc import Callable

from myservice import errors

# An IPv6 client usually holds a whole /64: treat it as one peer, or an attacker
# could rotate through 2**64 addresses, each with a fresh bucket.
IPV6_PEER_PREFIX = 64
# What unix-socket peers share: they are all this machine.
LOCAL_PEER = "unix"
DEFAULT_TABLE_SIZE = 10_000
# Until the first hash is measured, how long one is assumed to take.
INITIAL_HASH_SECONDS = 0.2
# Weight of the newest hash time in the running estimate.
HASH_SECONDS_SMOOTHING = 0.2
# How long a failure sends its address's and its username's next Logins behind those
# of addresses and usernames that did not fail (the fair order, LoginGuard.rank).
FAILURE_MEMORY_SECONDS = 60.0


def peer_key(peer: str) -> str:
    """The address part of grpc's context.peer(), what limits are counted per:
    'ipv4:10.0.0.7:5555' -> '10.0.0.7'; 'ipv6:[2001:db8::7]:5555' -> '2001:db8::/64';
    an IPv4-mapped IPv6 address counts as the IPv4 one; unix sockets -> 'unix'.
    Anything unrecognised is its own key."""
    kind, _, rest = peer.partition(":")
    if kind in ("unix", "unix-abstract"):
        return LOCAL_PEER
    rest = urllib.parse.unquote(rest)  # grpc writes '[' and ']' as %5B and %5D
    if kind == "ipv4":
        host = rest.rpartition(":")[0]
    elif kind == "ipv6" and rest.startswith("["):
        host = rest[1:rest.find("]")]
    else:
        return peer
    try:
        address = ipaddress.ip_address(host.partition("%")[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return peer
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PEER_PREFIX), strict=False))
    return str(address)


def username_key(username: str) -> bytes:
    return hashlib.blake2b(username.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclasses.dataclass(frozen=True)
class BucketPolicy:
    """A token bucket: `burst` tokens when full, refilled at `per_second`. burst 0 = off."""
    burst: int
    per_second: float

    @property
    def enabled(self) -> bool:
        return self.burst > 0


class TokenBucket:
    """Tokens as of `stamp`; the level at a later time is computed, never ticked."""
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp

    def level(self, policy: BucketPolicy, now: float) -> float:
        return min(float(policy.burst), self.tokens + max(0.0, now - self.stamp) * policy.per_second)

    def wait(self, policy: BucketPolicy, now: float) -> float:
        """Seconds until one whole token is there (0: there is one now)."""
        missing = 1.0 - self.level(policy, now)
        return 0.0 if missing <= 0 else missing / policy.per_second

    def add(self, policy: BucketPolicy, now: float, tokens: float) -> None:
        self.tokens = min(float(policy.burst), self.level(policy, now) + tokens)
        self.stamp = now


class BucketTable:
    """Token buckets by key, at most `maxsize` of them (least recently used go first;
    an evicted key starts full again)."""

    def __init__(self, policy: BucketPolicy, maxsize: int = DEFAULT_TABLE_SIZE) -> None:
        self.policy = policy
        self._maxsize = maxsize
        self._buckets: collections.OrderedDict[object, TokenBucket] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: object, now: float) -> float:
        """Seconds until `key` has a whole token again (0: now): until then it is refused."""
        if not self.policy.enabled:
            return 0.0
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait(self.policy, now)

    def charge(self, key: object, now: float) -> None:
        """Take one token (a failure), below zero if need be."""
        if not self.policy.enabled:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(float(self.policy.burst), now)
            while len(self._buckets) > self._maxsize:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        bucket.add(self.policy, now, -1.0)


@dataclasses.dataclass(frozen=True)
class LoginLimits:
    hash_workers: int
    queue: int  # Logins that may wait for a worker
    user_failures: BucketPolicy
    peer_failures: BucketPolicy
    table_size: int = DEFAULT_TABLE_SIZE

    @property
    def capacity(self) -> int:
        return self.hash_workers + self.queue


@dataclasses.dataclass(frozen=True)
class Ticket:
    """An admitted Login: what finish() must release."""
    user: bytes
    peer: str


@dataclasses.dataclass(frozen=True)
class Refusal:
    error: errors.ContractError  # answered with a RetryInfo of retry_after
    retry_after: float  # seconds

    @property
    def message(self) -> str:
        return self.error.message


class LoginGuard:
    """Admission of Logins to password hashing (see the module docstring). Not
    thread-safe: call it from the event loop only."""

    def __init__(self, limits: LoginLimits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._users = BucketTable(limits.user_failures, limits.table_size)
        self._peers = BucketTable(limits.peer_failures, limits.table_size)
        # When each address and each username last got a hashing thread (a turn
        # number): the fair order's memory, bounded like the buckets.
        self._turns = 0
        self._last_turn: collections.OrderedDict[object, int] = collections.OrderedDict()
        self._failed_at: collections.OrderedDict[object, float] = collections.OrderedDict()
        self.in_flight = 0
        self.hash_seconds = INITIAL_HASH_SECONDS

    def failures_wait(self, username: str, peer: str) -> float:
        """Seconds until this username and this address may try again after their
        failures (0: now). A Login answered without hashing (a returning user) is
        still held to it: else a throttled guesser would learn a right guess at once."""
        now = self._clock()
        return max(self._peers.wait(peer, now), self._users.wait(username_key(username), now))

    def recheck(self, ticket: Ticket) -> Refusal | None:
        """When an admitted Login's turn to hash comes: refused if failures while it
        waited have emptied its address's or its username's bucket (a storm from one
        address, all admitted before its first failure, is not hashed to the end)."""
        now = self._clock()
        wait = max(self._peers.wait(ticket.peer, now), self._users.wait(ticket.user, now))
        return Refusal(errors.login_throttled(), wait) if wait > 0 else None

    def admit(self, username: str, peer: str) -> Ticket | Refusal:
        wait = self.failures_wait(username, peer)
        if wait > 0:
            return Refusal(errors.login_throttled(), wait)
        if self.in_flight >= self.limits.capacity:
            return Refusal(errors.login_busy(), self.drain_seconds())
        self.in_flight += 1
        return Ticket(username_key(username), peer)

    def rank(self, ticket: Ticket) -> tuple[bool, int]:
        """The order of waiting Logins, lowest first (ties: the newest first, hashpool.py):
        whether the address or the username failed within FAILURE_MEMORY_SECONDS, then
        the later of the turns they last had (never: 0)."""
        since = self._clock() - FAILURE_MEMORY_SECONDS
        failed = any(self._failed_at.get(key, since) > since for key in (("p", ticket.peer), ("u", ticket.user)))
        return failed, max(self._last_turn.get(("p", ticket.peer), 0), self._last_turn.get(("u", ticket.user), 0))

    def turn(self, ticket: Ticket) -> None:
        """The ticket's Login got a hashing thread: its address and its username go to
        the back of the fair order."""
        self._turns += 1
        for key in (("p", ticket.peer), ("u", ticket.user)):
            self._last_turn[key] = self._turns
            self._last_turn.move_to_end(key)
        _bound(self._last_turn, 2 * self.limits.table_size)

    def finish(self, ticket: Ticket, *, failed: bool, hash_seconds: float | None = None) -> None:
        """The ticket's hash ended (or never ran); a failed attempt is charged to its
        username and its address."""
        self.in_flight -= 1
        if failed:
            now = self._clock()
            self._peers.charge(ticket.peer, now)
            self._users.charge(ticket.user, now)
            for key in (("p", ticket.peer), ("u", ticket.user)):
                self._failed_at[key] = now
                self._failed_at.move_to_end(key)
            _bound(self._failed_at, 2 * self.limits.table_size)
        if hash_seconds is not None:
            self.hash_seconds += HASH_SECONDS_SMOOTHING * (hash_seconds - self.hash_seconds)

    def drain_seconds(self) -> float:
        """About when the hashes queued or running now will have ended: a retry
        then finds room, and retries told this spread out instead of returning at once."""
        return max(1, self.in_flight) * self.hash_seconds / self.limits.hash_workers

    def table_sizes(self) -> tuple[int, int, int, int]:
        """(usernames, addresses, turn stamps, failure stamps): for tests and logs."""
        return len(self._users), len(self._peers), len(self._last_turn), len(self._failed_at)


def _bound(table: collections.OrderedDict, size: int) -> None:
    while len(table) > size:
        table.popitem(last=False)
