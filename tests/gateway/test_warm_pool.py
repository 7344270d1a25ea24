"""The local warm pool (`--warm-pool N`) with real instance processes and real gRPC:
a new session's first call takes a pre-started process, the pool refills, a dead
member is replaced and never handed out, claims are exclusive, `--max-instances`
bounds idle and bound processes together, a warm session behaves as a cold one,
and nothing outlives the gateway."""
import asyncio
import logging
import os
import re
import signal
import subprocess
import time

import grpc
import pytest

from myservice.v1 import myservice_pb2 as pb
from myservice_gateway import settings as gateway_settings
from myservice_gateway.backends.base import SessionKey
from myservice_gateway.backends.local import LocalBackend

from ..conftest import BIN, children_of, echo, error_of, pid_alive, wait_until

ENDED = "session {} has ended; log in with a new session_id"
LOCAL_LOG = "myservice.gateway.local"


async def until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def full_pool(gw, size: int) -> list[int]:
    """Wait until `size` pool members are ready and none is starting; their pids, oldest first."""
    backend = gw.backend
    assert await until(lambda: backend.warm_idle_count == size and backend.process_count == backend.live_count + size), \
        (backend.warm_idle_count, backend.process_count, backend.live_count)
    return backend.pool_pids()


def pod_name_of(pid: int) -> str:
    """The identity an instance process reports, from its own command line."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    return argv[argv.index(b"--pod-name") + 1].decode()


def instance_processes(parent: int) -> list[int]:
    """Live instance processes that are children of `parent` (read from /proc)."""
    result = []
    for pid in children_of(parent):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"myservice_instance" in f.read():
                    result.append(pid)
        except OSError:
            pass
    return result


def starts(gw, pod: str) -> float:
    return gw.gateway.metrics.registry.get_sample_value("myservice_gateway_session_start_seconds_count", {"pod": pod})


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


# --- taking, refilling ----------------------------------------------------------------

async def test_the_first_call_takes_a_pre_started_pool_instance(make_gateway, caplog):
    caplog.set_level(logging.INFO, logger=LOCAL_LOG)
    gw = await make_gateway(warm_pool=2)
    pool = await full_pool(gw, 2)
    names = [pod_name_of(pid) for pid in pool]
    metadata = await gw.session("w1")
    reply = await echo(gw, metadata, "hello")
    assert (reply.client_value, reply.server_value, reply.pod_name, reply.server_session_id,
            reply.client_session_id, reply.index, reply.server_method) == (
        "hello", "my_service", names[0], "w1", "w1", 0, "MyServiceEcho")
    assert gw.backend.pids() == [pool[0]]  # the process started before the Login, not a new one
    assert gw.backend.pool_pids() == pool[1:]
    assert (starts(gw, "warm"), starts(gw, "cold")) == (1, 0)
    # Its address: a Unix socket, or loopback TCP behind the HAProxy front (host:port only).
    address = "127.0.0.1:" if gw.gateway.front else "unix:"
    assert any(m.startswith(f"session TestUser/w1 -> {names[0]} (pid {pool[0]}, {address}") and
               m.endswith("warm, from the pool (1 idle left)") for m in messages(caplog)), messages(caplog)
    assert any(m.startswith(f"warm pool: {names[1]} ready (pid {pool[1]}") for m in messages(caplog))


async def test_the_pool_refills_after_claims(make_gateway, caplog):
    caplog.set_level(logging.INFO, logger=LOCAL_LOG)
    gw = await make_gateway(warm_pool=2)
    first = await full_pool(gw, 2)
    for session_id in ("r1", "r2"):
        await echo(gw, await gw.session(session_id))
    assert sorted(gw.backend.pids()) == sorted(first)
    refilled = await full_pool(gw, 2)
    assert not set(refilled) & set(first)
    assert sorted(instance_processes(os.getpid())) == sorted(first + refilled)
    assert sum(m.startswith("warm pool: starting ") for m in messages(caplog)) == 4
    assert (starts(gw, "warm"), starts(gw, "cold")) == (2, 0)


# --- dead members ---------------------------------------------------------------------

async def test_a_killed_pool_instance_is_replaced_and_never_handed_out(make_gateway, caplog):
    caplog.set_level(logging.INFO, logger=LOCAL_LOG)
    gw = await make_gateway(warm_pool=2)
    victim, survivor = await full_pool(gw, 2)
    victim_name, survivor_name = pod_name_of(victim), pod_name_of(survivor)
    os.kill(victim, signal.SIGKILL)
    reply = await echo(gw, await gw.session("k1"))
    assert reply.pod_name == survivor_name
    assert gw.backend.pids() == [survivor]
    replaced = await full_pool(gw, 2)
    assert victim not in replaced and not pid_alive(victim)
    assert any(m.startswith(f"warm pool: {victim_name} (pid {victim}) exited with -9 while idle; replacing it")
               for m in messages(caplog)), messages(caplog)


async def test_a_dead_member_is_checked_out_before_the_event_loop_has_seen_its_death(caplog):
    """Killed, and its exit not yet handled (the loop is blocked): the claim itself sees it."""
    caplog.set_level(logging.INFO, logger=LOCAL_LOG)
    backend = LocalBackend(max_instances=4, warm_pool=2)
    await backend.start()
    try:
        assert await until(lambda: backend.warm_idle_count == 2)
        victim, survivor = backend.pool_pids()
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: not pid_alive(victim), timeout=5)  # blocks the loop: no exit callback ran
        endpoint = await backend.endpoint(SessionKey("TestUser", "d1"), timeout=10)
        assert endpoint.pod_name == pod_name_of(survivor)
        assert backend.pids() == [survivor]
        assert any(m.endswith(f"(pid {victim}) has exited: not handed out") for m in messages(caplog)), \
            messages(caplog)
    finally:
        await backend.close(grace=1)


# --- exclusive claims ------------------------------------------------------------------

async def test_two_sessions_racing_for_the_last_pool_instance_each_get_their_own(make_gateway):
    gw = await make_gateway(warm_pool=1)
    [member] = await full_pool(gw, 1)
    a, b = await gw.session("race-a"), await gw.session("race-b")  # Logins first: they take time
    ra, rb = await asyncio.gather(echo(gw, a), echo(gw, b))
    assert (ra.server_session_id, rb.server_session_id) == ("race-a", "race-b")
    assert ra.pod_name != rb.pod_name
    pids = gw.backend.pids()
    assert len(set(pids)) == 2 and member in pids
    assert pod_name_of(member) in (ra.pod_name, rb.pod_name)
    assert (starts(gw, "warm"), starts(gw, "cold")) == (1, 1)  # one took the member, one waited for a start
    for _ in range(3):  # and each stays on its own
        assert ((await echo(gw, a)).pod_name, (await echo(gw, b)).pod_name) == (ra.pod_name, rb.pod_name)


async def test_a_claimed_instance_never_returns_to_the_pool(make_gateway):
    gw = await make_gateway(warm_pool=1)
    [first] = await full_pool(gw, 1)
    a = await gw.session("c1")
    ra = await echo(gw, a)
    assert ra.pod_name == pod_name_of(first)
    [second] = await full_pool(gw, 1)
    assert second != first
    b = await gw.session("c2")
    rb = await echo(gw, b)  # the next session takes the next member, never c1's
    assert rb.pod_name == pod_name_of(second) != ra.pod_name
    shutdown = await gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=a)
    assert (shutdown.pod_name, shutdown.server_session_id) == (ra.pod_name, "c1")
    assert await until(lambda: not pid_alive(first) and gw.backend.live_count == 1)
    third_pool = await full_pool(gw, 1)
    assert first not in third_pool and second not in third_pool
    # the ended session gets its answer, not a pool member
    assert await error_of(echo(gw, a)) == (grpc.StatusCode.FAILED_PRECONDITION, ENDED.format("c1"))
    assert gw.backend.pool_pids() == third_pool
    assert (starts(gw, "warm"), starts(gw, "cold")) == (2, 0)


# --- the bound -------------------------------------------------------------------------

async def test_max_instances_bounds_idle_and_bound_processes(make_gateway):
    gw = await make_gateway(warm_pool=2, max_instances=3)
    await full_pool(gw, 2)
    sessions = [await gw.session(f"m{i}") for i in range(4)]
    await echo(gw, sessions[0])
    await full_pool(gw, 2)  # 1 bound + 2 idle: the bound is reached
    assert len(instance_processes(os.getpid())) == 3
    await echo(gw, sessions[1])
    await asyncio.sleep(1.0)  # longer than the claim's hold on refills: no refill comes
    assert (gw.backend.warm_idle_count, gw.backend.process_count) == (1, 3)
    assert len(instance_processes(os.getpid())) == 3
    await echo(gw, sessions[2])  # the table is full, but an idle member exists: taken, not refused
    assert await error_of(echo(gw, sessions[3])) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "all instances are busy")
    assert (starts(gw, "warm"), starts(gw, "cold")) == (3, 0)
    assert len(instance_processes(os.getpid())) == 3
    await gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=sessions[0])
    await full_pool(gw, 1)  # the freed slot goes back to the pool
    assert (await echo(gw, sessions[3])).server_session_id == "m3"


# --- a warm session is a session like any other ----------------------------------------

async def test_a_pool_member_does_not_idle_out_unclaimed_and_a_warm_session_does(make_gateway, caplog):
    caplog.set_level(logging.INFO, logger=LOCAL_LOG)
    gw = await make_gateway(warm_pool=1, session_idle_timeout=1)
    [member] = await full_pool(gw, 1)
    await asyncio.sleep(2.5)  # well past the idle timeout, unclaimed
    assert gw.backend.pool_pids() == [member] and pid_alive(member)
    metadata = await gw.session("idle-warm")
    assert (await echo(gw, metadata)).pod_name == pod_name_of(member)
    claimed = time.monotonic()
    assert await until(lambda: not pid_alive(member), timeout=15)
    assert 0.9 < time.monotonic() - claimed < 10  # its own idle timeout, counted from the claim
    assert await until(lambda: gw.backend.live_count == 0)  # the gateway has seen the end (before: UNAVAILABLE)
    assert await error_of(echo(gw, metadata)) == (grpc.StatusCode.FAILED_PRECONDITION, ENDED.format("idle-warm"))
    assert any("TestUser/idle-warm exited with 0: IdleTimeout (no call for 1s)" in m for m in messages(caplog)), \
        messages(caplog)


async def test_a_warm_session_gets_its_whole_lifetime(make_gateway):
    gw = await make_gateway(warm_pool=1, session_max_lifetime=3)
    [member] = await full_pool(gw, 1)
    await asyncio.sleep(2.0)  # in the pool: its lifetime has not started
    metadata = await gw.session("life-warm")
    assert (await echo(gw, metadata)).pod_name == pod_name_of(member)
    claimed = time.monotonic()
    await asyncio.sleep(2.0)  # 4 s after the member's start, 2 s after the claim
    assert (await echo(gw, metadata)).server_session_id == "life-warm"
    assert await until(lambda: not pid_alive(member), timeout=15)
    assert 2.5 < time.monotonic() - claimed < 12


def run_scenarios(address: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "integrationtests"), "basic_workflow", "error_cases", "streaming",
                           "--gateway", address], capture_output=True, text=True, timeout=120)


def normalised(output: str) -> list[str]:
    """The scenarios' report with what differs between any two runs (address, ids, instance names) taken out."""
    return [re.sub(r"127\.0\.0\.1:\d+|session_id=\S+?,|myservice-local-\d+", "…", line) for line in output.splitlines()]


def test_the_seed_workflow_runs_the_same_on_warm_and_cold_sessions(up_process):
    cold = up_process("--max-instances", "4")
    warm = up_process("--max-instances", "4", "--warm-pool", "2")
    assert wait_until(lambda: len(instance_processes(warm.proc.pid)) == 2, timeout=20)
    cold_run, warm_run = run_scenarios(cold.address), run_scenarios(warm.address)
    assert cold_run.returncode == 0, cold_run.stdout + cold_run.stderr
    assert warm_run.returncode == 0, warm_run.stdout + warm_run.stderr
    assert normalised(warm_run.stdout) == normalised(cold_run.stdout)
    assert [line for line in warm_run.stdout.splitlines() if line.startswith(("PASS", "FAIL"))] == [
        "PASS basic_workflow", "PASS error_cases", "PASS streaming"]


# --- no orphans ------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_the_gateway_leaves_no_pool_instances(up_process, sig):
    up = up_process("--warm-pool", "3")
    with grpc.insecure_channel(up.address) as channel:
        from myservice.v1 import myservice_pb2_grpc as pb_grpc

        stub = pb_grpc.MyServiceStub(channel)
        token = stub.Login(pb.LoginRequest(username="TestUser", password="TestPassword", session_id="o1")).token
        stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=(("authorization", token), ("session-id", "o1")),
                           timeout=20)
    assert wait_until(lambda: len(instance_processes(up.proc.pid)) == 4, timeout=20)  # 1 bound + 3 idle
    instances = instance_processes(up.proc.pid)
    returncode = up.stop(sig)
    assert returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
    assert wait_until(lambda: not any(pid_alive(p) for p in instances), timeout=10), "orphan instance processes"


# --- configuration ---------------------------------------------------------------------

def test_warm_pool_setting_env_then_flag():
    env = {"MYSERVICE_USERS_FILE": "/dev/null"}
    assert gateway_settings.from_env(env).warm_pool == 0
    assert gateway_settings.from_env({**env, "MYSERVICE_WARM_POOL_SIZE": "3"}).warm_pool == 3
    assert gateway_settings.from_env({**env, "MYSERVICE_WARM_POOL_SIZE": "3"}, warm_pool=5).warm_pool == 5
    assert gateway_settings.from_env({**env, "MYSERVICE_WARM_POOL": "4"}).warm_pool == 4  # the old name, warned
    with pytest.raises(gateway_settings.SettingsError,
                       match=r"^MYSERVICE_WARM_POOL_SIZE must be an integer >= 0 \(0 = off\), got 'x'$"):
        gateway_settings.from_env({**env, "MYSERVICE_WARM_POOL_SIZE": "x"})


def test_a_negative_warm_pool_is_a_clear_error():
    r = subprocess.run([str(BIN / "myservice"), "up", "--warm-pool", "-1"], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stderr.strip().splitlines()[-1]) == (
        2, "myservice: configuration error: --warm-pool must be an integer >= 0 (0 = off), got '-1'")
