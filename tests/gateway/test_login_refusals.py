"""Every Login refused for its credentials gets the same answer over real gRPC, whatever
the path: unknown user, wrong password for an argon2 or a bcrypt user, a password over
bcrypt's 72 bytes, a password or username over 1024 bytes (users.py; the equal hashing
work is counted in test_users.py, timed in bench/login_refusals.py)."""
import json

import bcrypt
import grpc
import pytest

from myservice import errors

from ..conftest import login_outcome

REFUSED = (errors.invalid_credentials().code, errors.invalid_credentials().message)

REFUSALS = {
    "unknown user": ("nobody", "a-pass"),
    "wrong password, argon2 user": ("alice", "wrong"),
    "wrong password, bcrypt user": ("bob", "wrong"),
    "73 bytes, bcrypt user, its first 72 right": ("bob", "b" * 72 + "x"),
    "2000 bytes, argon2 user": ("alice", "a-pass" + "x" * 1994),
    "2000 bytes, bcrypt user": ("bob", "b" * 2000),
    "2000-byte username": ("u" * 2000, "a-pass"),
}


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": {
        "alice": {"password": "a-pass"},  # plain: argon2id-hashed by the gateway
        "bob": {"password_hash": bcrypt.hashpw(b"b" * 72, bcrypt.gensalt(rounds=4)).decode()},
    }}))
    return str(path)


async def test_every_refusal_path_gets_the_same_code_and_text(make_gateway, users_file):
    # failure buckets off: seven refusals in a row must not be throttled here
    gw = await make_gateway(users_file=users_file, dev_user=False,
                            login_user_failure_burst=0, login_peer_failure_burst=0)
    answers = {path: await login_outcome(gw, *REFUSALS[path]) for path in REFUSALS}
    assert answers == {path: REFUSED for path in REFUSALS}
    assert REFUSED[0] == grpc.StatusCode.PERMISSION_DENIED and REFUSED[1] == "invalid username or password"
    assert await login_outcome(gw, "alice", "a-pass", "s2") == "user"
    assert await login_outcome(gw, "bob", "b" * 72, "s3") == "user"
