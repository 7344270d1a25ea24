"""User store: argon2id and bcrypt hashes, file format, reload, dev user."""
import json
import os
import statistics
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


def test_unknown_user_costs_a_hash_like_a_wrong_password():
    """No user enumeration by timing: an unknown user is verified against a dummy hash."""
    store = users.UserStore(users_file=None, dev_user=True)

    def median_seconds(username):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            assert store.authenticate(username, "wrong") is None
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    unknown, wrong = median_seconds("Nobody"), median_seconds("TestUser")
    assert wrong > 0.01  # a real argon2id verification
    assert 1 / 3 < unknown / wrong < 3  # same work; wide bounds for a busy machine


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
