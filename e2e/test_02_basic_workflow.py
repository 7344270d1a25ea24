"""Check 2: `integrationtests basic_workflow` passes through the in-cluster gateway;
all its echoes come from one pod, and that pod is the session's pod."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import framework as fw
from framework import crd, pod_name, resource_name

INTEGRATIONTESTS = Path(sys.executable).parent / "integrationtests"


def test_integrationtests_basic_workflow(gateway, kube, sessions, t):
    argv = [str(INTEGRATIONTESTS), "basic_workflow", "--gateway", gateway.address, "--timeout", "90"]
    fw.log("$ " + " ".join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=t(300))
    out = proc.stdout + proc.stderr
    print(out)
    assert proc.returncode == 0, f"integrationtests exited {proc.returncode}:\n{out}"
    assert "PASS basic_workflow" in out, out
    session_id = re.search(r"Login ok \(session_id=(\S+?),", out).group(1)
    sticky = re.search(r"MyServiceEcho x10 ok, sticky on pod_name=(\S+)", out).group(1)
    shutdown_pod = re.search(r"MyServiceShutdown ok \(pod_name=(\S+?),", out).group(1)
    resource = resource_name("TestUser", session_id)
    sessions.resources.append(resource)

    # the resource is still there (Completed, until the TTL): it names the pod
    pod_from_status = kube.kubectl("get", crd.SHORT_NAME, resource, "-o", "jsonpath={.status.podName}")
    assert pod_from_status == sticky == shutdown_pod == pod_name(resource), \
        (pod_from_status, sticky, shutdown_pod, pod_name(resource))
    pod = kube.get("pod", sticky)
    assert pod is not None, f"pod {sticky} not found"
    assert pod["metadata"]["labels"][crd.LABEL_SESSION] == resource
    assert pod["metadata"]["annotations"][crd.ANNOTATION_SESSION_ID] == session_id


def test_echoes_come_from_the_sessions_pod(client, kube, sessions):
    """The same through our own client, while the session is Ready: 10 echoes, one pod,
    the one in status.podName, reached at status.podIP."""
    session, first = fw.start_session(client, sessions.add, prefix="basic")
    names = {first.pod_name} | {client.echo(session, value=f"v{i}").pod_name for i in range(9)}
    status = kube.mss_status(session.resource)
    assert (status["phase"], status["reason"]) == (crd.Phase.READY, crd.Reason.POD_READY)
    assert names == {status["podName"]} == {session.pod}, (names, status)
    pod = kube.get("pod", session.pod)
    assert pod["status"]["podIP"] == status["podIP"]
    assert status["port"] == int(pod["spec"]["containers"][0]["ports"][0]["containerPort"])
    bye = client.shutdown(session)
    assert bye.pod_name == session.pod


def test_helm_test_passes(release, installed, kube, sessions, t):
    """The chart's own `helm test` (basic_workflow from a pod, through the Service's DNS name)."""
    if not release.values.get("testUser", {}).get("enabled"):
        pytest.skip("testUser.enabled is off: the chart renders no helm test")
    if kube.run([kube.cfg.kubectl, "-n", "kube-system", "get", "service", "kube-dns"], check=False).returncode != 0:
        pytest.skip("the cluster has no DNS (no kube-system/kube-dns Service): the test pod cannot resolve the gateway Service")
    proc = kube.run([kube.cfg.helm, "-n", kube.ns, "test", release.name, "--logs", "--timeout", "180s"],
                    check=False, timeout=t(240))
    print(proc.stdout, proc.stderr)
    # Helm never deletes test hook pods (the chart's policy is before-hook-creation only),
    # not even at uninstall: remove ours so that check 10 sees what the release leaves.
    kube.kubectl("delete", "pod", f"{kube.cfg.fullname()}-test", "--ignore-not-found", "--wait=false", check=False)
    assert proc.returncode == 0, f"helm test failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "PASS basic_workflow" in proc.stdout, proc.stdout
    session_id = re.search(r"Login ok \(session_id=(\S+?),", proc.stdout).group(1)
    sessions.resources.append(resource_name("TestUser", session_id))
