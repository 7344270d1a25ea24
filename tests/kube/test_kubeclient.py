"""The one load of credentials (myservice_api.kubeclient) on a real API server:
in a pod (the service account's token and CA), else the kubeconfig; the
operator's client, kopf's login and the gateway all use it."""
from __future__ import annotations

import asyncio

import kopf
import kubernetes.config.incluster_config as incluster_config
import kubernetes.config.kube_config as kube_config
import pytest

from myservice_api import kubeclient
from myservice_gateway.backends.kubernetes import KubernetesBackend
from myservice_operator import clients, handlers


@pytest.fixture(autouse=True)
def fresh_credentials():
    kubeclient.use(None)
    yield
    kubeclient.use(None)


def test_credentials_are_loaded_once_from_the_kubeconfig(kube, monkeypatch):
    """Outside a pod (no service account), once: the operator's client and kopf's login use it."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # $KUBECONFIG, as the client read it at its import:
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kube.kubeconfig))
    assert kubeclient.configuration().host == kube.host
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", "/nonexistent")  # not read again
    assert clients.Kube("default").list_sessions() == []
    info = handlers.login(settings=kopf.OperatorSettings())
    assert (info.server, info.scheme, info.token, info.ca_path) == (kube.host, "Bearer", kube.token,
                                                                    str(kube.ca_path))


def test_in_a_pod_the_service_account_is_used(kube, tmp_path, monkeypatch):
    """KUBERNETES_SERVICE_HOST/PORT and the mounted token and CA, as in the gateway's and
    the operator's pods; the kubeconfig is not read."""
    (tmp_path / "token").write_text(kube.token)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(kube.ca_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", kube.host.rsplit(":", 1)[1])
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", "/nonexistent")
    assert clients.Kube("default").list_sessions() == []
    credentials = kubeclient.credentials()
    assert (credentials.server, credentials.token) == (kube.host, kube.token)


async def test_the_gateway_uses_them_too(kube, namespace, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kube.kubeconfig))
    backend = KubernetesBackend(namespace=namespace, ready_timeout=1)
    await backend.start()  # lists the namespace's sessions: synced
    await backend.close()
    await asyncio.to_thread(backend._cache.reflector.stop)
