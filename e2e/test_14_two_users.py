"""Check 14: a session is (user, session_id). Two users who pick the same session_id get
two MyServiceSessions and two pods; neither can reach or end the other's."""
from __future__ import annotations

import grpc

import framework as fw
from framework import crd

ALICE = ("alice", "alice-e2e-password")
BOB = ("bob", "bob-e2e-password")


def test_two_users_one_session_id_two_pods(gateway, kube, sessions, t):
    session_id = fw.scenarios.new_session_id("shared")  # one id, two users
    with gateway.client(username=ALICE[0], password=ALICE[1]) as alice_client, \
            gateway.client(username=BOB[0], password=BOB[1]) as bob_client:
        alice = sessions.add(alice_client.login(session_id))
        bob = sessions.add(bob_client.login(session_id))
        assert alice.resource != bob.resource
        alice_pod = alice_client.echo(alice, timeout=t(90)).pod_name
        bob_reply = bob_client.echo(bob, timeout=t(90))
        assert (alice_pod, bob_reply.pod_name) == (alice.pod, bob.pod)
        assert alice.pod != bob.pod
        assert bob_reply.server_session_id == session_id
        for session, user in ((alice, "alice"), (bob, "bob")):
            resource = kube.mss(session.resource)
            assert (resource["spec"]["user"], resource["spec"]["sessionId"]) == (user, session_id)
            assert [p["metadata"]["name"] for p in kube.session_pods(session.resource)] == [session.pod]

        # Bob's Shutdown ends bob's session only; alice's pod still answers.
        assert bob_client.shutdown(bob).pod_name == bob.pod
        kube.wait_mss(bob.resource, crd.Phase.COMPLETED, t(60))
        assert kube.mss_status(alice.resource)["phase"] == crd.Phase.READY
        assert {alice_client.echo(alice).pod_name for _ in range(3)} == {alice.pod}
        fw.assert_status(fw.rpc_error(lambda: bob_client.echo(bob)), grpc.StatusCode.FAILED_PRECONDITION,
                         f"session {session_id} has ended; log in with a new session_id")

        # Bob's token with alice's session-id is not alice's session: the token is bound.
        forged = (("authorization", bob.token), ("session-id", session_id), ("session-id", "other"))
        err = fw.rpc_error(lambda: bob_client.stub.MyServiceEcho(fw.pb.EchoRequest(value="x"), metadata=forged))
        fw.assert_status(err, grpc.StatusCode.UNAUTHENTICATED, "more than one authorization or session-id value")
        assert alice_client.shutdown(alice).pod_name == alice.pod


def test_per_user_limit_at_login(installed, gateway, client, kube, sessions, t):
    """On Kubernetes Login starts the instance: the user's next Login beyond
    session.maxPerUser live sessions is refused; other users are not affected."""
    limit = int(installed.values["session"]["maxPerUser"])
    mine = [sessions.add(client.login(prefix="quota")) for _ in range(limit)]
    err = fw.rpc_error(lambda: client.login(prefix="quota"))
    fw.assert_status(err, grpc.StatusCode.RESOURCE_EXHAUSTED,
                     f"per-user limit reached: at most {limit} live sessions per user")
    with gateway.client(username=ALICE[0], password=ALICE[1]) as alice_client:
        sessions.add(alice_client.login(prefix="quota-alice"))  # another user still gets in
    # Resuming one of mine is not a new session.
    assert client.login(mine[0].session_id).session_id == mine[0].session_id
    # Once one of mine has ended, a new one is accepted.
    assert client.echo(mine[0], timeout=t(90)).pod_name == mine[0].pod  # binds its instance
    assert client.shutdown(mine[0]).pod_name == mine[0].pod
    kube.wait_mss(mine[0].resource, crd.Phase.COMPLETED, t(60))
    fw.wait_until("a new Login within the per-user limit",
                  lambda: sessions.add(client.login(prefix="quota")), t(30))
