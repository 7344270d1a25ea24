"""Check 18: the warm pool on a real cluster. With instance.warmPool.size 2 the operator
keeps two Ready pool pods (no owner, label myservice.io/pool); a new session claims one
and is Ready at once (status.podSource warm, `kubectl get mss -o wide` says so), its
first Echo answered by that very pod; the pool refills with new pods; a burst of sessions
at once (as many as operator.maxSessions allows) gets one pod per session, warm or cold;
a warm session ends like a cold one (Shutdown: Completed, "has ended" after); a deleted
pool pod is replaced; turning the pool off deletes its pods. The release gets its value
back afterwards (`helm upgrade --reuse-values`, as check 13)."""
from __future__ import annotations

import time

import grpc
import pytest

import framework as fw
from framework import crd

POOL_SIZE = 2
POOL_ENV = "MYSERVICE_WARM_POOL_SIZE"
POOL_SELECTOR = f"{crd.LABEL_POOL}"


WARM = frozenset({("pod", "warm")})
COLD = frozenset({("pod", "cold")})


def warm_starts(kube: fw.Kube, installed) -> tuple[float, float, float]:
    """Session starts counted warm by the operator (the active replica), and warm and cold by
    the gateways (all replicas)."""
    operator_port = int(installed.values["operator"].get("metricsPort", 9091))
    gateway_port = int(installed.values.get("gateway", {}).get("metricsPort", 9090))
    with fw.PortForward(kube, f"pod/{kube.active_operator_pod()}", operator_port) as forward:
        operator = fw.scrape_metrics(forward.address, "myservice_operator_").get(
            ("myservice_operator_session_start_seconds_count", WARM), 0.0)
    warm = cold = 0.0
    for pod in kube.component_pods("gateway"):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        with fw.PortForward(kube, f"pod/{pod['metadata']['name']}", gateway_port) as forward:
            samples = fw.scrape_metrics(forward.address, "myservice_gateway_")
        warm += samples.get(("myservice_gateway_session_start_seconds_count", WARM), 0.0)
        cold += samples.get(("myservice_gateway_session_start_seconds_count", COLD), 0.0)
    return operator, warm, cold


def pool_pods(kube: fw.Kube, *, ready_only: bool = False) -> list[str]:
    names = []
    for pod in kube.items("pods", f"{crd.LABEL_MANAGED_BY}={crd.MANAGED_BY}", POOL_SELECTOR):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or [])
        if ready or not ready_only:
            names.append(pod["metadata"]["name"])
    return sorted(names)


def _upgrade_pool(kube: fw.Kube, release, size: int, t) -> None:
    argv = ["upgrade", release.name, str(fw.CHART), "--reuse-values",
            "--set", f"instance.warmPool.size={size}", "--wait", "--timeout", "240s"]
    fw.log("$ helm -n " + kube.ns + " " + " ".join(argv))
    kube.helm(*argv, timeout=t(300))
    fw.wait_until(f"operator Deployment with {POOL_ENV}={size}",
                  lambda: kube.deployment_env(kube.operator_deploy, "operator").get(POOL_ENV) == str(size), t(30))
    kube.wait_deployment(kube.operator_deploy, t(240))


@pytest.fixture
def warm_pool(kube, installed, t):
    _upgrade_pool(kube, installed, POOL_SIZE, t)
    try:
        fw.wait_until(f"{POOL_SIZE} Ready pool pods", lambda: len(pool_pods(kube, ready_only=True)) == POOL_SIZE,
                      t(120), describe=lambda: kube.kubectl("get", "pods", "-l", POOL_SELECTOR, "-o", "wide"))
        yield POOL_SIZE
    finally:
        _upgrade_pool(kube, installed, 0, t)
        # later checks count instance pods: none of the pool's may be left
        fw.wait_until("no pool pods left", lambda: not pool_pods(kube), t(120))


def test_a_session_claims_a_ready_pool_pod_and_the_pool_refills(warm_pool, client, kube, sessions, installed, t):
    members = pool_pods(kube, ready_only=True)
    starts_before = warm_starts(kube, installed)
    for name in members:
        pod = kube.get("pod", name)
        assert not pod["metadata"].get("ownerReferences"), pod["metadata"]
        assert crd.LABEL_SESSION not in pod["metadata"]["labels"]
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["MYSERVICE_INSTANCE_WAIT_FOR_CLAIM"] == "1"
        assert "activeDeadlineSeconds" not in pod["spec"]

    session = sessions.add(client.login(prefix="warm"))
    t0 = time.monotonic()
    reply = client.echo(session, timeout=t(60))
    first_call = time.monotonic() - t0
    fw.log(f"warm session {session.resource}: first Echo {first_call * 1000:.0f} ms after Login, on {reply.pod_name}")
    assert reply.pod_name in members  # the instance that answered is a pool pod
    status = kube.mss_status(session.resource)
    assert (status["phase"], status["podSource"], status["podName"]) == (crd.Phase.READY, "warm", reply.pod_name)
    assert status["message"].startswith(f"warm pool pod {reply.pod_name} claimed, ready at"), status
    # the operator counts it a warm start; a gateway counts a first call that waited, and a warm
    # one may find its session Ready already (then nothing waited): warm if counted, never cold
    after = warm_starts(kube, installed)
    moved = tuple(a - b for a, b in zip(after, starts_before))
    assert moved[0] == 1 and moved[1] in (0, 1) and moved[2] == 0, (starts_before, after)

    # the status (Ready on the pod) is written first and the pod labelled right after, off the
    # first call's path: the labels may trail that call by a moment
    fw.wait_until(f"{reply.pod_name} labelled for {session.resource}",
                  lambda: crd.LABEL_SESSION in kube.get("pod", reply.pod_name)["metadata"]["labels"], t(10))
    claimed = kube.get("pod", reply.pod_name)
    mss = kube.mss(session.resource)
    assert claimed["metadata"]["labels"][crd.LABEL_SESSION] == session.resource
    assert crd.LABEL_POOL not in claimed["metadata"]["labels"]
    assert [r["uid"] for r in claimed["metadata"]["ownerReferences"]] == [mss["metadata"]["uid"]]
    assert claimed["spec"]["activeDeadlineSeconds"] > 86400  # the session's whole lifetime from now

    out = kube.kubectl("get", crd.SHORT_NAME, session.resource, "-o", "wide")
    header, row = out.splitlines()[:2]
    assert header.split()[-1] == "SOURCE" and row.split()[-1] == "warm", out

    # refilled with a new pod; the claimed one is not a member any more
    fw.wait_until(f"the pool back at {POOL_SIZE} Ready", lambda: len(pool_pods(kube, ready_only=True)) == POOL_SIZE,
                  t(120))
    assert reply.pod_name not in pool_pods(kube)
    assert {client.echo(session).pod_name for _ in range(3)} == {reply.pod_name}  # sticky

    # a warm session ends like a cold one
    assert client.shutdown(session).pod_name == reply.pod_name
    kube.wait_mss(session.resource, crd.Phase.COMPLETED, t(60), reason=crd.Reason.INSTANCE_EXITED)
    fw.assert_status(fw.rpc_error(lambda: client.echo(session)), grpc.StatusCode.FAILED_PRECONDITION,
                     f"session {session.session_id} has ended; log in with a new session_id")
    assert reply.pod_name not in pool_pods(kube)


def test_a_burst_gets_one_pod_per_session(warm_pool, client, kube, sessions, t):
    # as many as the release has slots for (operator.maxSessions), one beyond the pool if it can
    capacity = int(kube.deployment_env(kube.operator_deploy, "operator")["MYSERVICE_MAX_SESSIONS"])
    burst = [sessions.add(client.login(prefix="burst")) for _ in range(min(capacity, POOL_SIZE + 1))]
    pods = [client.echo(s, timeout=t(90)).pod_name for s in burst]
    sources = [kube.mss_status(s.resource)["podSource"] for s in burst]
    fw.log(f"burst of {len(burst)} with a pool of {POOL_SIZE}: {sources}")
    assert len(set(pods)) == len(burst)  # never one pod for two sessions
    assert sources.count("warm") >= 1 and set(sources) <= {"warm", "cold"}
    for session, pod, source in zip(burst, pods, sources):
        assert kube.mss_status(session.resource)["podName"] == pod
        if source == "cold":
            assert pod == session.pod  # made for it, named after it


def test_a_deleted_pool_pod_is_replaced(warm_pool, kube, t):
    victim = pool_pods(kube, ready_only=True)[0]
    kube.kubectl("delete", "pod", victim, "--wait=false")
    fw.wait_until(f"{victim} replaced",
                  lambda: victim not in pool_pods(kube) and len(pool_pods(kube, ready_only=True)) == POOL_SIZE,
                  t(120))
