"""The operator's Kubernetes API calls: a thin adapter over the `kubernetes` client.

Every call is scoped to the one watched namespace, has a request timeout, is
counted by verb, resource and HTTP code (metrics.api_requests), and returns
plain dicts (camelCase, as the API sends them) for the pure modules. Responses
are not turned into the client's model classes (`_preload_content=False`): the
reconciler needs none of them but the session a status patch returns.
No decisions here: they live in the reconciler and the pure modules.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import kubernetes
from kubernetes.client.exceptions import ApiException

from myservice_api import crd, kubeclient

from .pods import instance_selector

# (connect, read) seconds for every request: a hung API call must not hang a handler.
REQUEST_TIMEOUT = (5, 30)
# The Lease's: a renewal must answer well within the give-up time (leadership.py).
LEASE_REQUEST_TIMEOUT = (1, 2)
# status.code label of a request that got no HTTP answer (connection refused, timeout).
NO_ANSWER = 0
# Kept-alive connections to the API server: at least one per thread that calls at
# once (the reconciler's, the Events', the Lease's), so that no request waits for a
# new TLS handshake (milliseconds of CPU each: the scale run's profile).
POOL_CONNECTIONS = 24

Counted = Callable[[str, str, int], None]


class Conflict(Exception):
    """The session changed since it was read (resourceVersion precondition failed)."""


class PodRejected(Exception):
    """The API refused the pod (quota, admission policy, invalid spec): retrying will not help."""


def _not_counted(verb: str, resource: str, code: int) -> None:
    pass


class Kube:
    """The namespaced API calls of the reconciler and of the uninstall cleanup."""

    def __init__(self, namespace: str, count: Counted = _not_counted, *,
                 api_client: kubernetes.client.ApiClient | None = None) -> None:
        self.namespace = namespace
        self._count = count
        # The process's one set of credentials (kopf's watches log in with it too).
        self._api = api_client or kubeclient.api_client(pool_size=POOL_CONNECTIONS)
        self._core = kubernetes.client.CoreV1Api(self._api)
        self._custom = kubernetes.client.CustomObjectsApi(self._api)
        self._coordination = kubernetes.client.CoordinationV1Api(self._api)

    def _call(self, verb: str, resource: str, method: Callable, *args, timeout=REQUEST_TIMEOUT, **kwargs):
        """One request: the raw response (2xx, its body read), counted; ApiException otherwise,
        counted too."""
        try:
            response = method(*args, _request_timeout=timeout, _preload_content=False, **kwargs)
            # Only a response read to its end gives its connection back to the pool: an
            # unread one (a create or delete whose answer we do not need) would cost the
            # next request a new connection and TLS handshake.
            response.data  # noqa: B018 (reads and keeps the body)
            response.release_conn()
        except ApiException as error:
            self._count(verb, resource, error.status or NO_ANSWER)
            raise
        except Exception:
            self._count(verb, resource, NO_ANSWER)
            raise
        self._count(verb, resource, response.status)
        return response

    def _session_call(self, verb: str, method: Callable, *args, resource: str = crd.PLURAL, **kwargs):
        return self._call(verb, resource, method, crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL,
                          *args, **kwargs)

    # --- sessions -------------------------------------------------------------

    def list_sessions(self) -> list[dict]:
        listing = self._session_call("list", self._custom.list_namespaced_custom_object)
        return list(json.loads(listing.data).get("items", []))

    def patch_session_status(self, name: str, resource_version: str, status: Mapping) -> dict:
        """Merge-patch the status only if the session is still at resource_version; the
        session as written (its new resourceVersion and status)."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        try:
            response = self._session_call("patch", self._custom.patch_namespaced_custom_object_status,
                                          name, body, resource=f"{crd.PLURAL}/status")
        except ApiException as error:
            if error.status in (404, 409):
                raise Conflict(f"session {name} changed or is gone ({error.status})") from None
            raise
        return json.loads(response.data)

    def delete_session(self, name: str) -> None:
        try:
            self._session_call("delete", self._custom.delete_namespaced_custom_object, name)
        except ApiException as error:
            if error.status != 404:
                raise

    # --- pods -----------------------------------------------------------------

    def list_instance_pods(self) -> list[dict]:
        listing = self._call("list", "pods", self._core.list_namespaced_pod, self.namespace,
                             label_selector=instance_selector())
        return list(json.loads(listing.data).get("items", []))

    def create_pod(self, manifest: Mapping) -> bool:
        """Create the pod; False if it already exists (a replay: that is success too)."""
        try:
            self._call("create", "pods", self._core.create_namespaced_pod, self.namespace, dict(manifest))
        except ApiException as error:
            if error.status == 409:
                return False
            if error.status in (400, 403, 422):
                raise PodRejected(_api_message(error)) from None
            raise
        return True

    def list_pool_pods(self) -> list[dict]:
        """The warm pool's pods (one LIST at start: what to make before the watch is indexed)."""
        listing = self._call("list", "pods", self._core.list_namespaced_pod, self.namespace,
                             label_selector=f"{instance_selector()},{crd.LABEL_POOL}")
        return list(json.loads(listing.data).get("items", []))

    def claim_pod(self, name: str, patch: Mapping) -> dict:
        """Merge-patch a pool pod (pool.claim_patch carries its resourceVersion); the pod as
        patched. Conflict when it changed or is gone: someone else has it, or it ended."""
        try:
            response = self._call("patch", "pods", self._core.patch_namespaced_pod, name, self.namespace,
                                  dict(patch), _content_type="application/merge-patch+json")
        except ApiException as error:
            if error.status in (404, 409):
                raise Conflict(f"pool pod {name} changed or is gone ({error.status})") from None
            raise
        return json.loads(response.data)

    def delete_pod(self, name: str) -> None:
        try:
            self._call("delete", "pods", self._core.delete_namespaced_pod, name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    # --- the operator's Lease (leadership.py) -----------------------------------

    def get_lease(self, name: str) -> dict:
        response = self._call("get", "leases", self._coordination.read_namespaced_lease, name,
                              self.namespace, timeout=LEASE_REQUEST_TIMEOUT)
        return json.loads(response.data)

    def replace_lease(self, lease: Mapping) -> dict | None:
        """PUT the Lease if it is still at its metadata.resourceVersion; None if it is not (409)."""
        try:
            response = self._call("update", "leases", self._coordination.replace_namespaced_lease,
                                  lease["metadata"]["name"], self.namespace, dict(lease),
                                  timeout=LEASE_REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 409:
                return None
            raise
        return json.loads(response.data)

    # --- events ---------------------------------------------------------------

    def create_event(self, event: Mapping) -> None:
        self._call("create", "events", self._core.create_namespaced_event, self.namespace, dict(event))


def _api_message(error: ApiException) -> str:
    """The Status message of an API error (e.g. 'exceeded quota: ...'), else its reason."""
    try:
        return json.loads(error.body or "")["message"]
    except (ValueError, KeyError, TypeError):
        return f"{error.status} {error.reason}"
