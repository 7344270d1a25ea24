"""Check 5: two concurrent sessions get two different pods, each its own."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import framework as fw
from framework import crd


def test_two_sessions_two_pods(client, kube, sessions, t):
    a, b = client.login(prefix="conc-a"), client.login(prefix="conc-b")
    sessions.add(a)
    sessions.add(b)
    with ThreadPoolExecutor(2) as pool:  # both first calls at once: both wait for their pods
        first = list(pool.map(lambda s: client.echo(s, timeout=t(90)), (a, b)))
    with ThreadPoolExecutor(2) as pool:
        more = list(pool.map(lambda s: {client.echo(s).pod_name for _ in range(5)}, (a, b)))
    assert [r.pod_name for r in first] == [a.pod, b.pod], [r.pod_name for r in first]
    assert more == [{a.pod}, {b.pod}], more
    assert a.pod != b.pod
    pods = {s.resource: kube.session_pods(s.resource) for s in (a, b)}
    assert [len(p) for p in pods.values()] == [1, 1], pods
    pa, pb = pods[a.resource][0], pods[b.resource][0]
    assert pa["metadata"]["uid"] != pb["metadata"]["uid"]
    assert pa["status"]["podIP"] != pb["status"]["podIP"]
    assert kube.mss_status(a.resource)["podName"] == a.pod and kube.mss_status(b.resource)["podName"] == b.pod
    # the server-side sessions differ too
    assert first[0].server_session_id != first[1].server_session_id
    for s in (a, b):
        assert client.shutdown(s).pod_name == s.pod
