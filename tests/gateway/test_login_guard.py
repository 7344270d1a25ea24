"""Login admission (loginguard.py) as plain functions on a fake clock: peers,
token buckets, bounded tables, the order of the checks."""
import pytest

from myservice import contract, errors
from myservice_gateway import loginguard
from myservice_gateway.loginguard import BucketPolicy, LoginGuard, LoginLimits, Refusal, Ticket

OFF = BucketPolicy(0, 1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(clock, *, workers=1, queue=4, user=OFF, peer=OFF, table_size=100):
    return LoginGuard(LoginLimits(workers, queue, user, peer, table_size), clock=clock)


@pytest.mark.parametrize("peer,key", [
    ("ipv4:127.0.0.1:5555", "127.0.0.1"),
    ("ipv4:10.1.2.3:1", "10.1.2.3"),
    ("ipv6:[::1]:5555", "::/64"),
    ("ipv6:%5B::1%5D:5555", "::/64"),  # grpc escapes the brackets
    ("ipv6:[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443", "2001:db8:1:2::/64"),
    ("ipv6:[2001:db8:1:2::7]:443", "2001:db8:1:2::/64"),  # same /64: one peer
    ("ipv6:[::ffff:192.0.2.9]:80", "192.0.2.9"),  # IPv4-mapped counts as the IPv4 address
    ("ipv6:[fe80::1%25eth0]:80", "fe80::/64"),  # zone dropped
    ("unix:/run/myservice.sock", "unix"),
    ("unix-abstract:x", "unix"),
    ("ipv4:not-an-ip:5", "ipv4:not-an-ip:5"),
    ("somethingelse", "somethingelse"),
])
def test_peer_key_is_the_address_without_the_port(peer, key):
    assert loginguard.peer_key(peer) == key


def test_username_key_is_fixed_size():
    assert len(loginguard.username_key("a")) == len(loginguard.username_key("x" * 1_000_000)) == 16
    assert loginguard.username_key("alice") != loginguard.username_key("Alice")


def test_token_bucket_refills_steadily_up_to_its_burst():
    policy = BucketPolicy(burst=2, per_second=0.5)
    bucket = loginguard.TokenBucket(2.0, stamp=0.0)
    assert bucket.wait(policy, 0.0) == 0.0
    bucket.add(policy, 0.0, -1.0)
    bucket.add(policy, 0.0, -1.0)
    assert bucket.level(policy, 0.0) == 0.0
    assert bucket.wait(policy, 0.0) == 2.0  # one token per 2 s
    assert bucket.wait(policy, 1.5) == pytest.approx(0.5)
    assert bucket.wait(policy, 2.0) == 0.0
    assert bucket.level(policy, 100.0) == 2.0  # never above the burst
    bucket.add(policy, 10.0, -3.0)  # overdrawn: the debt is waited off
    assert bucket.wait(policy, 10.0) == pytest.approx(4.0)


def test_bucket_table_is_bounded_lru():
    table = loginguard.BucketTable(BucketPolicy(1, 0.001), maxsize=3)
    for key in "abc":
        table.charge(key, 0.0)
    table.wait("a", 0.0)  # reading does not refresh
    table.charge("a", 0.0)  # charging does: b is now the oldest
    table.charge("d", 0.0)
    assert len(table) == 3
    assert table.wait("b", 0.0) == 0.0  # evicted: starts full again
    assert table.wait("a", 0.0) > 0 and table.wait("c", 0.0) > 0 and table.wait("d", 0.0) > 0


def test_disabled_bucket_never_refuses_nor_stores():
    table = loginguard.BucketTable(OFF)
    for _ in range(100):
        table.charge("x", 0.0)
    assert (table.wait("x", 0.0), len(table)) == (0.0, 0)


def test_failures_per_username_are_throttled_successes_are_free():
    clock = Clock()
    g = guard(clock, user=BucketPolicy(burst=2, per_second=0.1))
    for _ in range(5):  # successes cost nothing
        g.finish(g.admit("alice", "p1"), failed=False)
    for _ in range(2):
        g.finish(g.admit("alice", "p1"), failed=True)
    refusal = g.admit("alice", "p2")  # another peer: still the same username
    assert refusal == Refusal(errors.login_throttled(), pytest.approx(10.0))
    assert isinstance(g.admit("bob", "p1"), Ticket)  # another username is not slowed down
    clock.now += 10.0
    assert isinstance(g.admit("alice", "p1"), Ticket)


def test_failures_per_peer_are_throttled_whatever_the_username():
    clock = Clock()
    g = guard(clock, peer=BucketPolicy(burst=3, per_second=1.0))
    for name in ("u1", "u2", "u3"):
        g.finish(g.admit(name, "10.0.0.1"), failed=True)
    refusal = g.admit("valid-user", "10.0.0.1")
    assert (refusal.message, refusal.retry_after) == (contract.LOGIN_THROTTLED, pytest.approx(1.0))
    assert isinstance(g.admit("valid-user", "10.0.0.2"), Ticket)
    clock.now += 0.5
    assert g.admit("u4", "10.0.0.1").retry_after == pytest.approx(0.5)


def test_admitted_attempts_can_overdraw_and_the_debt_is_waited_off():
    clock = Clock()
    g = guard(clock, queue=10, user=BucketPolicy(burst=1, per_second=1.0))
    tickets = [g.admit("alice", f"p{i}") for i in range(3)]  # all admitted: the bucket is full
    assert all(isinstance(t, Ticket) for t in tickets)
    for t in tickets:
        g.finish(t, failed=True)
    assert g.admit("alice", "p9").retry_after == pytest.approx(3.0)  # 1 - 3 = -2 tokens: 3 s to one


def test_queue_bound_answers_busy_at_once_with_a_drain_estimate():
    clock = Clock()
    g = guard(clock, workers=2, queue=1)
    tickets = [g.admit(f"u{i}", f"p{i}") for i in range(3)]
    assert all(isinstance(t, Ticket) for t in tickets) and g.in_flight == 3
    refusal = g.admit("u9", "p9")
    assert refusal == Refusal(errors.login_busy(), pytest.approx(3 * loginguard.INITIAL_HASH_SECONDS / 2))
    g.finish(tickets[0], failed=False, hash_seconds=1.2)  # the estimate follows measured hashes
    assert g.hash_seconds == pytest.approx(0.2 + 0.2 * (1.2 - 0.2))
    assert isinstance(g.admit("u9", "p9"), Ticket)


def test_one_address_is_not_capped_only_failures_and_capacity_refuse():
    # Behind a NAT or a proxy many people share one address: parallel honest Logins
    # from it are all admitted (they wait in line), up to the queue bound.
    clock = Clock()
    g = guard(clock, workers=1, queue=29, user=BucketPolicy(10, 0.1), peer=BucketPolicy(30, 1.0))
    tickets = [g.admit("alice", "10.0.0.1") for _ in range(30)]
    assert all(isinstance(t, Ticket) for t in tickets)
    assert g.admit("bob", "10.0.0.2").message == contract.LOGIN_BUSY  # capacity, not "attempts"
    for t in tickets:
        g.finish(t, failed=False)
    assert g.table_sizes() == (0, 0, 0, 0)  # successes are not counted anywhere


def test_order_of_checks_buckets_then_queue():
    clock = Clock()
    g = guard(clock, workers=1, queue=0, user=BucketPolicy(1, 0.01))
    g.finish(g.admit("alice", "p0"), failed=True)  # alice's bucket is empty now
    held = g.admit("bob", "p1")  # fills the one slot
    assert g.admit("alice", "p2").message == contract.LOGIN_THROTTLED  # alice's bucket, before the queue
    assert g.admit("carol", "p2").message == contract.LOGIN_BUSY
    g.finish(held, failed=False)
    assert g.table_sizes()[:2] == (1, 0)  # peer bucket off: nothing stored


def test_rank_puts_recent_failures_last_then_least_recently_served_first():
    clock = Clock()
    g = guard(clock, queue=100, user=BucketPolicy(10, 0.1), peer=BucketPolicy(30, 1.0))
    flood = [g.admit(f"guess{i}", "10.0.0.66") for i in range(5)]
    honest = g.admit("alice", "10.0.0.7")
    assert g.rank(flood[0]) == g.rank(honest) == (False, 0)  # nobody served, nobody failed yet
    g.turn(flood[0])
    # The flood's address has had a turn: its next Login ranks after the honest one.
    assert g.rank(flood[1]) > g.rank(honest)
    g.finish(flood[0], failed=True)
    g.turn(honest)  # now the honest address had the latest turn...
    assert g.rank(flood[1]) > g.rank(honest)  # ...but the flood's failure counts first
    assert g.rank(flood[1])[0] is True
    clock.now += 30.0  # the bucket has long forgiven it; the order still remembers
    assert g.failures_wait("guess1", "10.0.0.66") == 0 and g.rank(flood[1])[0] is True
    clock.now += loginguard.FAILURE_MEMORY_SECONDS
    assert g.rank(flood[1])[0] is False


def test_rank_holds_back_a_flood_against_one_username_from_many_addresses():
    clock = Clock()
    g = guard(clock, queue=100, user=BucketPolicy(10, 0.1), peer=BucketPolicy(30, 1.0))
    attack = [g.admit("alice", f"10.0.1.{i}") for i in range(4)]
    g.turn(attack[0])
    g.finish(attack[0], failed=True)
    bob = g.admit("bob", "10.0.1.3")  # same address as an attacker, other username
    assert g.rank(attack[1]) > g.rank(bob)
    assert g.rank(attack[3]) > g.rank(bob)


def test_order_stamps_are_bounded():
    clock = Clock()
    g = guard(clock, queue=10_000, table_size=10)
    for i in range(100):
        ticket = g.admit(f"u{i}", f"p{i}")
        g.turn(ticket)
        g.finish(ticket, failed=True)
    assert g.table_sizes()[2:] == (20, 20)  # addresses and usernames, table_size each


def test_in_flight_counts_come_back_to_zero():
    clock = Clock()
    g = guard(clock, queue=100, user=BucketPolicy(100, 1.0), peer=BucketPolicy(100, 1.0))
    tickets = [g.admit(f"u{i % 7}", f"p{i % 3}") for i in range(60)]
    for i, t in enumerate(tickets):
        g.finish(t, failed=bool(i % 2))
    assert g.in_flight == 0
    assert g.table_sizes()[:2] == (7, 3)


def test_recheck_refuses_a_waiting_login_once_failures_have_emptied_its_bucket():
    clock = Clock()
    g = guard(clock, queue=100, peer=BucketPolicy(2, 1.0))
    waiting = [g.admit(f"guess{i}", "10.0.0.66") for i in range(5)]  # all admitted before any failure
    assert g.recheck(waiting[2]) is None
    g.finish(waiting[0], failed=True)
    g.finish(waiting[1], failed=True)
    refusal = g.recheck(waiting[2])
    assert (refusal.message, refusal.retry_after) == (contract.LOGIN_THROTTLED, pytest.approx(1.0))
    assert g.recheck(g.admit("alice", "10.0.0.7")) is None  # another address, another username
    clock.now += 1.0
    assert g.recheck(waiting[2]) is None
