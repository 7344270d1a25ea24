"""The operator's Kubernetes API calls: a thin adapter over the `kubernetes` client.

Every call is scoped to the one watched namespace, has a request timeout, and
returns plain dicts (camelCase, as the API sends them) for the pure modules.
No decisions here: they live in statuses.py.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

import kubernetes
from kubernetes.client.exceptions import ApiException

from myservice import crd

from .pods import instance_selector

# (connect, read) seconds for every request: a hung API call must not hang a handler.
REQUEST_TIMEOUT = (5, 30)


class Conflict(Exception):
    """The session changed since it was read (resourceVersion precondition failed)."""


class PodRejected(Exception):
    """The API refused the pod (quota, admission policy, invalid spec): retrying will not help."""


def load_config() -> None:
    """In-cluster service account credentials, else the local kubeconfig (development)."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


class Kube:
    """The namespaced API calls the handlers make."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._api = kubernetes.client.ApiClient()
        self._core = kubernetes.client.CoreV1Api(self._api)
        self._custom = kubernetes.client.CustomObjectsApi(self._api)

    # --- sessions -------------------------------------------------------------

    def get_session(self, name: str) -> dict | None:
        try:
            return self._custom.get_namespaced_custom_object(
                crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, name,
                _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def list_sessions(self) -> list[dict]:
        listing = self._custom.list_namespaced_custom_object(
            crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, _request_timeout=REQUEST_TIMEOUT)
        return list(listing.get("items", []))

    def patch_session_status(self, name: str, resource_version: str, status: Mapping) -> dict:
        """Merge-patch the status only if the session is still at resource_version."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        try:
            return self._custom.patch_namespaced_custom_object_status(
                crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, name, body,
                _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status in (404, 409):
                raise Conflict(f"session {name} changed or is gone ({error.status})") from None
            raise

    def set_session_finalizers(self, name: str, resource_version: str, finalizers: list[str]) -> None:
        """Replace metadata.finalizers if the session is still at resource_version (gone: fine)."""
        body = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers or None}}
        try:
            self._custom.patch_namespaced_custom_object(
                crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, name, body,
                _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def delete_session(self, name: str) -> None:
        try:
            self._custom.delete_namespaced_custom_object(
                crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, name,
                _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status != 404:
                raise

    # --- pods -----------------------------------------------------------------

    def get_pod(self, name: str) -> dict | None:
        try:
            pod = self._core.read_namespaced_pod(name, self.namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return self._api.sanitize_for_serialization(pod)

    def list_instance_pods(self) -> list[dict]:
        listing = self._core.list_namespaced_pod(
            self.namespace, label_selector=instance_selector(), _request_timeout=REQUEST_TIMEOUT)
        return [self._api.sanitize_for_serialization(pod) for pod in listing.items]

    def create_pod(self, manifest: Mapping) -> bool:
        """Create the pod; False if it already exists (a replay: that is success too)."""
        try:
            self._core.create_namespaced_pod(self.namespace, dict(manifest), _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 409:
                return False
            if error.status in (400, 403, 422):
                raise PodRejected(_api_message(error)) from None
            raise
        return True

    def delete_pod(self, name: str) -> None:
        try:
            self._core.delete_namespaced_pod(name, self.namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status != 404:
                raise


def _api_message(error: ApiException) -> str:
    """The Status message of an API error (e.g. 'exceeded quota: ...'), else its reason."""
    try:
        return json.loads(error.body or "")["message"]
    except (ValueError, KeyError, TypeError):
        return f"{error.status} {error.reason}"
