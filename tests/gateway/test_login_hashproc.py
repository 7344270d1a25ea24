"""Password checks in child processes (hashproc.py), with real processes: the same
answers as on a thread, the child in a session of its own at the hashing nice
value (process and autogroup), a dead child replaced, a child that cannot start
falling back to the calling thread, children ended with the gateway."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import bcrypt
import pytest

from myservice_gateway import hashproc, users
from myservice_gateway.hashproc import CheckerProcesses

from ..conftest import eventually, login_outcome, pid_alive, wait_until

ARGON2_HASH = users.hash_password("right")
BCRYPT_HASH = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture
def checker():
    c = CheckerProcesses(size=2, nice=7)
    yield c
    c.close()


def test_same_answers_as_on_a_thread(checker):
    cases = [(ARGON2_HASH, "right"), (ARGON2_HASH, "wrong"), (BCRYPT_HASH, "right"), (BCRYPT_HASH, "wrong"),
             (BCRYPT_HASH, "right" + "x" * 80), ("not a hash", "right"), (ARGON2_HASH, 'a\nb"\\é\u2028'),
             (users.hash_password('a\nb"\\é\u2028'), 'a\nb"\\é\u2028')]
    assert [checker.verify(h, p) for h, p in cases] == [users.verify_password(h, p) for h, p in cases]
    assert [checker.verify(h, p) for h, p in cases] == [True, False, True, False, False, False, False, True]
    assert len(checker.pids()) == 1  # one caller at a time: one child was enough


def test_the_child_has_its_own_session_at_the_hashing_nice_value(checker):
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert checker.verify(ARGON2_HASH, "right")
    [pid] = checker.pids()
    assert pid != os.getpid() and os.getsid(pid) == pid
    assert os.getpriority(os.PRIO_PROCESS, pid) == max(7, os.getpriority(os.PRIO_PROCESS, 0))
    autogroup = Path(f"/proc/{pid}/autogroup")
    if autogroup.exists():  # a kernel with autogroup scheduling
        assert autogroup.read_text().split()[-2:] == ["nice", "7"]
    assert os.getpriority(os.PRIO_PROCESS, 0) == ours  # the gateway's own priority is untouched


def test_a_dead_child_is_replaced(checker, caplog):
    assert checker.verify(ARGON2_HASH, "right")
    [first] = checker.pids()
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(first))
    assert checker.verify(ARGON2_HASH, "right") and not checker.verify(ARGON2_HASH, "wrong")
    assert checker.pids() != [first] and len(checker.pids()) == 1
    assert "starting another" in caplog.text


def test_a_child_that_cannot_start_leaves_the_check_to_the_thread(monkeypatch, caplog):
    monkeypatch.setattr(hashproc.sys, "executable", "/nonexistent/python")
    c = CheckerProcesses(size=1, nice=7)
    try:
        assert c.verify(ARGON2_HASH, "right") and not c.verify(ARGON2_HASH, "wrong")
        assert c.pids() == []
        assert "checking on the hashing thread" in caplog.text
    finally:
        c.close()


def test_close_ends_the_children():
    c = CheckerProcesses(size=2, nice=7)
    assert c.verify(ARGON2_HASH, "right")
    [pid] = c.pids()
    c.close()
    assert not pid_alive(pid) and c.pids() == []
    assert not c.verify(ARGON2_HASH, "right")  # a check after close: no child, no answer anyone reads


def test_the_child_dies_with_its_gateway():
    script = textwrap.dedent("""
        import time
        from myservice_gateway import users
        from myservice_gateway.hashproc import CheckerProcesses
        c = CheckerProcesses(size=1, nice=7)
        assert c.verify(users.hash_password("x"), "x")
        print(c.pids()[0], flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert pid_alive(child)
        parent.kill()
        parent.wait()
        assert wait_until(lambda: not pid_alive(child)), "the checking process outlived its gateway"
    finally:
        if parent.poll() is None:
            parent.kill()


async def test_the_gateway_checks_in_a_child_by_default_and_on_its_threads_when_told(make_gateway):
    on = await make_gateway()
    assert await login_outcome(on, "TestUser", "TestPassword") == "user"
    [pid] = on.gateway.login.hash_processes()
    assert os.getsid(pid) == pid and await login_outcome(on, "TestUser", "nope") != "user"
    off = await make_gateway(login_hash_process=False)
    assert await login_outcome(off, "TestUser", "TestPassword") == "user"
    assert off.gateway.login.hash_processes() == []
    on.gateway.login.close()  # what Gateway.stop does last
    assert await eventually(lambda: not pid_alive(pid))
