"""The e2e suite's toolbox: kubectl/helm as subprocesses, bounded waits,
port-forwards to the gateway, and a small gRPC client.

Cluster-agnostic: everything comes from the environment (see Config and
e2e/README.md). Nothing here fakes Kubernetes; every call goes to the cluster
named by $KUBECONFIG through kubectl and helm, as a person would.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, TypeVar

import grpc
import yaml

from myservice import contract
from myservice_api import crd
from myservice_api.names import pod_name, resource_name
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc
from myservice_client import scenarios

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "myservice"
E2E_VALUES = CHART / "ci" / "e2e-values.yaml"
T = TypeVar("T")


def log(msg: str) -> None:
    """Progress lines, visible with `pytest -s` (run.sh passes it) and in the captured output otherwise."""
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- config


def _split_image(image: str) -> tuple[str, str]:
    """"repo/name:tag" -> ("repo/name", "tag"); a registry port is not a tag."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return name, tag


@dataclasses.dataclass
class Config:
    kubeconfig: str
    kubectl: str
    helm: str
    namespace: str
    release: str
    gateway_image: str
    service_image: str
    gateway_address: str | None
    values_files: list[str]
    set_values: list[str]
    finished_ttl: int
    keep: bool
    reuse: bool
    artifacts: Path
    pod_security: str
    timeout_scale: float
    # False (MYSERVICE_E2E_NETWORK_POLICY=0): the cluster enforces no NetworkPolicy
    network_policy: bool = True

    @classmethod
    def from_env(cls) -> "Config":
        env = os.environ
        state = env.get("MYSERVICE_E2E_STATE", "/var/lib/myservice-e2e")
        kubeconfig = env.get("KUBECONFIG") or (f"{state}/kubeconfig" if Path(f"{state}/kubeconfig").exists() else "")
        namespace = env.get("MYSERVICE_E2E_NAMESPACE") or f"myservice-e2e-{uuid.uuid4().hex[:6]}"
        extra_values = [v for v in env.get("MYSERVICE_E2E_VALUES", "").split(",") if v]
        return cls(
            kubeconfig=kubeconfig,
            kubectl=env.get("MYSERVICE_E2E_KUBECTL") or env.get("MYSERVICE_KUBECTL") or "kubectl",
            helm=env.get("MYSERVICE_E2E_HELM") or env.get("MYSERVICE_HELM") or "helm",
            namespace=namespace,
            release=env.get("MYSERVICE_E2E_RELEASE", "myservice"),
            gateway_image=env.get("MYSERVICE_E2E_GATEWAY_IMAGE", "myservice-gateway:dev"),
            service_image=env.get("MYSERVICE_E2E_SERVICE_IMAGE", "myservice-service:dev"),
            gateway_address=env.get("MYSERVICE_E2E_GATEWAY") or None,
            values_files=[str(E2E_VALUES)] + extra_values,
            # The e2e TTL: short, so check 4 sees the resource and pod go within seconds.
            set_values=[f"operator.finishedTtlSeconds={int(env.get('MYSERVICE_E2E_FINISHED_TTL', '20'))}"],
            finished_ttl=int(env.get("MYSERVICE_E2E_FINISHED_TTL", "20")),
            keep=env.get("MYSERVICE_E2E_KEEP", "") == "1",
            reuse=env.get("MYSERVICE_E2E_REUSE", "") == "1",
            artifacts=Path(env.get("MYSERVICE_E2E_ARTIFACTS") or f"/tmp/myservice-e2e-artifacts/{namespace}"),
            pod_security=env.get("MYSERVICE_E2E_POD_SECURITY", "restricted"),
            timeout_scale=float(env.get("MYSERVICE_E2E_TIMEOUT_SCALE", "1")),
            network_policy=env.get("MYSERVICE_E2E_NETWORK_POLICY", "1") != "0",
        )

    def helm_values(self) -> dict:
        """The values the suite installs with (files, then --set), as a dict: the
        expectations (capacity, TTL) come from here, not from the cluster."""
        merged: dict = {}
        for path in self.values_files:
            _merge(merged, yaml.safe_load(Path(path).read_text()) or {})
        for item in self.set_values + self.image_sets():
            key, _, value = item.partition("=")
            node = merged
            *parents, last = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = yaml.safe_load(value)
        return merged

    def image_sets(self) -> list[str]:
        g_repo, g_tag = _split_image(self.gateway_image)
        s_repo, s_tag = _split_image(self.service_image)
        return [f"image.gateway.repository={g_repo}", f"image.gateway.tag={g_tag}",
                f"image.service.repository={s_repo}", f"image.service.tag={s_tag}"]

    def fullname(self) -> str:
        # the chart's fullname: the release name if it contains the chart name
        return self.release if "myservice" in self.release else f"{self.release}-myservice"


def _merge(into: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


# --------------------------------------------------------------------------- waiting


class WaitTimeout(AssertionError):
    pass


def wait_until(what: str, probe: Callable[[], T], timeout: float, interval: float = 1.0,
               describe: Callable[[], str] | None = None) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` s,
    naming what was awaited and the last thing seen (exception or value)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except WaitTimeout:
            raise
        except Exception as e:  # noqa: BLE001 - a probe may fail while things settle
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            extra = ""
            if describe is not None:
                try:
                    extra = f"\n  now: {describe()}"
                except Exception as e:  # noqa: BLE001
                    extra = f"\n  now: (could not describe: {e})"
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}{extra}")
        time.sleep(interval)


# --------------------------------------------------------------------------- kubectl / helm


class CommandFailed(AssertionError):
    pass


class Kube:
    """kubectl and helm against one namespace."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.ns = cfg.namespace
        self.env = dict(os.environ)
        if cfg.kubeconfig:
            self.env["KUBECONFIG"] = cfg.kubeconfig

    # raw runners
    def run(self, argv: list[str], *, check: bool = True, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, input=input)
        except subprocess.TimeoutExpired as e:
            raise CommandFailed(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s; "
                                f"stderr so far: {(e.stderr or b'')[-2000:]!r}") from None
        if check and proc.returncode != 0:
            raise CommandFailed(f"`{' '.join(argv)}` exited {proc.returncode}:\n{proc.stderr.strip()[-4000:]}\n{proc.stdout.strip()[-2000:]}")
        return proc

    def kubectl(self, *args: str, namespaced: bool = True, **kw) -> str:
        argv = [self.cfg.kubectl] + (["-n", self.ns] if namespaced else []) + list(args)
        return self.run(argv, **kw).stdout

    def helm(self, *args: str, **kw) -> str:
        return self.run([self.cfg.helm, "-n", self.ns] + list(args), **kw).stdout

    def json(self, *args: str, namespaced: bool = True, **kw) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json", namespaced=namespaced, **kw))

    def get(self, kind: str, name: str, *, namespaced: bool = True) -> dict | None:
        """The object, or None if it does not exist."""
        proc = self.run([self.cfg.kubectl] + (["-n", self.ns] if namespaced else [])
                        + ["get", kind, name, "-o", "json", "--ignore-not-found"], timeout=30)
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def items(self, kind: str, *selector: str) -> list[dict]:
        args = ["get", kind] + (["-l", ",".join(selector)] if selector else [])
        return self.json(*args, timeout=30).get("items", [])

    # names
    @property
    def gateway_deploy(self) -> str:
        return f"{self.cfg.fullname()}-gateway"

    @property
    def operator_deploy(self) -> str:
        return f"{self.cfg.fullname()}-operator"

    def operator_lease_holder(self) -> str:
        """The pod name of the active operator replica ("" while none holds the Lease):
        its identity in the Lease is the pod name plus "-" and a random suffix."""
        lease = self.get("lease", self.operator_deploy) or {}
        holder = (lease.get("spec") or {}).get("holderIdentity") or ""
        return holder.rsplit("-", 1)[0] if holder else ""

    def active_operator_pod(self, timeout: float = 60) -> str:
        return wait_until("an operator replica holding the Lease", self.operator_lease_holder, timeout, 0.5)

    def component_pods(self, component: str) -> list[dict]:
        return self.items("pods", f"app.kubernetes.io/instance={self.cfg.release}",
                          f"app.kubernetes.io/component={component}")

    def session_pods(self, resource: str | None = None) -> list[dict]:
        sel = [f"{crd.LABEL_MANAGED_BY}={crd.MANAGED_BY}"]
        if resource:
            sel.append(f"{crd.LABEL_SESSION}={resource}")
        return self.items("pods", *sel)

    def mss(self, resource: str) -> dict | None:
        return self.get(crd.PLURAL, resource)

    def mss_status(self, resource: str) -> dict:
        obj = self.mss(resource)
        return (obj or {}).get("status") or {}

    # waits with good messages
    def wait_mss(self, resource: str, phase: str, timeout: float, reason: str | None = None) -> dict:
        def probe():
            st = self.mss_status(resource)
            return st if st.get("phase") == phase and (reason is None or st.get("reason") == reason) else None
        return wait_until(f"MyServiceSession {resource} phase={phase}" + (f" reason={reason}" if reason else ""),
                          probe, timeout, describe=lambda: json.dumps(self.mss_status(resource)))

    def wait_gone(self, kind: str, name: str, timeout: float) -> None:
        wait_until(f"{kind}/{name} to be deleted", lambda: self.get(kind, name) is None, timeout)

    def deployment_available(self, name: str, replicas: int | None = None) -> bool:
        d = self.get("deployment", name)
        if not d:
            return False
        st = d.get("status") or {}
        want = replicas if replicas is not None else d["spec"].get("replicas", 1)
        conds = {c["type"]: c["status"] for c in st.get("conditions", [])}
        return (conds.get("Available") == "True" and st.get("readyReplicas", 0) == want
                and st.get("updatedReplicas", 0) == want and st.get("replicas", 0) == want
                and st.get("observedGeneration", 0) >= d["metadata"].get("generation", 0))

    def wait_deployment(self, name: str, timeout: float, replicas: int | None = None) -> None:
        wait_until(f"Deployment {name} Available with {replicas if replicas is not None else 'all'} ready replicas",
                   lambda: self.deployment_available(name, replicas), timeout,
                   describe=lambda: self.kubectl("get", "deploy,pods", "-o", "wide", timeout=30))

    def wait_gateway_settled(self, timeout: float, replicas: int | None = None) -> None:
        """The gateway Deployment Available, and none of its pods terminating. A replaced pod
        stays Ready through its preStop drain (gateway.drainSeconds), so `kubectl port-forward
        svc/…` may still pick it: a forward opened before the old pods are gone may land on one
        about to stop, and a set of pods taken then is not the settled one."""
        began = time.monotonic()
        self.wait_deployment(self.gateway_deploy, timeout, replicas)
        wait_until("no gateway pod terminating",
                   lambda: not any(p["metadata"].get("deletionTimestamp") for p in self.component_pods("gateway")),
                   max(1.0, timeout - (time.monotonic() - began)),
                   describe=lambda: self.kubectl("get", "pods", "-o", "wide", timeout=30))

    def deployment_env(self, name: str, container: str) -> dict[str, str]:
        d = self.get("deployment", name) or {}
        for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            if c["name"] == container:
                return {e["name"]: e.get("value", "") for e in c.get("env", [])}
        return {}

    def exec(self, pod: str, container: str, *argv: str, timeout: float = 60) -> str:
        """`kubectl exec` in a running pod; its stdout."""
        return self.kubectl("exec", pod, "-c", container, "--", *argv, timeout=timeout)

    def kill_in(self, pod: str, container: str, script: str) -> str:
        """Run `script` (python) in the container to SIGKILL its main process; its output,
        which must start with "killed". The container ends with that process, and this exec
        may be killed with it (exit 137) once its kill is done and said (seen on kind)."""
        try:
            out = self.exec(pod, container, "python", "-c", script)
        except CommandFailed as e:
            said = str(e)
            if "exited 137" not in said or "\nkilled " not in said:
                raise
            out = said[said.index("\nkilled ") + 1:]
        assert out.startswith("killed"), out
        return out

    def run_pod(self, manifest: dict, timeout: float) -> str:
        """Create a one-shot pod (restartPolicy Never), wait for it to end, return its
        log; the pod is deleted afterwards whatever happened."""
        name = manifest["metadata"]["name"]
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        try:
            def ended():
                phase = ((self.get("pod", name) or {}).get("status") or {}).get("phase")
                return phase if phase in ("Succeeded", "Failed") else None
            phase = wait_until(f"pod {name} to run to its end", ended, timeout,
                               describe=lambda: self.kubectl("get", "pod", name, "-o", "wide", timeout=30))
            logs = self.kubectl("logs", name, timeout=30)
            assert phase == "Succeeded", f"pod {name} ended {phase}:\n{logs}"
            return logs
        finally:
            self.kubectl("delete", "pod", name, "--ignore-not-found", "--wait=false", check=False)

    # diagnostics
    def diagnostics(self) -> str:
        """What a person needs when a check fails."""
        parts = []

        def section(title: str, argv_tail: list[str], namespaced: bool = True) -> None:
            argv = [self.cfg.kubectl] + (["-n", self.ns] if namespaced else []) + argv_tail
            try:
                proc = self.run(argv, check=False, timeout=40)
                body = (proc.stdout + (("\n" + proc.stderr) if proc.returncode else "")).rstrip()
            except Exception as e:  # noqa: BLE001
                body = f"(failed: {e})"
            parts.append(f"----- $ {' '.join(argv[1:]) if not namespaced else 'kubectl -n ' + self.ns + ' ' + ' '.join(argv_tail)}\n{body}")

        section("nodes", ["get", "nodes", "-o", "wide"], namespaced=False)
        section("pods", ["get", "pods", "-o", "wide", "--show-labels"])
        section("deployments", ["get", "deploy,rs,svc,endpointslices", "-o", "wide"])
        section("mss", ["get", crd.PLURAL, "-o", "wide"])
        section("mss yaml", ["get", crd.PLURAL, "-o", "yaml"])
        section("events", ["get", "events", "--sort-by=.lastTimestamp"])
        for component in ("operator", "gateway"):
            try:
                pods = self.component_pods(component)
            except Exception:  # noqa: BLE001
                pods = []
            for p in pods:
                name = p["metadata"]["name"]
                section(f"{component} logs", ["logs", name, "--all-containers", "--tail=300", "--timestamps"])
                restarts = sum(cs.get("restartCount", 0) for cs in (p.get("status") or {}).get("containerStatuses", []))
                if restarts:
                    section(f"{component} previous logs", ["logs", name, "--all-containers", "--previous", "--tail=200"])
        try:
            for p in self.session_pods():
                if (p.get("status") or {}).get("phase") not in ("Running", "Pending"):
                    continue
                section("instance logs", ["logs", p["metadata"]["name"], "--tail=50"])
        except Exception:  # noqa: BLE001
            pass
        return "\n".join(parts)


# --------------------------------------------------------------------------- port-forward


_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


class PortForward:
    """`kubectl port-forward <target> 0:<port>` on loopback; parses the local port.
    Restarted on demand when it has died (its pod went away)."""

    def __init__(self, kube: Kube, target: str, remote_port: int = 10000, timeout: float = 30):
        self.kube, self.target, self.remote_port, self.timeout = kube, target, remote_port, timeout
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._output: list[str] = []

    def start(self) -> "PortForward":
        argv = [self.kube.cfg.kubectl, "-n", self.kube.ns, "port-forward", "--address", "127.0.0.1",
                self.target, f"0:{self.remote_port}"]
        self.proc = subprocess.Popen(argv, env=self.kube.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self._output = []
        found = threading.Event()

        def reader(proc=self.proc):
            for line in proc.stdout:  # type: ignore[union-attr]
                self._output.append(line.rstrip())
                m = _FORWARDING.search(line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()
            found.set()

        threading.Thread(target=reader, daemon=True).start()
        if not found.wait(self.timeout) or self.port is None or self.proc.poll() is not None:
            out = "\n".join(self._output[-20:])
            self.stop()
            raise CommandFailed(f"port-forward to {self.target} did not start within {self.timeout:.0f}s: {out}")
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def address(self) -> str:
        if not self.alive:
            log(f"port-forward to {self.target} is not running ({' | '.join(self._output[-3:])}); restarting it")
            self.start()
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "PortForward":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------- gRPC client


@dataclasses.dataclass
class Session:
    session_id: str
    token: str
    role: str
    username: str = "TestUser"

    @property
    def resource(self) -> str:
        return resource_name(self.username, self.session_id)

    @property
    def pod(self) -> str:
        return pod_name(self.resource)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return scenarios.session_metadata(self.token, self.session_id)


class Client:
    """One channel to one gateway address (the Service's port-forward, or one pod's)."""

    def __init__(self, address: str, username: str = "TestUser", password: str = "TestPassword", timeout: float = 60):
        self.address = address
        self.opts = scenarios.Options(gateway=address, username=username, password=password, timeout=timeout)
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.MyServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def login(self, session_id: str | None = None, prefix: str = "e2e") -> Session:
        sid = session_id or scenarios.new_session_id(prefix)
        reply = scenarios.login(self.stub, self.opts, sid)
        assert reply.token, "Login returned an empty token"
        return Session(sid, reply.token, reply.role, self.opts.username)

    def echo(self, session: Session, value: str = "e2e", timeout: float | None = None) -> pb.EchoResponse:
        return self.stub.MyServiceEcho(pb.EchoRequest(value=value), metadata=session.metadata,
                                       timeout=timeout or self.opts.timeout)

    def shutdown(self, session: Session, timeout: float | None = None) -> pb.ShutdownResponse:
        return self.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=session.metadata,
                                           timeout=timeout or self.opts.timeout)


_METRIC_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def scrape_metrics(address: str, prefix: str) -> dict[tuple[str, frozenset], float]:
    """The samples of a component's /metrics whose name starts with `prefix`:
    (name, frozenset of (label, value)) -> value."""
    import urllib.request

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        m = _METRIC_SAMPLE.match(line)
        if m and m["name"].startswith(prefix):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m["labels"] or ""))
            samples[(m["name"], labels)] = float(m["value"])
    return samples


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    """Run the call, which must fail; return its error (an AssertionError if it succeeded)."""
    try:
        result = call()
    except grpc.RpcError as e:
        return e
    raise AssertionError(f"expected the call to fail, but it succeeded: {str(result).strip()!r}")


def assert_status(err: grpc.RpcError, code: grpc.StatusCode, message: str) -> None:
    assert (err.code(), err.details()) == (code, message), \
        f"expected {code.name} {message!r}, got {err.code().name} {err.details()!r}"


def start_session(client: Client, track: Callable[[Session], Session], prefix: str = "e2e",
                  timeout: float = 90) -> tuple[Session, pb.EchoResponse]:
    """Login and a first Echo (which waits for the session's pod to be Ready)."""
    session = track(client.login(prefix=prefix))
    t0 = time.monotonic()
    reply = client.echo(session, timeout=timeout)
    log(f"session {session.session_id} ({session.resource}) Ready on {reply.pod_name} "
        f"after {time.monotonic() - t0:.1f}s")
    return session, reply


# --------------------------------------------------------------------------- TCP reachability


# Run with python inside a pod: one TCP connection attempt per HOST:PORT argument,
# the outcome per line ("HOST:PORT connected|refused|timed out|error: ..."), exit 0.
TCP_CONNECT_SCRIPT = """
import socket, sys
timeout = float(sys.argv[1])
for target in sys.argv[2:]:
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        outcome = "connected"
    except TimeoutError:
        outcome = "timed out"
    except ConnectionRefusedError:
        outcome = "refused"
    except OSError as e:
        outcome = f"error: {type(e).__name__}: {e}"
    print(target, outcome, flush=True)
"""


def tcp_connect_argv(timeout: float, *targets: str) -> list[str]:
    """The command (python, in the gateway image) that tries each HOST:PORT once."""
    return ["python", "-c", TCP_CONNECT_SCRIPT, str(timeout), *targets]


def connect_outcomes(output: str) -> dict[str, str]:
    """TCP_CONNECT_SCRIPT's output -> {"HOST:PORT": outcome}."""
    return dict(line.split(" ", 1) for line in output.splitlines() if line.strip())
