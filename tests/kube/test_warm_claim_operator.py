"""The warm claim on a real API server, by the real operator (kopf, its indexes, the
reconciler, clients.Kube): the test plays kubelet (pods' status) and the gateway
(it creates the sessions). What the fake Kube shows for the logic, proved here for
the writes: the session's status, Ready on a pool pod, is the first and only request
of the claim before Ready; the labels and owner follow; a burst never names one pod
twice; and a new operator that starts after the status write but before the labels
(the old one died between them) keeps the pod for its session and labels it."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import threading

import kopf
import kubernetes
from kopf._cogs.aiokits import aiotoggles
import pytest

from myservice_api import crd, kubeclient
from myservice_operator import clients, handlers, kopffixes
from myservice_operator.reconciler import Reconciler
from myservice_operator.settings import Settings

from .helpers import create_session, eventually

POOL = 4


def settings(namespace: str) -> Settings:
    return Settings(namespace=namespace, max_sessions=20, warm_pool_size=POOL, warm_pool_max_starting=POOL,
                    ready_timeout_seconds=60, finished_ttl_seconds=300, watch_timeout_seconds=60)


class Recorded(clients.Kube):
    """The operator's real client, every request logged in order with what it was about."""

    def __init__(self, namespace: str, api_client) -> None:
        super().__init__(namespace, api_client=api_client)
        self.log: list[tuple[str, str]] = []  # (request, object name)
        self.lock = threading.Lock()
        self.refuse_labels = False  # the operator "dies" before its label patches

    def _note(self, what: str, name: str) -> None:
        with self.lock:
            self.log.append((what, name))

    def patch_session_status(self, name, resource_version, status):
        self._note(f"status {status.get('phase', '')}", name)
        return super().patch_session_status(name, resource_version, status)

    def claim_pod(self, name, patch):
        if self.refuse_labels:
            raise ConnectionError("the operator died before its label patch")
        self._note("label", name)
        return super().claim_pod(name, patch)

    def create_pod(self, manifest):
        self._note("create pod", manifest["metadata"]["name"])
        return super().create_pod(manifest)

    def delete_pod(self, name):
        self._note("delete pod", name)
        return super().delete_pod(name)


@contextlib.asynccontextmanager
async def operator(namespace: str, kube: clients.Kube):
    """The operator as __main__ runs it (kopf with our registry and settings), in this loop."""
    registry = kopf.OperatorRegistry()
    handlers.register(registry, Reconciler(settings(namespace), kube))
    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(registry=registry, settings=handlers.kopf_settings(settings(namespace)),
                                             namespaces=[namespace], clusterwide=False, standalone=True,
                                             stop_flag=stop))
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


async def kubelet(core: kubernetes.client.CoreV1Api, namespace: str, stop: asyncio.Event) -> None:
    """Every instance pod becomes Ready with an IP of its own (no node runs them here)."""
    done: set[str] = set()
    while not stop.is_set():
        pods = await asyncio.to_thread(core.list_namespaced_pod, namespace)
        for pod in pods.items:
            name = pod.metadata.name
            if name in done or pod.metadata.deletion_timestamp:
                continue
            ip = f"10.9.{len(done) // 250}.{len(done) % 250 + 1}"
            status = {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                                 "conditions": [{"type": "Ready", "status": "True"}]}}
            await asyncio.to_thread(core.patch_namespaced_pod_status, name, namespace, status)
            done.add(name)
        await asyncio.sleep(0.05)


@pytest.fixture
async def cluster(kube, api_client, namespace, monkeypatch):
    """The process's credentials on the test server (kopf logs in with them), our kopf fix
    as __main__ installs it (undone after: kopf's own class is another test's subject), and
    a kubelet."""
    monkeypatch.setattr(aiotoggles, "ToggleSet", aiotoggles.ToggleSet)
    kopffixes.install()
    kubeclient.use(kube.configuration())
    core = kubernetes.client.CoreV1Api(api_client)
    stop = asyncio.Event()
    task = asyncio.create_task(kubelet(core, namespace, stop))
    yield core
    stop.set()
    await task
    kubeclient.use(None)


def sessions(custom, namespace) -> dict[str, dict]:
    listing = custom.list_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL)
    return {o["metadata"]["name"]: o for o in listing["items"]}


def pool_pods(core, namespace) -> dict[str, dict]:
    pods = core.list_namespaced_pod(namespace, label_selector=crd.LABEL_POOL).items
    return {p.metadata.name: p for p in pods if not p.metadata.deletion_timestamp and p.status.pod_ip}


async def full_pool(core, namespace) -> set[str]:
    await eventually(lambda: len(pool_pods(core, namespace)) == POOL, 30, "the pool made and Ready")
    await asyncio.sleep(0.5)  # the operator's index has them Ready too
    return set(pool_pods(core, namespace))


def assert_labelled(core, custom, namespace) -> dict[str, str]:
    """Every warm session's pod labelled and owned as its own, no pod named twice; pod -> session."""
    named = collections.defaultdict(list)
    for name, body in sessions(custom, namespace).items():
        st = body.get("status") or {}
        if st.get("podSource") == "warm":
            named[st["podName"]].append(name)
    assert all(len(v) == 1 for v in named.values()), named
    for pod, (session,) in named.items():
        metadata = core.read_namespaced_pod(pod, namespace).metadata
        assert metadata.labels.get(crd.LABEL_SESSION) == session and crd.LABEL_POOL not in metadata.labels
        assert [r.uid for r in metadata.owner_references] == [sessions(custom, namespace)[session]["metadata"]["uid"]]
    return {pod: sessions_[0] for pod, sessions_ in named.items()}


def all_ready(custom, namespace, names) -> bool:
    current = sessions(custom, namespace)
    return all((current[n].get("status") or {}).get("phase") == "Ready" for n in names)


async def test_a_burst_of_warm_claims_is_one_status_write_each_then_the_labels(cluster, api_client, custom,
                                                                                namespace):
    core = cluster
    kube = Recorded(namespace, api_client)
    async with operator(namespace, kube):
        members = await full_pool(core, namespace)
        start = len(kube.log)
        burst = [create_session(custom, namespace, "alice", f"b{i}")["metadata"]["name"] for i in range(POOL + 2)]
        await eventually(lambda: all_ready(custom, namespace, burst), 30, "the burst Ready")
        await eventually(lambda: not (set(pool_pods(core, namespace)) & members), 10, "the warm pods labelled")
        await asyncio.sleep(0.3)
        named = assert_labelled(core, custom, namespace)
        assert set(named) == members  # the pool's pods, one per session
        log = kube.log[start:]
        for pod, session in named.items():
            about = [what for what, name in log if name in (pod, session)]
            # the claim's critical path is its first request: the status, Ready; the labels after
            assert about[0] == "status Ready" and about.index("label") > 0, about
            assert about.count("status Ready") == 1 and about.count("label") == 1, about
            assert "delete pod" not in about
        warm = len(named)
        assert sum(1 for what, name in log if what == "label") == warm  # no retry, no conflict
        # two writes per claim in all (the Event and the pool's refill besides)
        assert sum(1 for what, name in log if name in named or name in named.values()) == 2 * warm


async def test_a_new_operator_after_a_death_between_the_two_writes_keeps_and_labels_the_pod(
        cluster, api_client, custom, namespace):
    core = cluster
    first = Recorded(namespace, api_client)
    async with operator(namespace, first):
        members = await full_pool(core, namespace)
        first.refuse_labels = True  # it dies between its status write and its label patch
        session = create_session(custom, namespace, "alice", "s1")["metadata"]["name"]
        await eventually(lambda: all_ready(custom, namespace, [session]), 15, "s1 Ready")
    pod = sessions(custom, namespace)[session]["status"]["podName"]
    assert pod in members and crd.LABEL_POOL in core.read_namespaced_pod(pod, namespace).metadata.labels
    second = Recorded(namespace, api_client)
    async with operator(namespace, second):
        burst = [create_session(custom, namespace, "bob", f"n{i}")["metadata"]["name"] for i in range(POOL + 1)]
        await eventually(lambda: all_ready(custom, namespace, burst), 30, "the burst Ready")
        await eventually(lambda: crd.LABEL_SESSION in core.read_namespaced_pod(pod, namespace).metadata.labels,
                         10, "s1's pod labelled by the new operator")
        await asyncio.sleep(0.5)
        named = assert_labelled(core, custom, namespace)
        assert named[pod] == session  # kept for s1, named by no one else
        assert ("delete pod", pod) not in second.log
        assert sessions(custom, namespace)[session]["status"]["phase"] == "Ready"
