"""Check 11: the chart's NetworkPolicy is enforced: a pod that is not a gateway cannot
open a TCP connection to a session's instance pod, while the gateway can (and the
session answers through it).

The stranger is a one-shot pod of the gateway image (preloaded on every node: the
suite installs it) running python, Pod Security "restricted", labelled like the
release's pods except for its component. A NetworkPolicy agent drops its SYN, so its
connect times out; without the policy (or the agent) it connects.
"""
from __future__ import annotations

import uuid

import pytest

import framework as fw

CONNECT_TIMEOUT = 5  # seconds per connection attempt; the gateway connects in milliseconds


def stranger_pod(name: str, *, release: str, image: str, pull_policy: str, argv: list[str]) -> dict:
    """A pod that is not a gateway: the release's name/instance labels, another component."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/name": "myservice",
            "app.kubernetes.io/instance": release,
            "app.kubernetes.io/component": "e2e-stranger",
        }},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "connect",
                "image": image,
                "imagePullPolicy": pull_policy,
                "command": argv,
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                              "limits": {"cpu": "200m", "memory": "64Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


def ready_gateway_pod(kube: fw.Kube) -> dict:
    for pod in kube.component_pods("gateway"):
        conditions = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions", [])}
        if conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
            return pod
    raise AssertionError("no Ready gateway pod")


def test_only_the_gateway_reaches_the_instance(cfg, release, client, kube, sessions, t):
    if not cfg.network_policy:
        pytest.skip("MYSERVICE_E2E_NETWORK_POLICY=0: the cluster runs no NetworkPolicy agent, "
                    "so nothing enforces the chart's policy")
    session, first = fw.start_session(client, sessions.add, prefix="netpol")
    instance = kube.get("pod", first.pod_name)
    assert instance is not None, f"instance pod {first.pod_name} not found"
    port = instance["spec"]["containers"][0]["ports"][0]["containerPort"]
    instance_target = f"{instance['status']['podIP']}:{port}"
    gateway = ready_gateway_pod(kube)
    grpc_port = next(port["containerPort"] for c in gateway["spec"]["containers"] for port in c.get("ports", [])
                     if port["name"] == "grpc")  # the front container's, with the chart's default front
    gateway_target = f"{gateway['status']['podIP']}:{grpc_port}"
    policy_name = f"{cfg.fullname()}-instances"
    policy = "present" if kube.get("networkpolicy", policy_name) else "absent"

    # a pod that is not a gateway: the instance port is closed to it, the gateway's is not
    name = f"netpol-stranger-{uuid.uuid4().hex[:6]}"
    image = release.values["image"]["gateway"]
    log = kube.run_pod(stranger_pod(name, release=release.name, image=f"{image['repository']}:{image['tag']}",
                                    pull_policy=image["pullPolicy"],
                                    argv=fw.tcp_connect_argv(CONNECT_TIMEOUT, instance_target, gateway_target)),
                       timeout=t(120))
    fw.log(f"from {name}: {log.strip()!r}")
    seen = fw.connect_outcomes(log)
    assert seen.get(instance_target) == "timed out", \
        (f"a pod that is not a gateway must not reach the instance {first.pod_name} at {instance_target}; "
         f"its connect: {seen.get(instance_target)!r} (NetworkPolicy {policy_name}: {policy})")
    assert seen.get(gateway_target) == "connected", \
        f"the stranger pod should reach the gateway at {gateway_target} (no policy there): {seen}"

    # the gateway reaches the instance, and the session answers through it
    log = kube.exec(gateway["metadata"]["name"], "gateway",
                    *fw.tcp_connect_argv(CONNECT_TIMEOUT, instance_target), timeout=t(60))
    assert fw.connect_outcomes(log) == {instance_target: "connected"}, \
        f"the gateway pod {gateway['metadata']['name']} could not open {instance_target}: {log!r}"
    reply = client.echo(session, value="after-stranger")
    assert (reply.pod_name, reply.client_value) == (first.pod_name, "after-stranger")
