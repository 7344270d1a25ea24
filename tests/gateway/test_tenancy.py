"""A session is (user, session_id): attacks of one user on another's session, through a
real gateway with real instance processes (local backend)."""
import asyncio

import grpc
import pytest

from myservice.v1 import myservice_pb2 as pb

from ..conftest import echo, error_of, md, pid_alive, write_users_file

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    return write_users_file(tmp_path_factory.mktemp("users") / "users.json", PASSWORDS)


@pytest.fixture
async def two_users(make_gateway, users_file):
    async def start(**overrides):
        return await make_gateway(users_file=users_file, dev_user=False, **overrides)
    return start


async def session_of(gw, user, session_id):
    reply = await gw.login(session_id, username=user, password=PASSWORDS[user])
    return md(reply.token, session_id)


async def test_two_users_with_one_session_id_get_two_instances_and_never_meet(two_users):
    gw = await two_users()
    alice = await session_of(gw, "alice", "shared")
    alice_pod = (await echo(gw, alice)).pod_name
    bob = await session_of(gw, "bob", "shared")
    bob_reply = await echo(gw, bob)
    assert bob_reply.pod_name != alice_pod
    assert (bob_reply.server_session_id, bob_reply.client_session_id) == ("shared", "shared")
    assert gw.backend.live_count == 2

    # Bob's Shutdown ends bob's session only.
    bye = await gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=bob)
    assert bye.pod_name == bob_reply.pod_name
    for _ in range(100):
        if gw.backend.live_count == 1:
            break
        await asyncio.sleep(0.05)
    assert gw.backend.live_count == 1
    assert (await echo(gw, alice)).pod_name == alice_pod
    assert await error_of(echo(gw, bob)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "session shared has ended; log in with a new session_id")
    # ...and bob logging in again with that id does not reach alice's instance either.
    again = await session_of(gw, "bob", "shared")
    assert await error_of(echo(gw, again)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "session shared has ended; log in with a new session_id")
    assert (await echo(gw, alice)).pod_name == alice_pod


async def test_the_same_user_logging_in_again_resumes_the_same_session(two_users):
    gw = await two_users()
    first = await session_of(gw, "alice", "mine")
    pod = (await echo(gw, first)).pod_name
    second = await session_of(gw, "alice", "mine")
    assert first != second  # a new token...
    assert (await echo(gw, second)).pod_name == pod  # ...for the same session
    assert gw.backend.live_count == 1


@pytest.mark.parametrize("order", ["checked first", "checked last"])
async def test_a_second_session_id_value_is_rejected_before_any_backend_work(two_users, order):
    gw = await two_users()
    victim = await session_of(gw, "alice", "victim")
    victim_pod = (await echo(gw, victim)).pod_name
    token = (await gw.login("att1", username="bob", password=PASSWORDS["bob"])).token
    ids = [("session-id", "att1"), ("session-id", "victim")]
    metadata = (("authorization", token), *(ids if order == "checked first" else ids[::-1]))
    calls = {
        "echo": lambda: echo(gw, metadata),
        "shutdown": lambda: gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=metadata),
        "stream": lambda: _drain(gw.stub.MyServiceEchoStream(pb.EchoStreamRequest(value="v", count=2),
                                                             metadata=metadata)),
    }
    for name, call in calls.items():
        assert await error_of(call()) == (
            grpc.StatusCode.UNAUTHENTICATED, "more than one authorization or session-id value"), name
    assert gw.backend.live_count == 1  # nothing started for att1, nothing shut down
    assert (await echo(gw, victim)).pod_name == victim_pod


async def test_a_second_authorization_value_is_rejected(two_users):
    gw = await two_users()
    alice_token = (await gw.login("x", username="alice", password=PASSWORDS["alice"])).token
    bob_token = (await gw.login("x", username="bob", password=PASSWORDS["bob"])).token
    metadata = (("authorization", bob_token), ("authorization", alice_token), ("session-id", "x"))
    assert await error_of(echo(gw, metadata)) == (
        grpc.StatusCode.UNAUTHENTICATED, "more than one authorization or session-id value")
    assert gw.backend.live_count == 0


async def test_per_user_limit_on_the_call_that_would_start_the_instance(two_users):
    gw = await two_users(max_sessions_per_user=2, max_instances=8)
    first = await session_of(gw, "alice", "a1")
    await echo(gw, first)
    await echo(gw, await session_of(gw, "alice", "a2"))
    third = await session_of(gw, "alice", "a3")  # Login itself holds nothing locally
    assert await error_of(echo(gw, third)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "per-user limit reached: at most 2 live sessions per user")
    assert (await echo(gw, await session_of(gw, "bob", "b1"))).server_session_id == "b1"  # others unaffected
    # Ending one of alice's sessions lets her third one start.
    await gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=first)
    for _ in range(100):
        if gw.backend.live_count == 2:
            break
        await asyncio.sleep(0.05)
    assert (await echo(gw, third)).server_session_id == "a3"


async def test_calls_racing_a_shutdown_never_get_cancelled(two_users):
    gw = await two_users()
    metadata = await session_of(gw, "alice", "race")
    await echo(gw, metadata)
    [pid] = gw.backend.pids()

    async def chat(messages_count=50, interval=0.01):
        async def messages():
            for i in range(messages_count):
                yield pb.EchoRequest(value=str(i))
                await asyncio.sleep(interval)
        return [r async for r in gw.stub.MyServiceChat(messages(), metadata=metadata)]

    async def long_chat():  # outlives the instance's stop grace (5 s): the instance cuts it
        return await chat(80, 0.1)

    async def echoes():
        for _ in range(40):
            await echo(gw, metadata)
            await asyncio.sleep(0.01)

    racers = [asyncio.ensure_future(c()) for c in (chat, chat, echoes, echoes, long_chat)]
    await asyncio.sleep(0.05)
    await gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=metadata)
    outcomes = await asyncio.gather(*racers, return_exceptions=True)
    allowed = {(grpc.StatusCode.FAILED_PRECONDITION, "session race has ended; log in with a new session_id"),
               (grpc.StatusCode.UNAVAILABLE, "backend service unavailable")}
    for outcome in outcomes:
        if isinstance(outcome, grpc.aio.AioRpcError):
            assert (outcome.code(), outcome.details()) in allowed
        else:
            assert not isinstance(outcome, BaseException), outcome
    assert isinstance(outcomes[-1], grpc.aio.AioRpcError)  # the long chat did not outlive its instance
    for _ in range(200):
        if gw.backend.live_count == 0:
            break
        await asyncio.sleep(0.05)
    assert not pid_alive(pid)
    assert await error_of(echo(gw, metadata)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "session race has ended; log in with a new session_id")


async def _drain(call):
    return [r async for r in call]
