"""What the tests on the real API server do in place of the operator and of time."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import kubernetes

from myservice_api import crd
from myservice_api.names import resource_name


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)


def create_session(custom: kubernetes.client.CustomObjectsApi, namespace: str, user: str, session_id: str,
                   *, name: str | None = None) -> dict:
    """A MyServiceSession made by hand (as another gateway, or a person, would)."""
    body = {"apiVersion": crd.API_VERSION, "kind": crd.KIND,
            "metadata": {"name": name or resource_name(user, session_id)},
            "spec": {"sessionId": session_id, "user": user, "role": "user"}}
    return custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, body)


def write_status(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str, **status) -> dict:
    """Through the status subresource, as the operator writes it."""
    return custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, name,
                                                        {"status": status})


def ready(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str,
          ip: str = "10.1.2.3", port: int = 50051) -> dict:
    return write_status(custom, namespace, name, phase=crd.Phase.READY.value, podName=f"{name}-pod",
                        podIP=ip, port=port, readyAt="2026-12-04T12:00:00Z")


def delete_session(custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str) -> None:
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, name)


def names_in_api(custom: kubernetes.client.CustomObjectsApi, namespace: str) -> set[str]:
    listing = custom.list_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL)
    return {o["metadata"]["name"] for o in listing["items"]}
