"""Check 9: two gateway replicas route one session to the same pod (each replica
reached on its own, by a port-forward to the pod)."""
from __future__ import annotations

import framework as fw
from framework import crd


def test_two_gateways_one_pod(gateway, kube, sessions, installed, t):
    deploy = kube.gateway_deploy
    kube.kubectl("scale", "deployment", deploy, "--replicas=2")
    try:
        kube.wait_deployment(deploy, t(180), replicas=2)
        pods = sorted(p["metadata"]["name"] for p in kube.component_pods("gateway")
                      if not p["metadata"].get("deletionTimestamp"))
        assert len(pods) == 2, pods
        with fw.PortForward(kube, f"pod/{pods[0]}") as fa, fw.PortForward(kube, f"pod/{pods[1]}") as fb, \
                fw.Client(fa.address) as a, fw.Client(fb.address) as b:
            session, first = fw.start_session(a, sessions.add, prefix="gw2")
            seen_a = {first.pod_name} | {a.echo(session).pod_name for _ in range(4)}
            seen_b = {b.echo(session, timeout=t(60)).pod_name for _ in range(5)}
            fw.log(f"via {pods[0]}: {seen_a}; via {pods[1]}: {seen_b}")
            assert seen_a == seen_b == {session.pod} == {kube.mss_status(session.resource)["podName"]}, (seen_a, seen_b)
            # the session is one: Shutdown through B ends the pod A routed to
            assert b.shutdown(session).pod_name == session.pod
            kube.wait_mss(session.resource, crd.Phase.COMPLETED, t(60))
    finally:
        kube.kubectl("scale", "deployment", deploy, "--replicas=1", check=False)
        kube.wait_gateway_settled(t(120), replicas=1)
        gateway.reset()  # its port-forward may have been on the removed pod
