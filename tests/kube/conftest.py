"""Fixtures on a real API server (apiserver.py): one etcd + kube-apiserver for the
whole session, the project's CRD applied through the API, a fresh namespace per test."""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import kubernetes
import pytest
import yaml

from myservice_api import crd

from . import apiserver

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "myservicesessions.yaml"
_started: list[str] = []
_namespaces = itertools.count(1)


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory):
    """The running API server (host, token, kubeconfig, api_client())."""
    absent = apiserver.missing()
    if absent:
        pytest.skip(f"no {', '.join(p.name for p in absent)} in {apiserver.bin_dir()}: `make test` builds them "
                    f"(bash {apiserver.build_script_shown()} etcd kube-apiserver), "
                    f"or set MYSERVICE_KUBE_BIN")
    server = apiserver.APIServer(tmp_path_factory.mktemp("envtest"))
    try:
        server.start()
        _started.append(f"etcd + kube-apiserver ready in {server.started_in:.1f}s")
        begun = time.monotonic()
        _install_crd(server.api_client())
        _started.append(f"CRD established in {time.monotonic() - begun:.1f}s")
        yield server
    finally:
        server.stop()


@pytest.fixture
def api_client(kube) -> kubernetes.client.ApiClient:
    client = kube.api_client()
    yield client
    client.close()


@pytest.fixture
def namespace(api_client) -> str:
    """A namespace of the test's own (never deleted: no namespace controller runs; the
    server goes with the session)."""
    name = f"t{next(_namespaces)}"
    kubernetes.client.CoreV1Api(api_client).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture
def custom(api_client) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client)


def pytest_terminal_summary(terminalreporter) -> None:
    if _started:
        terminalreporter.write_line(f"envtest: {'; '.join(_started)}")


def _install_crd(client: kubernetes.client.ApiClient, timeout: float = 30.0) -> None:
    """Create the CRD and wait until its resource is served."""
    kubernetes.client.ApiextensionsV1Api(client).create_custom_resource_definition(
        yaml.safe_load(CRD_FILE.read_text()))
    custom = kubernetes.client.CustomObjectsApi(client)
    deadline = time.monotonic() + timeout
    while True:
        try:
            custom.list_namespaced_custom_object(crd.GROUP, crd.VERSION, "default", crd.PLURAL)
            return
        except kubernetes.client.ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)
