"""Fixtures of the e2e suite: one fresh namespace and one Helm release per run,
a way to the in-cluster gateway, a session tracker that frees capacity after
each test, and a dump of the cluster's state when a check fails.

Environment (all optional; see e2e/README.md):
  KUBECONFIG                    the cluster (default: $MYSERVICE_E2E_STATE/kubeconfig if it exists)
  MYSERVICE_E2E_KUBECTL, _HELM  binaries (default kubectl, helm; or $MYSERVICE_KUBECTL/$MYSERVICE_HELM)
  MYSERVICE_E2E_NAMESPACE       namespace to create (default myservice-e2e-<random>; must not exist)
  MYSERVICE_E2E_RELEASE         Helm release name (default myservice)
  MYSERVICE_E2E_GATEWAY_IMAGE   default myservice-gateway:dev
  MYSERVICE_E2E_SERVICE_IMAGE   default myservice-service:dev
  MYSERVICE_E2E_GATEWAY         host:port of the gateway; default: a `kubectl port-forward` the suite starts
  MYSERVICE_E2E_VALUES          extra values files (comma-separated), after helm/myservice/ci/e2e-values.yaml
  MYSERVICE_E2E_FINISHED_TTL    operator.finishedTtlSeconds for the run (default 20)
  MYSERVICE_E2E_POD_SECURITY    Pod Security level enforced on the namespace (default restricted; "" = none)
  MYSERVICE_E2E_KEEP=1          keep the namespace and release after the run
  MYSERVICE_E2E_REUSE=1         with MYSERVICE_E2E_NAMESPACE of a kept run: use that release as it is
                                (no install, no teardown; e.g. to re-run one check while debugging)
  MYSERVICE_E2E_ARTIFACTS       where failure dumps go (default /tmp/myservice-e2e-artifacts/<namespace>)
  MYSERVICE_E2E_TIMEOUT_SCALE   multiply every wait (default 1; e.g. 2 on a slow machine)
"""
from __future__ import annotations

import dataclasses
import re
import time

import pytest

import framework as fw
from framework import crd

_KUBE: fw.Kube | None = None


@pytest.fixture(scope="session")
def cfg() -> fw.Config:
    return fw.Config.from_env()


@pytest.fixture(scope="session")
def kube(cfg: fw.Config) -> fw.Kube:
    global _KUBE
    _KUBE = fw.Kube(cfg)
    return _KUBE


@pytest.fixture(scope="session")
def t(cfg: fw.Config):
    """Scale a timeout: t(60) -> 60 s times MYSERVICE_E2E_TIMEOUT_SCALE."""
    return lambda seconds: seconds * cfg.timeout_scale


@dataclasses.dataclass
class Release:
    name: str
    namespace: str
    values: dict
    install_seconds: float
    adopted_crd: bool
    uninstalled: bool = False

    @property
    def max_sessions(self) -> int:
        return int(self.values["operator"]["maxSessions"])

    @property
    def finished_ttl(self) -> int:
        return int(self.values["operator"]["finishedTtlSeconds"])

    @property
    def settle_seconds(self) -> int:
        """How long a check gives the operator to act on what it has seen before it asserts
        that nothing (more) happened: it acts on each event at once, and has no periodic
        re-check to wait for; this covers a loaded machine."""
        return 4

    @property
    def owns_crd(self) -> bool:
        return bool(self.values.get("crds", {}).get("install", True))

    @property
    def crd_kept(self) -> bool:
        """Whether the CRD must survive `helm uninstall`: the chart keeps it
        (crds.keep), or this release never owned it (crds.install=false)."""
        crds = self.values.get("crds", {})
        return not self.owns_crd or bool(crds.get("keep", True))


def _prepare_crd(kube: fw.Kube, cfg: fw.Config) -> tuple[list[str], bool]:
    """A cluster-wide CRD kept by an earlier run's `helm uninstall` (resource-policy keep)
    belongs to a release that no longer exists: Helm refuses to install over it. Adopt it
    (re-annotate it to this release) when its old namespace is gone; if a live release
    elsewhere owns it, leave it alone and install without the CRD."""
    name = f"{crd.PLURAL}.{crd.GROUP}"
    existing = kube.get("crd", name, namespaced=False)
    if existing is None:
        return [], False
    ann = existing["metadata"].get("annotations") or {}
    owner_ns = ann.get("meta.helm.sh/release-namespace")
    if owner_ns and kube.get("namespace", owner_ns, namespaced=False) is None:
        fw.log(f"CRD {name} is left from release {ann.get('meta.helm.sh/release-name')} in deleted namespace "
               f"{owner_ns}: adopting it into this release")
        kube.kubectl("annotate", "--overwrite", "crd", name, f"meta.helm.sh/release-name={cfg.release}",
                     f"meta.helm.sh/release-namespace={cfg.namespace}", namespaced=False)
        kube.kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm", namespaced=False)
        return [], True
    fw.log(f"CRD {name} exists and is owned by {owner_ns or 'nobody (not Helm)'}: installing with crds.install=false")
    return ["crds.install=false"], False


@pytest.fixture(scope="session")
def release(cfg: fw.Config, kube: fw.Kube, t):
    """`helm install` into a fresh namespace (ci/e2e-values.yaml + image overrides + short TTL)."""
    fw.log(f"cluster: {kube.kubectl('config', 'view', '--minify', '-o', 'jsonpath={.clusters[0].cluster.server}', namespaced=False)} "
           f"namespace={cfg.namespace} release={cfg.release} images={cfg.gateway_image}, {cfg.service_image}")
    if cfg.reuse and kube.get("namespace", cfg.namespace, namespaced=False) is not None:
        # debugging: the release of an earlier MYSERVICE_E2E_KEEP=1 run, as it is now
        fw.log(f"MYSERVICE_E2E_REUSE=1: using the existing release {cfg.release} in {cfg.namespace} (no install, no teardown)")
        yield Release(cfg.release, cfg.namespace, _installed_values(kube, cfg), 0.0, False)
        return
    assert kube.get("namespace", cfg.namespace, namespaced=False) is None, \
        f"namespace {cfg.namespace} exists already: the suite wants a fresh one (unset MYSERVICE_E2E_NAMESPACE, or MYSERVICE_E2E_REUSE=1)"
    kube.kubectl("create", "namespace", cfg.namespace, namespaced=False)
    if cfg.pod_security:
        kube.kubectl("label", "namespace", cfg.namespace, f"pod-security.kubernetes.io/enforce={cfg.pod_security}",
                     f"pod-security.kubernetes.io/warn={cfg.pod_security}", namespaced=False)
    wait_until_sa(kube, t(60))
    extra_sets, adopted = _prepare_crd(kube, cfg)
    cfg.set_values += extra_sets
    argv = ["install", cfg.release, str(fw.CHART)]
    for f in cfg.values_files:
        argv += ["-f", f]
    for s in cfg.set_values + cfg.image_sets():
        argv += ["--set", s]
    t0 = time.monotonic()
    fw.log("$ helm -n " + cfg.namespace + " " + " ".join(argv))
    out = kube.helm(*argv, timeout=t(300))
    rel = Release(cfg.release, cfg.namespace, cfg.helm_values(), time.monotonic() - t0, adopted)
    fw.log(f"helm install done in {rel.install_seconds:.1f}s:\n" + "\n".join(out.splitlines()[:8]))
    yield rel
    if cfg.keep:
        fw.log(f"MYSERVICE_E2E_KEEP=1: leaving namespace {cfg.namespace} (release {cfg.release}) in place")
        return
    _teardown(kube, cfg, rel, t)


def _installed_values(kube: fw.Kube, cfg: fw.Config) -> dict:
    """The values the existing release was installed with (all of them, computed)."""
    values = fw.json.loads(kube.helm("get", "values", cfg.release, "--all", "-o", "json"))
    return values


def wait_until_sa(kube: fw.Kube, timeout: float) -> None:
    fw.wait_until(f"ServiceAccount default in {kube.ns}", lambda: kube.get("serviceaccount", "default"), timeout)


def _teardown(kube: fw.Kube, cfg: fw.Config, rel: Release, t) -> None:
    """Leave nothing behind: sessions first (the operator's finalizer needs the operator),
    then the release, then the namespace."""
    fw.log(f"teardown: deleting namespace {cfg.namespace}")
    try:
        if not rel.uninstalled:
            kube.kubectl("delete", crd.PLURAL, "--all", "--wait=true", "--timeout=60s", check=False, timeout=90)
            kube.helm("uninstall", cfg.release, "--wait", "--timeout", "120s", check=False, timeout=180)
        # sessions left with the operator's finalizer and no operator: release them
        for item in kube.items(crd.PLURAL):
            if item["metadata"].get("finalizers"):
                kube.kubectl("patch", crd.PLURAL, item["metadata"]["name"], "--type=merge",
                             "-p", '{"metadata":{"finalizers":null}}', check=False)
        kube.kubectl("delete", "namespace", cfg.namespace, "--wait=true", "--timeout=180s",
                     namespaced=False, check=False, timeout=200)
    except Exception as e:  # noqa: BLE001 - teardown must not hide the test results
        fw.log(f"teardown incomplete: {e}")


@pytest.fixture(scope="session")
def installed(release: Release, kube: fw.Kube, t) -> Release:
    """The release with its operator and gateway Available (for checks that only need it running)."""
    assert not release.uninstalled, "the release was uninstalled by an earlier check"
    kube.wait_deployment(kube.operator_deploy, t(240))
    kube.wait_deployment(kube.gateway_deploy, t(240))
    return release


class Gateway:
    """How the suite reaches the in-cluster gateway: a fixed address, or a port-forward
    to the Service it starts (and restarts when its pod went away)."""

    def __init__(self, cfg: fw.Config, kube: fw.Kube):
        self.cfg, self.kube = cfg, kube
        self.forward: fw.PortForward | None = None

    @property
    def address(self) -> str:
        if self.cfg.gateway_address:
            return self.cfg.gateway_address
        if self.forward is None:
            self.forward = fw.PortForward(self.kube, f"svc/{self.kube.gateway_deploy}", 10000).start()
            fw.log(f"gateway reached through `kubectl port-forward svc/{self.kube.gateway_deploy}` at {self.forward.address}")
        return self.forward.address

    def reset(self) -> None:
        if self.forward is not None:
            self.forward.stop()
            self.forward = None

    def client(self, **kw) -> fw.Client:
        return fw.Client(self.address, **kw)


@pytest.fixture(scope="session")
def gateway(cfg: fw.Config, kube: fw.Kube, installed: Release):
    gw = Gateway(cfg, kube)
    yield gw
    gw.reset()


@pytest.fixture
def client(gateway: Gateway):
    with gateway.client() as c:
        yield c


class Sessions:
    """Sessions a test created; at its end they are deleted and their pods awaited
    gone, so the next test starts with every slot free."""

    def __init__(self, kube: fw.Kube, t):
        self.kube, self.t = kube, t
        self.resources: list[str] = []

    def add(self, session: fw.Session) -> fw.Session:
        self.resources.append(session.resource)
        return session

    def cleanup(self) -> None:
        if not self.resources:
            return
        self.kube.kubectl("delete", crd.PLURAL, *self.resources, "--ignore-not-found", "--wait=false", check=False)
        names = set(self.resources)

        def gone() -> bool:
            left = [p["metadata"]["name"] for p in self.kube.session_pods()
                    if p["metadata"].get("labels", {}).get(crd.LABEL_SESSION) in names]
            left += [m["metadata"]["name"] for m in self.kube.items(crd.PLURAL) if m["metadata"]["name"] in names]
            return not left
        fw.wait_until(f"the test's sessions and pods to be deleted ({', '.join(sorted(names))})", gone, self.t(90))


@pytest.fixture
def sessions(kube: fw.Kube, t, installed: Release):
    s = Sessions(kube, t)
    yield s
    s.cleanup()


def wait_no_live_session_pods(kube: fw.Kube, timeout: float) -> None:
    def none_live():
        live = [p["metadata"]["name"] for p in kube.session_pods()
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        return not live or None
    fw.wait_until("no live session pods (every slot free)", none_live, timeout)


# --------------------------------------------------------------------------- failure dump


_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when not in ("setup", "call") or not rep.failed or _KUBE is None:
        return
    try:
        text = _KUBE.diagnostics()
    except Exception as e:  # noqa: BLE001
        text = f"(could not collect the cluster state: {e})"
    path = _KUBE.cfg.artifacts / f"{_SAFE.sub('_', item.nodeid)}.{rep.when}.txt"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        where = f"(also written to {path})"
    except OSError as e:
        where = f"(could not write {path}: {e})"
    rep.sections.append((f"cluster state at failure {where}", text))
