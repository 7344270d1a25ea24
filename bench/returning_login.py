"""A returning user's Login, answered from memory (recentlogins.py), against the
same Login hashed every time (MYSERVICE_LOGIN_CACHE_SECONDS=0), in one run,
interleaved: sequential Logins of the development user from one client.

    .venv/bin/python bench/returning_login.py [--logins 60] [--rate-seconds 3] [--rounds 2]

Prints per round p50/p99 latency and Logins/s (one sequential client: the client
shares the cores, so the rate is a floor), then the medians' ratio."""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import grpc

from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_gateway import settings as gateway_settings
from myservice_gateway.server import start_gateway
from myservice_gateway.users import DEV_PASSWORD, DEV_USERNAME


async def measure(cache_seconds: float, logins: int, rate_seconds: float) -> tuple[float, float, float]:
    settings = gateway_settings.from_env({"MYSERVICE_LOGIN_CACHE_SECONDS": f"{cache_seconds:g}"},
                                         dev_user=True, host="127.0.0.1", port=0)
    gateway = await start_gateway(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = pb_grpc.MyServiceStub(channel)

            async def login(session_id: str) -> None:
                await stub.Login(pb.LoginRequest(username=DEV_USERNAME, password=DEV_PASSWORD, session_id=session_id))

            await login("first")  # the real check that a returning user already had
            times = []
            for i in range(logins):
                started = time.perf_counter()
                await login(f"s{i}")
                times.append(time.perf_counter() - started)
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < rate_seconds:
                await login(f"r{count}")
                count += 1
            rate = count / (time.perf_counter() - started)
    finally:
        await gateway.stop(grace=0.5)
    times.sort()
    return statistics.median(times) * 1000, times[max(0, round(len(times) * 0.99) - 1)] * 1000, rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=60, help="timed Logins per measurement (default %(default)s)")
    parser.add_argument("--rate-seconds", type=float, default=3.0, help="seconds of back-to-back Logins for the rate")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of both (default %(default)s)")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {"hashed": [], "returning": []}
    for round_number in range(1, args.rounds + 1):
        for name, cache in (("hashed", 0), ("returning", 300)):
            p50, p99, rate = await measure(cache, args.logins, args.rate_seconds)
            results[name].append((p50, p99, rate))
            print(f"round {round_number} {name:>9}: p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  {rate:7.0f} Logins/s")
    hashed = statistics.median(r[0] for r in results["hashed"])
    returning = statistics.median(r[0] for r in results["returning"])
    print(f"median p50: hashed {hashed:.2f} ms, returning {returning:.2f} ms: {hashed / returning:.0f}x faster")


if __name__ == "__main__":
    asyncio.run(main())
