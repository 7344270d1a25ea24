#!/usr/bin/env python3
"""Is the GIL released during the gateway's argon2id / bcrypt checks? An asyncio
loop-lag probe (1 ms sleeps; how late each wakes) for 3 s with no other thread, then
while another thread of this process runs argon2id checks (users.py's, on one
thread), bcrypt checks (cost 10), and pure Python (which holds the GIL: the control).
If a check held the GIL, the probe would wait for it as it does for pure Python.

    .venv/bin/python bench/gil_probe.py
"""
import asyncio
import os
import sys
import threading
import time

import bcrypt

from myservice_gateway import users

ARGON2_HASH = users.hash_password("x")
BCRYPT_HASH = bcrypt.hashpw(b"x", bcrypt.gensalt(10))


def argon2_job(stop: threading.Event, done: list) -> None:
    while not stop.is_set():
        users._argon2_verify_on_this_thread(ARGON2_HASH, "y")
        done[0] += 1


def bcrypt_job(stop: threading.Event, done: list) -> None:
    while not stop.is_set():
        bcrypt.checkpw(b"y", BCRYPT_HASH)
        done[0] += 1


def python_job(stop: threading.Event, done: list) -> None:
    while not stop.is_set():
        for _ in range(10000):
            pass
        done[0] += 1


async def probe(seconds: float) -> list[float]:
    lags = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - t - 0.001)
    return sorted(lags)


async def main() -> None:
    print(f"switch interval {sys.getswitchinterval()} s, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for name, job in (("no other thread", None), ("argon2id checks", argon2_job), ("bcrypt checks", bcrypt_job),
                      ("pure Python (holds the GIL)", python_job), ("no other thread", None)):
        stop, done = threading.Event(), [0]
        thread = threading.Thread(target=job, args=(stop, done)) if job else None
        if thread:
            thread.start()
        lags = await probe(3.0)
        stop.set()
        if thread:
            thread.join()

        def q(p: float) -> float:
            return lags[min(len(lags) - 1, int(p * len(lags)))] * 1e3

        print(f"{name:<28} probes {len(lags):>5}  loop lag p50 {q(.5):.3f} ms  p99 {q(.99):.3f} ms  "
              f"max {lags[-1] * 1e3:.2f} ms  jobs done {done[0]}")


if __name__ == "__main__":
    asyncio.run(main())
