"""Check 16: operator HA. Two replicas, one active (it holds the Lease); what the
election costs the API server while idle (each replica's own request counters); then
the active one is killed in the middle of a burst of sessions, twice: `kubectl delete
pod --grace-period=0 --force` (kubelet still sends SIGTERM: it releases the Lease) and
SIGKILL of its process (no release: the Lease expires). Each time another replica takes
over within 15 s, and every session of the burst gets exactly one pod and becomes Ready."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import framework as fw
from framework import crd
from myservice_operator.leadership import LeaseTiming
from test_15_operator_metrics import requests_by, scrape

TAKEOVER_LIMIT_SECONDS = 15
IDLE_WINDOW_SECONDS = 16


def lease_requests(samples: dict) -> dict[str, float]:
    return {verb: v for (verb, resource, code), v in requests_by(samples, leases=True).items()
            if resource == "leases"}


def test_idle_election_cost(kube, installed, t):
    port = int(installed.values["operator"].get("metricsPort", 9091))
    active = kube.active_operator_pod(t(60))
    pods = [p["metadata"]["name"] for p in kube.component_pods("operator")]
    standbys = [p for p in pods if p != active]
    assert len(pods) == 2 and len(standbys) == 1, (active, pods)
    with fw.PortForward(kube, f"pod/{active}", port) as fa, fw.PortForward(kube, f"pod/{standbys[0]}", port) as fs:
        before = lease_requests(scrape(fa.address)), lease_requests(scrape(fs.address))
        time.sleep(IDLE_WINDOW_SECONDS)
        after = lease_requests(scrape(fa.address)), lease_requests(scrape(fs.address))
    spent = [{verb: n for verb in after[i] if (n := after[i][verb] - before[i].get(verb, 0))} for i in (0, 1)]
    total = sum(sum(s.values()) for s in spent)
    fw.log(f"election over {IDLE_WINDOW_SECONDS}s idle: active {spent[0]}, standby {spent[1]}: "
           f"{total / IDLE_WINDOW_SECONDS:.2f} requests/s")
    # the design (leadership.LeaseTiming): the holder PUTs every 2.5 s, the standby GETs every 3 s
    timing = LeaseTiming()
    puts, gets = IDLE_WINDOW_SECONDS / timing.renew_every, IDLE_WINDOW_SECONDS / timing.standby_poll
    assert set(spent[0]) <= {"update"} and puts - 1 <= spent[0].get("update", 0) <= puts + 1, spent
    assert set(spent[1]) <= {"get"} and gets - 1 <= spent[1].get("get", 0) <= gets + 1, spent
    assert total / IDLE_WINDOW_SECONDS <= timing.idle_requests_per_second() + 0.1 < 1


# Run inside the operator container: SIGKILL the operator's Python process (tini, PID 1,
# stays; the container ends with it and kubelet restarts it): no SIGTERM, no release.
KILL_OPERATOR_SCRIPT = """
import os, signal
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != 1 and int(pid) != os.getpid():
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"myservice-operator" in cmdline:
            os.kill(int(pid), signal.SIGKILL)
            print("killed", pid)
"""


def force_delete(kube, pod: str) -> None:
    kube.kubectl("delete", "pod", pod, "--grace-period=0", "--force", timeout=60)


def sigkill(kube, pod: str) -> None:
    kube.kill_in(pod, "operator", KILL_OPERATOR_SCRIPT)


def burst_across_a_kill(client, kube, sessions, installed, t, kill, prefix: str) -> float:
    """Log in a burst of sessions, kill the active operator at once, and check that another
    replica takes over within the limit and every session gets exactly one pod and is Ready."""
    active = kube.active_operator_pod(t(60))
    identity = (kube.get("lease", kube.operator_deploy) or {})["spec"]["holderIdentity"]
    old = [p["metadata"]["name"] for p in kube.component_pods("operator")]
    burst = installed.max_sessions  # the e2e capacity: every session of the burst gets a slot

    # mid-burst: the first half logged in (their pods being made), the active operator
    # killed, the rest logged in while it is gone or handing over
    logins = [sessions.add(client.login(prefix=f"{prefix}{i}")) for i in range(burst // 2)]
    kill(kube, active)
    killed_at = time.monotonic()
    pods_at_kill = sorted(p["metadata"]["name"] for p in kube.session_pods())
    logins += [sessions.add(client.login(prefix=f"{prefix}{i}")) for i in range(burst // 2, burst)]
    fw.log(f"{kill.__name__}: the active operator {active}; instance pods at that moment: {pods_at_kill}")

    def new_holder():
        spec = (kube.get("lease", kube.operator_deploy) or {}).get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        return holder not in ("", identity) and holder
    holder = fw.wait_until("another replica holding the Lease", new_holder,
                           t(TAKEOVER_LIMIT_SECONDS + 15), 0.2)
    takeover = time.monotonic() - killed_at
    fw.log(f"operator HA ({kill.__name__}): {holder} took over {takeover:.1f}s after {active} was killed")
    assert takeover <= TAKEOVER_LIMIT_SECONDS, f"takeover took {takeover:.1f}s"

    with ThreadPoolExecutor(burst) as pool:
        replies = list(pool.map(lambda s: client.echo(s, timeout=t(90)), logins))
    assert [r.pod_name for r in replies] == [s.pod for s in logins]
    first = {s.resource: [(p["metadata"]["name"], p["metadata"]["uid"]) for p in kube.session_pods(s.resource)]
             for s in logins}
    time.sleep(installed.settle_seconds)  # nothing more may happen: no second pod, no replacement
    for s in logins:
        pods = [(p["metadata"]["name"], p["metadata"]["uid"]) for p in kube.session_pods(s.resource)]
        assert pods == first[s.resource] and [n for n, _ in pods] == [s.pod], (s.resource, pods, first)
        status = kube.mss_status(s.resource)
        assert (status["phase"], status["podName"]) == (crd.Phase.READY, s.pod), status
    assert len({uid for pods in first.values() for _, uid in pods}) == burst
    for s in logins:
        assert client.shutdown(s).pod_name == s.pod
    # the killed replica comes back (a new pod, or its restarted container) as the standby
    kube.wait_deployment(kube.operator_deploy, t(120), replicas=len(old))
    return takeover


def test_force_deleting_the_active_operator_mid_burst(client, kube, sessions, installed, t):
    # kubelet still stops the container with a SIGTERM: the operator releases its Lease
    burst_across_a_kill(client, kube, sessions, installed, t, force_delete, "hadel")


def test_sigkilling_the_active_operator_mid_burst(client, kube, sessions, installed, t):
    # no signal it can handle: the Lease must expire (8 s unchanged, read every 4 s)
    takeover = burst_across_a_kill(client, kube, sessions, installed, t, sigkill, "hakill")
    assert takeover >= 4, f"{takeover:.1f}s: the Lease cannot have expired this soon"
