"""Login under load and abuse through a real gateway: honest bursts from one address
all served, identical Logins sharing one hash, the fair order, the queue's bound,
failures throttled per username and per client address (the real one, behind a
trusted proxy), each refusal answered at once with RESOURCE_EXHAUSTED and a
google.rpc.RetryInfo read from grpc-status-details-bin."""
import asyncio
import json
import socket
import time

import argon2
import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_gateway import clientaddress, users

THROTTLED = "too many login attempts, retry later"
BUSY = "too many logins in progress, retry later"
# alice's hash takes about a second, long enough to see a Login held in the pool.
SLOW_HASHER = argon2.PasswordHasher(time_cost=8, parallelism=1)
# Many users for the burst tests: cheap hashes keep make test fast (the bench uses real ones).
CHEAP_HASHER = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
CROWD = 30


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": {
        "alice": {"password_hash": SLOW_HASHER.hash("a-pass")},
        "bob": {"password_hash": users.hash_password("b-pass")},
        "carol": {"password_hash": users.hash_password("c-pass")},
        **{f"user{i}": {"password_hash": CHEAP_HASHER.hash(f"pass{i}")} for i in range(CROWD)},
    }}))
    return str(path)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def start(make_gateway, users_file, **limits):
    values = dict(users_file=users_file, dev_user=False, login_hash_workers=1, login_queue=4,
                  login_user_failure_burst=0, login_peer_failure_burst=0)
    values.update(limits)
    return await make_gateway(**values)


async def login(stub, username, password, session_id="s", forwarded_for=None):
    metadata = (("x-forwarded-for", forwarded_for),) if forwarded_for else None
    return await stub.Login(pb.LoginRequest(username=username, password=password, session_id=session_id),
                            metadata=metadata)


async def refusal(call):
    """(code, message, RetryInfo seconds, seconds the answer took) of a refused Login."""
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    took = time.monotonic() - started
    status = status_pb2.Status.FromString(dict(e.value.trailing_metadata())["grpc-status-details-bin"])
    assert (status.code, status.message) == (e.value.code().value[0], e.value.details())
    info = error_details_pb2.RetryInfo()
    assert len(status.details) == 1 and status.details[0].Unpack(info)
    return e.value.code(), e.value.details(), info.retry_delay.ToTimedelta().total_seconds(), took


async def until_in_flight(gw, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while gw.gateway.login.guard.in_flight != count:
        assert time.monotonic() < deadline, f"in flight: {gw.gateway.login.guard.in_flight}, wanted {count}"
        await asyncio.sleep(0.01)


async def test_full_queue_answers_at_once_with_retry_info(make_gateway, users_file):
    gw = await start(make_gateway, users_file, login_queue=0)
    held = asyncio.ensure_future(login(gw.stub, "alice", "a-pass"))
    await until_in_flight(gw, 1)
    code, message, retry, took = await refusal(login(gw.stub, "bob", "b-pass"))
    assert (code, message) == (grpc.StatusCode.RESOURCE_EXHAUSTED, BUSY)
    assert 0 < retry <= 5 and took < 1.0  # answered at once, not after alice's hash
    assert (await held).role == "user"
    await until_in_flight(gw, 0)
    assert (await login(gw.stub, "bob", "b-pass")).token  # room again


async def test_parallel_logins_of_one_user_from_one_address_all_pass_with_one_hash(make_gateway, users_file):
    gw = await start(make_gateway, users_file, login_queue=1000, login_cache_seconds=0,
                     login_user_failure_burst=10, login_peer_failure_burst=30)
    checks = []
    authenticate = gw.gateway.login._users.authenticate

    def counted(*args):
        checks.append(args[0])
        return authenticate(*args)

    gw.gateway.login._users.authenticate = counted
    replies = await asyncio.gather(*(login(gw.stub, "bob", "b-pass", f"s{i}") for i in range(CROWD)))
    assert [r.role for r in replies] == ["user"] * CROWD and len({r.token for r in replies}) == CROWD
    assert checks == ["bob"]  # one hash for all of them: no cache, they waited together
    assert gw.gateway.login.guard.in_flight == 0


async def test_parallel_logins_of_many_users_from_one_address_all_pass(make_gateway, users_file):
    gw = await start(make_gateway, users_file, login_queue=1000,
                     login_user_failure_burst=10, login_peer_failure_burst=30)
    replies = await asyncio.gather(*(login(gw.stub, f"user{i}", f"pass{i}", f"s{i}") for i in range(CROWD)))
    assert [r.role for r in replies] == ["user"] * CROWD
    assert gw.gateway.login.guard.in_flight == 0


async def test_a_guesser_sharing_the_address_slows_no_honest_login_but_its_own(make_gateway, users_file):
    gw = await start(make_gateway, users_file, login_queue=1000,
                     login_user_failure_burst=10, login_peer_failure_burst=30)
    guesses = await asyncio.gather(*(login(gw.stub, f"user{i}", "wrong", f"g{i}") for i in range(8)),
                                   return_exceptions=True)
    assert {(e.code(), e.details()) for e in guesses} == {
        (grpc.StatusCode.PERMISSION_DENIED, "invalid username or password")}
    # Same address, well within its failure budget: honest Logins still all pass.
    replies = await asyncio.gather(*(login(gw.stub, f"user{i}", f"pass{i}", f"s{i}") for i in range(10, 20)))
    assert [r.role for r in replies] == ["user"] * 10


async def test_a_flood_from_one_address_waits_behind_another_address(make_gateway, users_file):
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback here: the second peer is [::1]")
    gw = await start(make_gateway, users_file, host="[::]", login_queue=1000,
                     login_user_failure_burst=100, login_peer_failure_burst=100)
    held = asyncio.ensure_future(login(gw.stub, "alice", "a-pass"))  # ~1 s hash, from 127.0.0.1
    await until_in_flight(gw, 1)
    flood = [asyncio.ensure_future(login(gw.stub, f"nobody-{i}", f"guess-{i}", f"f{i}")) for i in range(6)]
    await until_in_flight(gw, 7)
    async with grpc.aio.insecure_channel(f"[::1]:{gw.gateway.port}") as other_peer:
        reply = await login(pb_grpc.MyServiceStub(other_peer), "bob", "b-pass")
    assert reply.role == "user"
    # bob came last but was hashed right after alice: 127.0.0.1 had its turn (alice's)
    assert sum(task.done() for task in flood) <= 1
    assert (await held).role == "user"
    await asyncio.gather(*flood, return_exceptions=True)


async def test_failures_for_one_username_are_throttled_not_other_usernames(make_gateway, users_file):
    gw = await start(make_gateway, users_file, login_user_failure_burst=2, login_user_failures_per_minute=1)
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await login(gw.stub, "bob", "wrong")
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "invalid username or password")
    # Even the right password waits now: the check comes before any hashing.
    code, message, retry, took = await refusal(login(gw.stub, "bob", "b-pass"))
    assert (code, message) == (grpc.StatusCode.RESOURCE_EXHAUSTED, THROTTLED)
    assert 50 < retry <= 60 and took < 1.0  # one failure forgiven per minute
    assert gw.gateway.login.guard.in_flight == 0
    assert (await login(gw.stub, "carol", "c-pass")).role == "user"  # another username, same peer: not slowed


async def test_failures_from_one_peer_are_throttled_whatever_the_username(make_gateway, users_file):
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback here: the second peer is [::1]")
    gw = await start(make_gateway, users_file, host="[::]", login_peer_failure_burst=3,
                     login_peer_failures_per_minute=6)
    for name in ("nobody-1", "nobody-2", "carol"):  # unknown users and a wrong password alike
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await login(gw.stub, name, "guess")
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    code, message, retry, _ = await refusal(login(gw.stub, "bob", "b-pass"))
    assert (code, message) == (grpc.StatusCode.RESOURCE_EXHAUSTED, THROTTLED)
    assert 5 < retry <= 10  # six forgiven per minute: one every 10 s
    async with grpc.aio.insecure_channel(f"[::1]:{gw.gateway.port}") as other_peer:
        assert (await login(pb_grpc.MyServiceStub(other_peer), "bob", "b-pass")).role == "user"


async def test_successes_are_not_throttled(make_gateway, users_file):
    gw = await start(make_gateway, users_file, login_user_failure_burst=1, login_peer_failure_burst=1,
                     login_queue=8)
    replies = await asyncio.gather(*(login(gw.stub, "bob", "b-pass", f"s{i}") for i in range(6)))
    assert {r.role for r in replies} == {"user"}


async def test_failures_count_per_forwarded_address_behind_a_trusted_proxy(make_gateway, users_file):
    gw = await start(make_gateway, users_file, trusted_proxies=clientaddress.parse_networks("127.0.0.0/8"),
                     login_peer_failure_burst=2, login_peer_failures_per_minute=1)
    for name in ("nobody-1", "nobody-2"):
        with pytest.raises(grpc.aio.AioRpcError):
            await login(gw.stub, name, "guess", forwarded_for="203.0.113.9")
    code, message, _retry, _took = await refusal(login(gw.stub, "bob", "b-pass", forwarded_for="203.0.113.9"))
    assert (code, message) == (grpc.StatusCode.RESOURCE_EXHAUSTED, THROTTLED)
    # Another client behind the same proxy, and one that forged an address before the proxy's.
    assert (await login(gw.stub, "bob", "b-pass", forwarded_for="203.0.113.10")).role == "user"
    assert (await login(gw.stub, "bob", "b-pass", forwarded_for="203.0.113.9, 198.51.100.1")).role == "user"


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(make_gateway, users_file):
    gw = await start(make_gateway, users_file, login_peer_failure_burst=2, login_peer_failures_per_minute=1)
    for i, name in enumerate(("nobody-1", "nobody-2")):
        with pytest.raises(grpc.aio.AioRpcError):
            await login(gw.stub, name, "guess", forwarded_for=f"203.0.113.{i}")
    # Counted as 127.0.0.1 both times: a made-up header does not buy a fresh bucket.
    code, message, _retry, _took = await refusal(login(gw.stub, "bob", "b-pass", forwarded_for="203.0.113.77"))
    assert (code, message) == (grpc.StatusCode.RESOURCE_EXHAUSTED, THROTTLED)


async def test_a_flood_admitted_before_its_first_failure_is_not_hashed_to_the_end(make_gateway, users_file):
    # All admitted at once (nothing had failed yet); once the address's failures empty
    # its bucket, the rest are refused when their turn comes instead of being hashed.
    gw = await start(make_gateway, users_file, login_queue=100, login_peer_failure_burst=3,
                     login_peer_failures_per_minute=1)
    checks = []
    authenticate = gw.gateway.login._users.authenticate
    gw.gateway.login._users.authenticate = lambda *args: (checks.append(args[0]), authenticate(*args))[1]
    results = await asyncio.gather(*(login(gw.stub, f"nobody-{i}", f"guess-{i}", f"f{i}") for i in range(12)),
                                   return_exceptions=True)
    answers = {(e.code(), e.details()) for e in results}
    assert answers == {(grpc.StatusCode.PERMISSION_DENIED, "invalid username or password"),
                       (grpc.StatusCode.RESOURCE_EXHAUSTED, THROTTLED)}
    assert len(checks) == 3  # the bucket's three, then no more hashing
    assert gw.gateway.login.guard.in_flight == 0
