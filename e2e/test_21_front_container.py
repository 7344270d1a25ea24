"""Check 21: HAProxy in a container of its own (issue 18, items 3, 6 and 8; the chart's
default front). The gateway pod runs two containers, `gateway` (the Python control plane)
and `front` (HAProxy, the child of its container's sh, on the haproxy.cfg the gateway wrote
into their shared directory).

- The Python gateway SIGKILLed: its container restarts alone. While it is away a Ready
  session's calls still answer from its own pod (they pass HAProxy alone) and a Login
  fails fast with UNAVAILABLE "backend service unavailable"; once it is back, Logins work
  and the session still answers, through HAProxy alone (the new gateway gave it every Ready
  session its watch listed). HAProxy is the same process throughout.
- A rollout (`kubectl rollout restart` of the gateway Deployment) while a client inside
  the cluster calls through the Service without pause: not one call fails. The old pod
  keeps serving while the Service drops it (preStop), then HAProxy soft-stops (GOAWAY:
  the client's next calls open a connection to the new pod) and lets calls in flight end.
"""
from __future__ import annotations

import json
import time
import uuid

import grpc

import framework as fw
from framework import contract, pb

# Run in the gateway container: SIGKILL the Python gateway (tini's child; tini, PID 1, ends
# with it and kubelet restarts the container): no SIGTERM, nothing cleaned up.
KILL_GATEWAY_SCRIPT = """
import os, signal
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) in (1, os.getpid()):
        continue
    try:
        ppid = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
    except OSError:
        continue
    if ppid == "1":
        os.kill(int(pid), signal.SIGKILL)
        print("killed", pid)
"""

# The in-cluster client of the rollout (python in the gateway image, which has grpc and the
# stubs): SESSIONS sessions Ready, then Echo round the sessions without pause for SECONDS, a
# Login again of one of them every 25 calls (the Python gateway's path), each outcome counted;
# Shutdown of each at the end. Prints READY, then RESULT {json}.
ROLLOUT_CLIENT = r"""
import collections, json, os, time, uuid
import grpc
from myservice.v1 import myservice_pb2 as pb, myservice_pb2_grpc as pb_grpc

stub = pb_grpc.MyServiceStub(grpc.insecure_channel(os.environ["GATEWAY"]))
user, password = os.environ["USERNAME"], os.environ["PASSWORD"]

def login(sid):
    token = stub.Login(pb.LoginRequest(username=user, password=password, session_id=sid), timeout=30).token
    return (("authorization", token), ("session-id", sid))

sessions = []
for i in range(int(os.environ["SESSIONS"])):
    sid = f"rollout-{uuid.uuid4().hex[:8]}"
    print("SESSION", sid, flush=True)
    md = login(sid)
    stub.MyServiceEcho(pb.EchoRequest(value="first"), metadata=md, timeout=120)
    sessions.append((sid, md))
print("READY", " ".join(sid for sid, _ in sessions), flush=True)
ok, logins, failures = 0, 0, collections.Counter()
per_second = collections.Counter()
begun = time.monotonic()
i = 0
while time.monotonic() - begun < float(os.environ["SECONDS"]):
    slot = i % len(sessions)
    sid, md = sessions[slot]
    i += 1
    try:
        if i % 25 == 0:
            sessions[slot] = (sid, login(sid))  # a new token for the same session
            logins += 1
        else:
            stub.MyServiceEcho(pb.EchoRequest(value=str(i)), metadata=md, timeout=10)
            ok += 1
        per_second[int(time.monotonic() - begun)] += 1
    except grpc.RpcError as e:
        failures[f"{e.code().name}: {e.details()}"] += 1
    time.sleep(0.01)
for sid, md in sessions:
    try:
        stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=md, timeout=30)
    except grpc.RpcError as e:
        failures[f"Shutdown {e.code().name}: {e.details()}"] += 1
quiet = [s for s in range(int(os.environ["SECONDS"])) if per_second[s] == 0]
print("RESULT", json.dumps({"echo_ok": ok, "logins_ok": logins, "failures": failures, "quiet_seconds": quiet}),
      flush=True)
"""
ROLLOUT_SESSIONS = 2  # of the e2e capacity (operator.maxSessions)
ROLLOUT_SECONDS = 45  # the rollout takes ~12 s on the local cluster


def _container(pod: dict, name: str) -> dict:
    return next(c for c in (pod.get("status") or {}).get("containerStatuses", []) if c["name"] == name)


def _ready_gateway_pod(kube: fw.Kube, timeout: float) -> dict:
    def ready():
        for pod in kube.component_pods("gateway"):
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            if not pod["metadata"].get("deletionTimestamp") and statuses and all(c.get("ready") for c in statuses):
                return pod
        return None
    return fw.wait_until("a Ready gateway pod", ready, timeout)


def test_ready_sessions_answer_while_the_gateway_container_restarts(kube, sessions, installed, t):
    pod = _ready_gateway_pod(kube, t(120))
    name = pod["metadata"]["name"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["gateway", "front"]
    front_processes = kube.exec(name, "front", "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert "haproxy -db -f /run/myservice/front/haproxy.cfg" in front_processes, front_processes
    restarts = {c: _container(pod, c)["restartCount"] for c in ("gateway", "front")}
    front_started = _container(pod, "front")["state"]["running"]["startedAt"]

    with fw.PortForward(kube, f"pod/{name}") as forward, fw.Client(forward.address) as client:
        session, first = fw.start_session(client, sessions.add, prefix="apart", timeout=t(90))
        time.sleep(1.5)  # the map entry is written over the runtime API as the first call resolves

        kube.kill_in(name, "gateway", KILL_GATEWAY_SCRIPT)
        began = time.monotonic()
        err = fw.rpc_error(lambda: client.stub.Login(
            pb.LoginRequest(username="TestUser", password="TestPassword", session_id="apart-during"), timeout=10))
        waited = time.monotonic() - began
        fw.log(f"Login {waited:.2f}s after the gateway was killed: {err.code().name} {err.details()!r}")
        # The contract's UNAVAILABLE; or, when the Login raced the gateway's death on HAProxy's
        # reused connection to it, HTTP/2 REFUSED_STREAM ("not processed: retry"), which grpc
        # reports as UNAVAILABLE with its own text (seen once in 4 CI runs, never in 25 local tries;
        # made certain in tests/gateway/test_front_sidecar.py, a Login in flight when the gateway dies).
        assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
        assert (err.details() == contract.BACKEND_UNAVAILABLE
                or "Received RST_STREAM with error code 7" in err.details()), err.details()
        assert waited < 2, waited
        replies = [client.echo(session, value=f"alone-{i}", timeout=10) for i in range(5)]
        assert {(r.pod_name, r.server_session_id) for r in replies} == {(first.pod_name, session.session_id)}

        def back():
            now = kube.get("pod", name) or {}
            statuses = (now.get("status") or {}).get("containerStatuses") or []
            return (len(statuses) == 2 and all(c.get("ready") for c in statuses)
                    and _container(now, "gateway")["restartCount"] == restarts["gateway"] + 1 and now)
        now = fw.wait_until(f"the gateway container of {name} restarted and the pod Ready", back, t(120))
        back_at = time.monotonic()
        assert _container(now, "front")["restartCount"] == restarts["front"]
        assert _container(now, "front")["state"]["running"]["startedAt"] == front_started  # the same HAProxy

        def logs_in():
            try:
                return sessions.add(client.login(prefix="apart-after"))
            except grpc.RpcError:
                return None
        fw.wait_until("a Login through the same port once the gateway is back", logs_in, t(30))
        fw.log(f"Login works {time.monotonic() - back_at:.1f}s after the pod was Ready again")
        # The new gateway gave HAProxy every Ready session its watch listed: the session's calls
        # pass HAProxy alone (the new process's call counter, from 0, does not see them).
        for i in range(3):
            assert client.echo(session, value=f"after-{i}").pod_name == first.pod_name
        with fw.PortForward(kube, f"pod/{name}", 9090) as metrics:
            python_calls = fw.scrape_metrics(metrics.address, "myservice_gateway_calls_total")
        assert sum(python_calls.values()) == 0, python_calls
        assert client.shutdown(session).pod_name == first.pod_name


def _client_pod(name: str, release, kube: fw.Kube) -> dict:
    image = release.values["image"]["gateway"]
    port = ((release.values.get("gateway") or {}).get("service") or {}).get("port", 10000)
    service = f"{kube.gateway_deploy}.{kube.ns}.svc:{port}"
    env = {"GATEWAY": service, "USERNAME": "TestUser", "PASSWORD": "TestPassword",
           "SESSIONS": str(ROLLOUT_SESSIONS), "SECONDS": str(ROLLOUT_SECONDS)}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "myservice",
                                              "app.kubernetes.io/instance": release.name,
                                              "app.kubernetes.io/component": "e2e-client"}},
        "spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "client", "image": f"{image['repository']}:{image['tag']}",
                "imagePullPolicy": image["pullPolicy"],
                "command": ["python", "-c", ROLLOUT_CLIENT],
                "env": [{"name": k, "value": v} for k, v in env.items()],
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


def test_a_rollout_of_the_gateway_fails_no_call(kube, sessions, installed, gateway, t):
    assert ROLLOUT_SESSIONS <= installed.max_sessions
    old = {p["metadata"]["name"] for p in kube.component_pods("gateway")}
    name = f"rollout-client-{uuid.uuid4().hex[:6]}"
    kube.kubectl("apply", "-f", "-", input=json.dumps(_client_pod(name, installed, kube)))
    try:
        def said(word):
            def probe():
                phase = ((kube.get("pod", name) or {}).get("status") or {}).get("phase")
                if phase == "Failed":
                    raise fw.WaitTimeout(f"{name} failed: {kube.kubectl('logs', name, check=False, timeout=30)}")
                if phase not in ("Running", "Succeeded"):
                    return None
                log = kube.kubectl("logs", name, check=False, timeout=30)
                return next((line for line in log.splitlines() if line.startswith(word + " ")), None)
            return probe
        fw.wait_until(f"{name}: its {ROLLOUT_SESSIONS} sessions Ready", said("READY"), t(180))
        began = time.monotonic()
        kube.kubectl("rollout", "restart", f"deployment/{kube.gateway_deploy}", timeout=t(30))
        kube.kubectl("rollout", "status", f"deployment/{kube.gateway_deploy}", "--timeout=180s", timeout=t(200))
        kube.wait_gateway_settled(t(90))
        assert not old & {p["metadata"]["name"] for p in kube.component_pods("gateway")}, old
        fw.log(f"rollout done, the old pods {sorted(old)} gone, in {time.monotonic() - began:.1f}s")
        assert time.monotonic() - began < ROLLOUT_SECONDS - 5, "the rollout outlasted the client's calls"
        line = fw.wait_until(f"{name}: its result", said("RESULT"), t(ROLLOUT_SECONDS + 90))
        result = json.loads(line.split(" ", 1)[1])
        fw.log(f"calls through the Service across the rollout: {result}")
        assert result["failures"] == {}, result
        assert result["quiet_seconds"] == [], result  # no call waited a whole second
        assert result["echo_ok"] > 500 and result["logins_ok"] > 20, result
    finally:
        log = kube.kubectl("logs", name, check=False, timeout=30)
        for line in log.splitlines():  # the sessions it made: deleted after the test, whatever happened
            if line.startswith("SESSION "):
                sessions.add(fw.Session(line.split()[1], "", "user"))
        kube.kubectl("delete", "pod", name, "--ignore-not-found", "--wait=false", check=False)
        gateway.reset()  # the suite's port-forward was to a replaced pod
