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


def test_parallel_logins_through_the_port_forward_all_pass(client, sessions, t):
    """As README tells users to connect: every client shares the port-forward's address.
    12 Logins at once (one session: one resource, one pod) must all be served, not
    refused with "too many login attempts" (issue 15)."""
    session_id = fw.scenarios.new_session_id("conc-logins")
    with ThreadPoolExecutor(12) as pool:
        logged_in = list(pool.map(lambda _: client.login(session_id=session_id), range(12)))
    sessions.add(logged_in[0])
    assert [s.role for s in logged_in] == ["user"] * 12
    assert client.echo(logged_in[-1], timeout=t(90)).server_session_id == session_id
