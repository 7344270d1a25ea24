"""Memory the gateway holds per session on Kubernetes: a MyServiceSession as the watch
delivers it (in the SessionIndex, with the per-user index), plus its verified token.
Measured with tracemalloc over N sessions, against an empty baseline in the same run.

    .venv/bin/python bench/gateway_session_memory.py [--sessions 10000]
"""
from __future__ import annotations

import argparse
import gc
import tracemalloc

from myservice_api import names
from myservice_gateway import tokens
from myservice_gateway.auth import VerifiedTokens
from myservice_gateway.backends.base import SessionKey
from myservice_gateway.backends.sessionindex import SessionIndex

CONFIG = tokens.TokenConfig(b"k" * 32, "myservice-gateway", "myservice", 3600)


def resource(i: int) -> dict:
    """A Ready MyServiceSession shaped as the API returns it (what the watch stores)."""
    user, session_id = f"user-{i % 100}", f"bench-session-{i:06d}"
    name = names.resource_name(user, session_id)
    return {
        "apiVersion": "myservice.io/v1alpha1", "kind": "MyServiceSession",
        "metadata": {"name": name, "namespace": "myservice", "uid": f"{i:08d}-0000-4000-8000-000000000000",
                     "resourceVersion": str(100000 + i), "generation": 1,
                     "creationTimestamp": "2026-12-01T00:00:00Z", "labels": {"app.kubernetes.io/name": "myservice"},
                     "managedFields": [{"manager": "myservice-operator", "operation": "Update",
                                        "subresource": "status", "time": "2026-12-01T00:00:01Z"}]},
        "spec": {"sessionId": session_id, "user": user, "role": "user"},
        "status": {"phase": "Ready", "reason": "PodReady", "message": f"pod {name}-pod ready at 10.244.1.2:50051",
                   "podName": f"{name}-pod", "podIP": f"10.244.{i // 250}.{i % 250}", "port": 50051,
                   "startedAt": "2026-12-01T00:00:01Z", "readyAt": "2026-12-01T00:00:02Z", "observedGeneration": 1},
    }


def measure(count: int) -> tuple[int, int]:
    """Bytes held by (index, verified tokens) for `count` sessions."""
    made = [resource(i) for i in range(count)]
    issued = [tokens.issue(CONFIG, username=r["spec"]["user"], role="user", session_id=r["spec"]["sessionId"])
              for r in made]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = SessionIndex()
    for r in made:
        index.upsert(r["metadata"]["name"], r)
    after_index = tracemalloc.get_traced_memory()[0]
    verified = VerifiedTokens(maxsize=count)
    for r, (token, exp) in zip(made, issued):
        verified.add(token, r["spec"]["sessionId"], exp, SessionKey(r["spec"]["user"], r["spec"]["sessionId"]))
    after_tokens = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del index, verified
    return after_index - before, after_tokens - after_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10000)
    args = parser.parse_args()
    # The objects themselves are built before tracing starts: what is measured is what the
    # cache adds on top of what the watch hands it (the decoded JSON), i.e. the index's own cost.
    # The decoded objects are what a watch cache keeps anyway, so count them separately.
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    objects = [resource(i) for i in range(args.sessions)]
    objects_bytes = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del objects
    small_index, small_tokens = measure(args.sessions // 10)
    index_bytes, token_bytes = measure(args.sessions)
    n = args.sessions
    print(f"sessions: {n}")
    print(f"resource objects as decoded from the watch: {objects_bytes / n:,.0f} B/session")
    print(f"index on top (dict entries, per-user sets): {index_bytes / n:,.0f} B/session "
          f"({small_index / (n // 10):,.0f} at {n // 10}: ratio {index_bytes / n / (small_index / (n // 10)):.2f})")
    print(f"verified-token cache entry: {token_bytes / n:,.0f} B/session "
          f"({small_tokens / (n // 10):,.0f} at {n // 10}: ratio {token_bytes / n / (small_tokens / (n // 10)):.2f})")
    total = (objects_bytes + index_bytes + token_bytes) / n
    print(f"total: {total:,.0f} B/session, {total * n / 2**20:,.1f} MiB for {n} sessions")


if __name__ == "__main__":
    main()
