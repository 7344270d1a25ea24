"""Finding helm and rendering the chart for the chart tests.

helm comes from $MYSERVICE_HELM, else /var/cache/myservice/bin/helm (built by
hack/cluster/build.sh), else PATH. Without it these tests FAIL: CI builds helm.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "myservice"
CACHED_HELM = Path("/var/cache/myservice/bin/helm")


def find_helm() -> str | None:
    explicit = os.environ.get("MYSERVICE_HELM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    if os.access(CACHED_HELM, os.X_OK):
        return str(CACHED_HELM)
    return shutil.which("helm")


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        pytest.fail(
            "helm not found: set MYSERVICE_HELM, or build it into /var/cache/myservice/bin/helm "
            "(hack/cluster/build.sh helm), or put it on PATH", pytrace=False)
    return path


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HELM_CACHE_HOME": "/tmp/myservice-helm-cache",
                               "HELM_CONFIG_HOME": "/tmp/myservice-helm-config",
                               "HELM_DATA_HOME": "/tmp/myservice-helm-data"})


def refusal(helm: str, *settings: str) -> str:
    """helm template's error text for the chart with `settings` (each a --set), which it must refuse."""
    result = run_helm(helm, "template", "rel", str(CHART), *(a for s in settings for a in ("--set", s)))
    assert result.returncode != 0, result.stdout[:2000]
    return result.stderr


@pytest.fixture(scope="session")
def render(helm):
    """render(*helm template args) -> list of manifests (dicts), in order."""
    cache: dict[tuple[str, ...], list[dict]] = {}

    def _render(*args: str, release: str = "rel", namespace: str = "ns") -> list[dict]:
        key = (release, namespace, *args)
        if key not in cache:
            result = run_helm(helm, "template", release, str(CHART), "--namespace", namespace, *args)
            assert result.returncode == 0, result.stderr
            cache[key] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return cache[key]

    return _render


def by_kind_and_name(manifests: list[dict]) -> dict[tuple[str, str], dict]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}
