#!/usr/bin/env python3
"""Summarise a py-spy raw (collapsed stacks) profile of the gateway, as recorded by
`bench/echo_latency.py --profile FILE [--profile-native]`: where the event-loop
thread's samples go, by bucket, plus the top frames by self and inclusive time.

    .venv/bin/python bench/profile_summary.py FILE [--thread MainThread] [--top 25]
"""
from __future__ import annotations

import argparse
import collections
import re

# A sample goes to the first bucket (in this order) any frame of its stack matches.
BUCKETS = [
    ("JWT verification (PyJWT decode + HMAC)", r"\(myservice_gateway/tokens\.py|\(jwt/"),
    ("auth interceptor, rest", r"\(myservice_gateway/auth\.py"),
    ("second hop: grpc.aio client call (Python + Cython + its syscalls)",
     r"\(grpc/aio/_call\.py|\(grpc/aio/_channel\.py|\(grpc/aio/_metadata\.py"),
    ("proxy handler, own code (+ backend.acquire)", r"\(myservice_gateway/proxy\.py|\(myservice_gateway/backends/"),
    ("event loop: waiting in epoll (idle)", r"EpollSelector\.select|epoll_wait"),
    ("grpc.aio server side + asyncio scheduling (Cython, under Handle._run)", r"Handle\._run|\(asyncio/"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--thread", default="MainThread", help="thread name to analyse ('' = all threads)")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    buckets: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    compiled = [(name, re.compile(rx)) for name, rx in BUCKETS]
    for line in open(a.file):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        threads[frames[0]] += n
        if a.thread and a.thread not in frames[0]:
            continue
        total += n
        self_time[frames[-1]] += n
        for f in set(frames[1:]):
            inclusive[f] += n
        bucket = next((name for name, rx in compiled if any(rx.search(f) for f in frames[1:])),
                      "other (grpc core, Python runtime, ...)")
        buckets[bucket] += n
    print(f"{sum(threads.values())} samples; threads: " + ", ".join(f"{t} {n}" for t, n in threads.most_common()))
    print(f"\n{total} samples of thread {a.thread or '(all)'}, by bucket (first bucket matching any frame):")
    for name, n in buckets.most_common():
        print(f"  {n / total:6.1%}  {name}")
    print(f"\ntop {a.top} by self time:")
    for f, n in self_time.most_common(a.top):
        print(f"  {n / total:6.1%}  {f}")
    print(f"\ntop {a.top} by inclusive time:")
    for f, n in inclusive.most_common(a.top + 8)[8:]:
        print(f"  {n / total:6.1%}  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
