"""Calls racing the instance's end, against real instance processes (no gateway):
an Echo sent around a MyServiceShutdown is served or told "has ended" at once,
never left waiting for the stop grace (issue 18 item 9), and the process still exits
promptly, its Shutdown answered first."""
import asyncio
import collections
import random
import sys
import time

import grpc

from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_instance import app

from ..conftest import BIN

RACES = 200
PARALLEL = 4
# Echo leaves this long after the Shutdown: before the instance has it, while it answers,
# once it is answered and the instance drains. All within the instance's linger, so that
# every Echo reaches a serving instance (after its exit there is no one to answer "has ended").
RACE_DELAYS = (0, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
ENDED = (grpc.StatusCode.FAILED_PRECONDITION, "has ended; log in with a new session_id")


async def start_instance(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "myservice"), "instance", "--host", "127.0.0.1", "--port", "0", "--announce-port", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    assert line.startswith("LISTENING "), line
    return proc, f"127.0.0.1:{line.split()[1]}"


async def test_an_echo_racing_a_shutdown_is_answered_at_once_and_the_process_exits_promptly():
    outcomes: list[tuple] = []
    exits: list[float] = []

    async def race(i: int) -> None:
        session_id = f"race-{i}"
        metadata = (("session-id", session_id),)
        proc, address = await start_instance()
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.MyServiceStub(channel)
                await stub.MyServiceEcho(pb.EchoRequest(value="bind"), metadata=metadata, timeout=10)
                delay = RACE_DELAYS[i % len(RACE_DELAYS)] + random.uniform(0, 0.001)

                async def one_echo():
                    await asyncio.sleep(delay)
                    began = time.monotonic()
                    try:
                        await stub.MyServiceEcho(pb.EchoRequest(value="r"), metadata=metadata, timeout=10)
                        outcome = grpc.StatusCode.OK
                    except grpc.aio.AioRpcError as e:
                        outcome = (e.code(), e.details().replace(f"session {session_id} ", "")[:60])
                    return outcome, round(time.monotonic() - began, 3)

                echoed, shut = await asyncio.gather(
                    one_echo(), stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=metadata, timeout=10))
                assert shut.server_session_id == session_id  # the Shutdown's answer reached us
                answered = time.monotonic()
                outcomes.append(echoed)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            exits.append(time.monotonic() - answered)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    limit = asyncio.Semaphore(PARALLEL)

    async def bounded(i: int) -> None:
        async with limit:
            await race(i)

    await asyncio.gather(*(bounded(i) for i in range(RACES)))
    counts = collections.Counter(o for o, _ in outcomes)
    slow = [(o, s) for o, s in outcomes if s > 1.0]
    print(f"{counts}; slow: {slow}; exit after the Shutdown's answer: max {max(exits):.2f}s", file=sys.stderr)
    assert set(counts) <= {grpc.StatusCode.OK, ENDED}, counts
    assert not slow, (slow, counts)
    # Exit promptly: the linger and the process's own teardown, far from the stop grace.
    assert max(exits) < app.STOP_LINGER_SECONDS + 1.5, sorted(exits)[-5:]
