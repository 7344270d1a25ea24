"""Removed users lose their sessions (userwatch.py): through a real gateway with real
instance processes, a user taken out of the users file is refused on every call
and their instances end; others go on; a user put back logs in afresh."""
import asyncio
import json

import grpc
import pytest

from myservice import contract
from myservice_gateway import userwatch
from myservice_gateway.users import hash_password

from ..conftest import echo, error_of, eventually, md, pid_alive

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}


def write_users(path, names):
    path.write_text(json.dumps({"users": {n: {"password_hash": HASHES[n], "role": "user"} for n in names}}))


HASHES = {name: hash_password(password) for name, password in PASSWORDS.items()}


@pytest.fixture
def users_path(tmp_path):
    path = tmp_path / "users.json"
    write_users(path, PASSWORDS)
    return path


def test_removed_is_the_difference():
    assert userwatch.removed(frozenset({"a", "b", "c"}), frozenset({"b", "d"})) == ["a", "c"]


async def test_a_removed_user_is_refused_and_their_sessions_end(make_gateway, users_path):
    gw = await make_gateway(users_file=str(users_path), dev_user=False)
    sessions = {}
    for user, sid in (("alice", "a1"), ("bob", "b1"), ("bob", "b2")):
        reply = await gw.login(sid, username=user, password=PASSWORDS[user])
        sessions[sid] = md(reply.token, sid)
        await echo(gw, sessions[sid])
    bob_pids = [i.child.pid for k, i in gw.backend._instances.items() if k.username == "bob"]
    assert len(bob_pids) == 2 and all(pid_alive(p) for p in bob_pids)

    write_users(users_path, ["alice"])
    assert await eventually(lambda: not gw.gateway.user_watch.exists("bob"))
    if gw.gateway.front:
        # The users file is read once a second; the front's routes of bob go a moment after
        # (their removal is queued before his sessions end, sent over HAProxy's runtime API).
        await gw.gateway.front.map.settled()
    for sid in ("b1", "b2"):
        assert await error_of(echo(gw, sessions[sid])) == (grpc.StatusCode.UNAUTHENTICATED, contract.INVALID_TOKEN)
    assert await eventually(lambda: not any(pid_alive(p) for p in bob_pids))
    assert await eventually(lambda: gw.backend.sessions.slots.count("bob") == 0)
    assert (await echo(gw, sessions["a1"])).server_session_id == "a1"  # alice goes on
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await gw.login("b3", username="bob", password=PASSWORDS["bob"])
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, contract.INVALID_CREDENTIALS)

    # Put back: bob logs in again; his old sessions stay ended.
    write_users(users_path, ["alice", "bob"])
    assert await eventually(lambda: gw.gateway.user_watch.exists("bob"))
    fresh = await gw.login("b4", username="bob", password=PASSWORDS["bob"])
    assert (await echo(gw, md(fresh.token, "b4"))).server_session_id == "b4"
    code, message = await error_of(echo(gw, sessions["b1"]))
    assert (code, message) == (grpc.StatusCode.FAILED_PRECONDITION,
                               "session b1 has ended; log in with a new session_id")


async def test_an_unreadable_users_file_changes_nothing(make_gateway, users_path):
    gw = await make_gateway(users_file=str(users_path), dev_user=False)
    reply = await gw.login("a1", username="alice", password=PASSWORDS["alice"])
    users_path.write_text("{not json")
    await asyncio.sleep(userwatch.PERIOD_SECONDS * 2.5)
    assert gw.gateway.user_watch.exists("alice")
    assert (await echo(gw, md(reply.token, "a1"))).server_session_id == "a1"
