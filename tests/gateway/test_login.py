"""Login through a real gateway: the seed's validations and errors, exactly."""
import json
import time

import grpc
import jwt
import pytest

from myservice.v1 import myservice_pb2 as pb
from myservice_gateway import users

from ..conftest import KEY


async def login_error(gw, **fields):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await gw.stub.Login(pb.LoginRequest(**fields))
    return e.value.code(), e.value.details()


async def test_login_success_fields(gw):
    before = int(time.time())
    reply = await gw.login("s-1")
    claims = jwt.decode(reply.token, KEY, algorithms=["HS256"], audience="myservice")
    assert reply.role == "user"
    assert claims["sid"] == "s-1" and claims["sub"] == "TestUser" and claims["iss"] == "myservice-gateway"
    assert reply.expires_at.seconds == claims["exp"]
    assert before + 3600 <= reply.expires_at.seconds <= int(time.time()) + 3600


async def test_login_validation_errors(gw):
    assert await login_error(gw, username="", password="x", session_id="s") == (
        grpc.StatusCode.INVALID_ARGUMENT, "username is required")
    assert await login_error(gw, username="TestUser", password="TestPassword", session_id="") == (
        grpc.StatusCode.INVALID_ARGUMENT, "session_id is required")
    assert await login_error(gw, username="TestUser", password="wrong", session_id="s") == (
        grpc.StatusCode.PERMISSION_DENIED, "invalid username or password")
    assert await login_error(gw, username="Nobody", password="TestPassword", session_id="s") == (
        grpc.StatusCode.PERMISSION_DENIED, "invalid username or password")


async def test_user_store_failure_is_internal_failed_to_get_user(make_gateway, tmp_path):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": {"alice": {"password_hash": users.hash_password("a"), "role": "admin"}}}))
    gw = await make_gateway(users_file=str(path), dev_user=False)
    assert (await gw.login("s", "alice", "a")).role == "admin"
    path.write_text("{broken")
    assert await login_error(gw, username="alice", password="a", session_id="s") == (
        grpc.StatusCode.INTERNAL, "failed to get user")


async def test_signing_failure_is_internal_failed_to_create_token(make_gateway):
    gw = await make_gateway(jwt_key=12345)  # not a usable HMAC key: signing raises
    assert await login_error(gw, username="TestUser", password="TestPassword", session_id="s") == (
        grpc.StatusCode.INTERNAL, "failed to create token")


async def test_login_starts_no_instance(gw):
    await gw.login("s-idle")
    assert gw.backend.live_count == 0
