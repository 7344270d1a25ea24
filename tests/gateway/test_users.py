"""User store: argon2id and bcrypt hashes, file format, reload, dev user; the equal
work of every refusal (counted by kind), the long-input rules, plain-password entries."""
import json
import os
import collections
import threading
import time

import argon2
import bcrypt
import pytest

from myservice_gateway import users


def write(path, document):
    path.write_text(json.dumps(document))
    return str(path)


def test_argon2_and_bcrypt_hashes_verify():
    h = users.hash_password("pw")
    assert h.startswith("$argon2id$")
    assert users.verify_password(h, "pw") is True
    assert users.verify_password(h, "PW") is False
    b = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    assert users.verify_password(b, "pw") is True
    assert users.verify_password(b, "nope") is False
    assert users.verify_password("garbage", "pw") is False


def test_dev_user_only_when_enabled():
    assert users.UserStore(users_file=None, dev_user=True).authenticate("TestUser", "TestPassword").role == "user"
    assert users.UserStore(users_file=None, dev_user=False).authenticate("TestUser", "TestPassword") is None


def test_file_users_and_reload(tmp_path):
    path = write(tmp_path / "u.json", {"users": {"alice": {"password_hash": users.hash_password("a"), "role": "admin"}}})
    store = users.UserStore(users_file=path, dev_user=False)
    assert store.authenticate("alice", "a") == users.User("alice", store.get("alice").password_hash, "admin")
    assert store.authenticate("alice", "b") is None
    assert store.authenticate("bob", "a") is None
    write(tmp_path / "u.json", {"users": {"bob": {"password_hash": users.hash_password("b")}}})
    assert store.authenticate("bob", "b").role == "user"  # role defaults to user
    assert store.get("alice") is None


def test_bad_file_fails_at_start_and_later(tmp_path):
    with pytest.raises(users.UserStoreError, match="password_hash missing"):
        users.UserStore(users_file=write(tmp_path / "u.json", {"users": {"x": {}}}), dev_user=False)
    with pytest.raises(users.UserStoreError, match="cannot read users file"):
        users.UserStore(users_file=str(tmp_path / "missing.json"), dev_user=False)
    path = write(tmp_path / "ok.json", {"users": {}})
    store = users.UserStore(users_file=path, dev_user=False)
    (tmp_path / "ok.json").write_text("{not json")
    with pytest.raises(users.UserStoreError):
        store.get("x")


@pytest.mark.parametrize("kind", [argon2.Type.ID, argon2.Type.I, argon2.Type.D])
def test_argon2_verified_on_one_thread_agrees_with_the_library(kind):
    hasher = argon2.PasswordHasher(type=kind, time_cost=2, memory_cost=1024, parallelism=3)
    for password in ("pw", "é-ünïcode", ""):
        h = hasher.hash(password)
        assert hasher.verify(h, password) and users.verify_password(h, password) is True
        assert users.verify_password(h, password + "x") is False
    h = hasher.hash("pw")
    assert users.verify_password(h[:-4] + "AAAA", "pw") is False  # another digest
    assert users.verify_password(h.rsplit("$", 1)[0] + "$!!!", "pw") is False  # not base64
    assert users.verify_password("$argon2id$v=19$m=1024,t=2,p=3$bad", "pw") is False


def test_argon2_verification_uses_only_the_calling_thread():
    h = users.hash_password("pw")  # the library's defaults: 4 lanes
    most = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            most[0] = max(most[0], len(os.listdir("/proc/self/task")))  # native threads too
            time.sleep(0.002)

    before = len(os.listdir("/proc/self/task"))
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert users.verify_password(h, "pw")
    finally:
        done.set()
        watcher.join()
    assert most[0] <= before + 1  # the watcher itself, and no hashing threads


# --- equal work for every refusal -----------------------------------------------------

ARGON2_HASH = users.hash_password("a-pass")            # the library's defaults, as every hash we make
BCRYPT_HASH = bcrypt.hashpw(b"b-pass", bcrypt.gensalt(rounds=4)).decode()
BCRYPT_DUMMY = users.bcrypt_dummy(4)
ALICE = users.User("alice", ARGON2_HASH, "user")     # argon2
BOB = users.User("bob", BCRYPT_HASH, "user")         # bcrypt
LONG = "p" * (users.MAX_PASSWORD_BYTES + 1)


def kinds(plan):
    return [(c.kind, c.real) for c in plan]


@pytest.mark.parametrize("user, password, dummy, expected", [
    # successes possible: the real check first, then the padding of a refusal
    (ALICE, "x", None, [("argon2", True)]),
    (ALICE, "x", BCRYPT_DUMMY, [("argon2", True), ("bcrypt", False)]),
    (BOB, "x", BCRYPT_DUMMY, [("bcrypt", True), ("argon2", False)]),
    (BOB, "x" * 72, BCRYPT_DUMMY, [("bcrypt", True), ("argon2", False)]),
    (ALICE, "x" * users.MAX_PASSWORD_BYTES, None, [("argon2", True)]),
    # no success possible: dummies only
    (None, "x", None, [("argon2", False)]),
    (None, "x", BCRYPT_DUMMY, [("argon2", False), ("bcrypt", False)]),
    (BOB, "x" * 73, BCRYPT_DUMMY, [("argon2", False), ("bcrypt", False)]),  # bcrypt would read 72 bytes
    (BOB, "é" * 37, BCRYPT_DUMMY, [("argon2", False), ("bcrypt", False)]),  # 74 bytes in UTF-8
    (ALICE, LONG, None, [("argon2", False)]),
    (ALICE, LONG, BCRYPT_DUMMY, [("argon2", False), ("bcrypt", False)]),
    (BOB, LONG, BCRYPT_DUMMY, [("argon2", False), ("bcrypt", False)]),
    (users.User("n" * 1025, ARGON2_HASH, "user"), "x", None, [("argon2", False)]),
    (users.User("garbage", "not-a-hash", "user"), "x", BCRYPT_DUMMY, [("argon2", False), ("bcrypt", False)]),
])
def test_which_checks_a_login_runs(user, password, dummy, expected):
    plan = users.checks(user, password, bcrypt_dummy=dummy)
    assert kinds(plan) == expected
    # a refusal runs every check: one argon2, plus one bcrypt when the store has bcrypt users
    assert collections.Counter(c.kind for c in plan) == collections.Counter(
        ["argon2"] + (["bcrypt"] if dummy else []))
    assert [c.password_hash for c in plan if c.real] == ([user.password_hash] if expected[0][1] else [])
    assert all(c.password_hash in (users._DUMMY_HASH, dummy) for c in plan if not c.real)


class CountingVerifier:
    """The store's verifier: records (kind, stored hash, password) and answers from
    the pairs it was told match (no hashing: the count is the point here)."""

    def __init__(self, matching):
        self.matching, self.calls = set(matching), []

    def __call__(self, password_hash, password):
        self.calls.append((users.hash_kind(password_hash), password_hash, password))
        return (password_hash, password) in self.matching

    def take(self):
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def mixed_store(tmp_path):
    path = write(tmp_path / "u.json", {"users": {"alice": {"password_hash": ARGON2_HASH},
                                                 "bob": {"password_hash": BCRYPT_HASH}}})
    verify = CountingVerifier({(ARGON2_HASH, "a-pass"), (BCRYPT_HASH, "b-pass")})
    return users.UserStore(users_file=path, dev_user=False, verify=verify), verify


REFUSALS = {
    "unknown user": ("nobody", "a-pass"),
    "wrong password, argon2 user": ("alice", "wrong"),
    "wrong password, bcrypt user": ("bob", "wrong"),
    "73 bytes, bcrypt user (its first 72 are right)": ("bob", "b-pass" + "x" * 67),
    "2000 bytes, argon2 user": ("alice", "a-pass" * 334),
    "2000 bytes, bcrypt user": ("bob", "b" * 2000),
    "2000-byte username": ("u" * 2000, "a-pass"),
}


@pytest.mark.parametrize("path", REFUSALS)
def test_every_refusal_costs_one_argon2_and_one_bcrypt_check_when_the_store_has_bcrypt(mixed_store, path):
    store, verify = mixed_store
    username, password = REFUSALS[path]
    assert store.authenticate(username, password) is None
    calls = verify.take()
    assert collections.Counter(kind for kind, _, _ in calls) == {"argon2": 1, "bcrypt": 1}
    if users.credentials_too_long(username, password) or len(password) > 72 and username == "bob":
        # never hashed against the real user's hash; an over-long password is not even read
        assert {h for _, h, _ in calls} == {users._DUMMY_HASH, users.bcrypt_dummy(4)}
    assert all(len(p.encode()) <= users.MAX_PASSWORD_BYTES for _, _, p in calls)
    assert all(len(p.encode()) <= 72 for kind, _, p in calls if kind == "bcrypt")


def test_successes_are_not_padded(mixed_store):
    store, verify = mixed_store
    assert store.authenticate("alice", "a-pass").username == "alice"
    assert [kind for kind, _, _ in verify.take()] == ["argon2"]
    assert store.authenticate("bob", "b-pass").username == "bob"
    assert [kind for kind, _, _ in verify.take()] == ["bcrypt"]


def test_without_bcrypt_users_a_refusal_is_one_argon2_check_as_a_success(tmp_path):
    path = write(tmp_path / "u.json", {"users": {"alice": {"password_hash": ARGON2_HASH}}})
    verify = CountingVerifier({(ARGON2_HASH, "a-pass")})
    store = users.UserStore(users_file=path, dev_user=True, verify=verify)  # the dev user is argon2 too
    for username, password in [("nobody", "x"), ("alice", "wrong"), ("alice", LONG), ("n" * 1025, "x"),
                               ("alice", "a-pass")]:
        store.authenticate(username, password)
        assert [kind for kind, _, _ in verify.take()] == ["argon2"], (username[:10], password[:10])
    store.refuse()
    assert [kind for kind, _, _ in verify.take()] == ["argon2"]


def test_refuse_is_the_work_of_a_refusal_without_the_credentials(mixed_store):
    store, verify = mixed_store
    assert store.refuse() is None
    assert sorted((kind, h) for kind, h, _ in verify.take()) == [
        ("argon2", users._DUMMY_HASH), ("bcrypt", users.bcrypt_dummy(4))]


def test_the_bcrypt_dummy_has_the_stores_highest_bcrypt_cost(tmp_path):
    cost5 = bcrypt.hashpw(b"c", bcrypt.gensalt(rounds=5)).decode()
    path = write(tmp_path / "u.json", {"users": {"bob": {"password_hash": BCRYPT_HASH},
                                                 "carol": {"password_hash": cost5}}})
    verify = CountingVerifier(())
    store = users.UserStore(users_file=path, dev_user=False, verify=verify)
    store.authenticate("nobody", "x")
    assert sorted(users.bcrypt_cost(h) or 0 for _, h, _ in verify.take()) == [0, 5]
    write(tmp_path / "u.json", {"users": {"alice": {"password_hash": ARGON2_HASH}}})  # bcrypt gone
    os.utime(path, ns=(1, 1))
    store.authenticate("nobody", "x")
    assert [kind for kind, _, _ in verify.take()] == ["argon2"]


# --- long input ---------------------------------------------------------------------------

def test_long_credentials_are_counted_in_utf8_bytes():
    assert not users.credentials_too_long("u" * 1024, "p" * 1024)
    assert users.credentials_too_long("u" * 1025, "p")
    assert users.credentials_too_long("u", "p" * 1025)
    assert users.credentials_too_long("u", "é" * 513)  # 1026 bytes
    assert not users.credentials_too_long("é" * 512, "é" * 512)


def test_bcrypt_never_matches_over_72_bytes_and_never_truncates():
    h = bcrypt.hashpw(b"x" * 72, bcrypt.gensalt(rounds=4)).decode()
    assert users.verify_password(h, "x" * 72) is True
    assert users.verify_password(h, "x" * 73) is False  # bcrypt would read the same 72 bytes
    store = users.UserStore(users_file=None, dev_user=False)
    store._file_users = {"bob": users.User("bob", h, "user")}
    assert store.authenticate("bob", "x" * 72).username == "bob"
    assert store.authenticate("bob", "x" * 73) is None


def test_argon2_users_may_have_long_passwords_up_to_the_limit(tmp_path):
    password = "é" * 512  # 1024 bytes
    path = write(tmp_path / "u.json", {"users": {"alice": {"password": password}}})
    store = users.UserStore(users_file=path, dev_user=False)
    assert store.authenticate("alice", password).username == "alice"
    assert store.authenticate("alice", password + "x") is None


# --- plain-password entries -----------------------------------------------------------------

def test_plain_password_entries_are_argon2id_hashed_in_memory(tmp_path):
    path = write(tmp_path / "u.json", {"users": {"alice": {"password": "a-pass", "role": "admin"},
                                                 "bob": {"password_hash": BCRYPT_HASH}}})
    store = users.UserStore(users_file=path, dev_user=False)
    alice = store.get("alice")
    assert alice.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and "a-pass" not in alice.password_hash
    assert store.authenticate("alice", "a-pass") == alice and alice.role == "admin"
    assert store.authenticate("alice", "wrong") is None
    assert store.authenticate("bob", "b-pass").username == "bob"


@pytest.mark.parametrize("entry, message", [
    ({"password": "p", "password_hash": ARGON2_HASH}, "not both"),
    ({"password": ""}, "password is empty"),
    ({"password": "p" * 1025}, "longer than 1024 bytes"),
    ({"password": 7}, "password must be a string"),
    ({"role": "user"}, "password or password_hash missing"),
])
def test_bad_plain_password_entries(tmp_path, entry, message):
    with pytest.raises(users.UserStoreError, match=message):
        users.UserStore(users_file=write(tmp_path / "u.json", {"users": {"x": entry}}), dev_user=False)


def test_a_reload_hashes_only_the_entries_that_changed(tmp_path, monkeypatch):
    hashed = []
    real = users.hash_password
    monkeypatch.setattr(users, "hash_password", lambda p: hashed.append(p) or real(p))
    path = tmp_path / "u.json"
    write(path, {"users": {"alice": {"password": "a1"}, "bob": {"password": "b1"}}})
    store = users.UserStore(users_file=str(path), dev_user=False)
    assert sorted(hashed) == ["a1", "b1"]
    alice_hash = store.get("alice").password_hash

    write(path, {"users": {"alice": {"password": "a1", "role": "admin"}, "bob": {"password": "b2"},
                           "carol": {"password": "a1"}}})
    os.utime(path, ns=(2, 2))
    assert store.get("alice").role == "admin"
    assert sorted(hashed) == ["a1", "a1", "b1", "b2"]  # bob changed, carol is new (same password, own salt)
    assert store.get("alice").password_hash == alice_hash  # unchanged: the same hash (recentlogins.py keeps it)
    assert store.get("carol").password_hash != alice_hash
    assert store.authenticate("bob", "b2") and not store.authenticate("bob", "b1")

    hashed.clear()
    os.utime(path, ns=(3, 3))  # re-read, nothing changed: no hash at all
    assert store.get("bob") is not None and store._file_stamp[0] == 3
    assert hashed == []
    write(path, {"users": {"bob": {"password": "b2"}}})
    os.utime(path, ns=(4, 4))
    assert store.get("alice") is None and hashed == []
    assert len(store._plain_hashes) == 1  # only the current file's entries are remembered


# --- myservice hash-password -------------------------------------------------------------

def test_hash_password_command_reads_stdin_and_prints_an_argon2id_hash(monkeypatch):
    import io

    from myservice_gateway import cli

    out, err = io.StringIO(), io.StringIO()
    assert cli.hash_password_command(io.StringIO("s3cret pass\n"), out, err) == 0
    printed = out.getvalue().strip()
    assert printed.startswith("$argon2id$") and users.verify_password(printed, "s3cret pass")
    assert users.verify_password(printed, "s3cret pass\n") is False
    for bad in ("", "\n", "p" * 1025 + "\n"):
        out, err = io.StringIO(), io.StringIO()
        assert cli.hash_password_command(io.StringIO(bad), out, err) == 2
        assert out.getvalue() == "" and "1..1024 bytes" in err.getvalue()
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    monkeypatch.setattr("sys.stdout", out := io.StringIO())
    assert cli.main(["hash-password"]) == 0 and out.getvalue().startswith("$argon2id$")
