"""Returning users skip the hash (recentlogins.py): the digest's rules directly,
then through a real gateway, counting the real password checks."""
import json

import grpc
import pytest

from myservice_gateway import users
from myservice_gateway.recentlogins import RecentLogins

from ..conftest import login_outcome

DENIED = (grpc.StatusCode.PERMISSION_DENIED, "invalid username or password")
THROTTLED = (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many login attempts, retry later")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_remembered_password_matches_only_the_same_user_password_and_stored_hash():
    recent = RecentLogins(300)
    recent.remember("alice", "pw", "$argon2id$h1")
    assert recent.matches("alice", "pw", "$argon2id$h1")
    assert not recent.matches("alice", "pw2", "$argon2id$h1")  # another password
    assert not recent.matches("alice", "pw", "$argon2id$h2")  # the users file changed her hash
    assert not recent.matches("bob", "pw", "$argon2id$h1")  # another user
    # the fields are length-prefixed: moving bytes between them makes another digest
    recent.remember("ab", "c", "h")
    assert not recent.matches("a", "bc", "h")


def test_remembered_for_its_seconds_then_forgotten():
    clock = Clock()
    recent = RecentLogins(300, clock=clock)
    recent.remember("alice", "pw", "h")
    clock.now += 299
    assert recent.matches("alice", "pw", "h")
    clock.now += 1
    assert not recent.matches("alice", "pw", "h") and len(recent) == 0


def test_off_remembers_nothing():
    recent = RecentLogins(0)
    recent.remember("alice", "pw", "h")
    assert not recent.matches("alice", "pw", "h") and len(recent) == 0


def test_bounded_least_recently_used_out():
    recent = RecentLogins(300, size=2)
    for name in ("a", "b"):
        recent.remember(name, "pw", "h")
    assert recent.matches("a", "pw", "h")  # a is now the most recent
    recent.remember("c", "pw", "h")
    assert (recent.matches("a", "pw", "h"), recent.matches("b", "pw", "h"), recent.matches("c", "pw", "h")) == (
        True, False, True)


def test_digests_are_keyed_per_process():
    one, two = RecentLogins(300), RecentLogins(300)
    one.remember("alice", "pw", "h")
    assert one._entries["alice"][0] != two._digest("alice", "pw", "h")


# --- through a real gateway ------------------------------------------------------------

@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": {"alice": {"password_hash": users.hash_password("a-pass")}}}))
    return path


@pytest.fixture
def checks(monkeypatch):
    """The real password checks made, as (stored hash, password). They are counted in this
    process: the gateways of these tests hash on their threads (login_hash_process=False),
    not in a child process (hashproc.py), which this patch would not reach."""
    made = []
    real = users.verify_password

    def counted(password_hash, password):
        made.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(users, "verify_password", counted)
    return made


async def test_a_returning_user_is_answered_without_a_hash(make_gateway, users_file, checks):
    gw = await make_gateway(users_file=str(users_file), dev_user=False, login_hash_process=False)
    assert [await login_outcome(gw, "alice", "a-pass", f"s{i}") for i in range(5)] == ["user"] * 5
    assert checks == ["a-pass"]  # one real check, four answered from memory
    assert gw.gateway.login.guard.in_flight == 0


async def test_a_wrong_password_is_always_checked_for_real(make_gateway, users_file, checks):
    gw = await make_gateway(users_file=str(users_file), dev_user=False, login_hash_process=False)
    assert await login_outcome(gw, "alice", "a-pass") == "user"
    assert await login_outcome(gw, "alice", "wrong") == DENIED
    assert checks == ["a-pass", "wrong"]
    assert await login_outcome(gw, "alice", "a-pass") == "user"  # still remembered
    assert checks == ["a-pass", "wrong"]


async def test_a_changed_users_file_is_checked_for_real(make_gateway, users_file, checks):
    gw = await make_gateway(users_file=str(users_file), dev_user=False, login_hash_process=False)
    assert await login_outcome(gw, "alice", "a-pass") == "user"
    users_file.write_text(json.dumps({"users": {"alice": {"password_hash": users.hash_password("new-pass")}}}))
    assert await login_outcome(gw, "alice", "a-pass") == DENIED  # her old password, remembered, no longer works
    assert await login_outcome(gw, "alice", "new-pass") == "user"
    users_file.write_text(json.dumps({"users": {}}))  # removed
    assert await login_outcome(gw, "alice", "new-pass") == DENIED
    assert checks == ["a-pass", "a-pass", "new-pass", "new-pass"]  # the last: the unknown user's dummy hash


async def test_a_throttled_username_gets_no_answer_from_memory(make_gateway, users_file, checks):
    """Else a throttled guesser would learn a right guess at once: refused like any other Login."""
    gw = await make_gateway(users_file=str(users_file), dev_user=False, login_hash_process=False, login_user_failure_burst=1,
                            login_user_failures_per_minute=0.01)
    assert await login_outcome(gw, "alice", "a-pass") == "user"
    assert await login_outcome(gw, "alice", "guess") == DENIED
    assert await login_outcome(gw, "alice", "a-pass") == THROTTLED
    assert checks == ["a-pass", "guess"]


async def test_off_hashes_every_time(make_gateway, users_file, checks):
    gw = await make_gateway(users_file=str(users_file), dev_user=False, login_hash_process=False, login_cache_seconds=0)
    assert [await login_outcome(gw, "alice", "a-pass", f"s{i}") for i in range(3)] == ["user"] * 3
    assert checks == ["a-pass"] * 3
