"""The instance pod of a session, as a plain manifest dict (pure, no I/O).

One pod per MyServiceSession, named names.pod_name(resource) (never generateName,
so a replayed create finds the existing pod instead of making a second one),
owned by the session (deleting the session deletes the pod), and meeting the
Pod Security "restricted" profile. The session's idle timeout and maximum
lifetime go to the instance in its env; activeDeadlineSeconds backs the lifetime.
"""
from __future__ import annotations

from myservice_api import crd
from myservice_api.names import pod_name

from .settings import Settings

# The instance image runs as this non-root user (see service_image/).
INSTANCE_UID = 10001
CONTAINER_NAME = "instance"
# activeDeadlineSeconds = max lifetime + this.
LIFETIME_DEADLINE_MARGIN_SECONDS = 60
# Where the instance writes why it ended (its --termination-log default).
TERMINATION_MESSAGE_PATH = "/dev/termination-log"


def instance_labels(resource: str) -> dict[str, str]:
    """Labels of a session's pod: which session, and that it is one of our instances."""
    return {
        crd.LABEL_NAME: crd.APP_NAME,
        crd.LABEL_COMPONENT: crd.COMPONENT_INSTANCE,
        crd.LABEL_MANAGED_BY: crd.MANAGED_BY,
        crd.LABEL_SESSION: resource,
    }


def instance_selector() -> str:
    """Label selector matching every instance pod this operator manages."""
    return (f"{crd.LABEL_COMPONENT}={crd.COMPONENT_INSTANCE},"
            f"{crd.LABEL_MANAGED_BY}={crd.MANAGED_BY}")


def owner_reference(resource: str, uid: str) -> dict:
    """The session as the pod's controlling owner (garbage collection deletes the pod with it)."""
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "name": resource,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def active_deadline_seconds(max_lifetime_seconds: int) -> int | None:
    """The pod's activeDeadlineSeconds: the backstop for an instance that does not end
    at its maximum lifetime (hung); None when the lifetime is off. The margin covers
    the time between the pod's start and the instance's, and its stop grace."""
    if not max_lifetime_seconds:
        return None
    return max_lifetime_seconds + LIFETIME_DEADLINE_MARGIN_SECONDS


def make_pod(*, resource: str, uid: str, session_id: str, settings: Settings) -> dict:
    """The pod manifest for the session named `resource` (uid = the session's metadata.uid)."""
    port = settings.instance_port
    spec: dict = {
        # The instance exits 0 after MyServiceShutdown: that is the end, not a crash.
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.instance_termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": INSTANCE_UID,
            "runAsGroup": INSTANCE_UID,
            "fsGroup": INSTANCE_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [{
            "name": CONTAINER_NAME,
            "image": settings.instance_image,
            "imagePullPolicy": settings.instance_image_pull_policy,
            "ports": [{"name": crd.INSTANCE_PORT_NAME, "containerPort": port, "protocol": "TCP"}],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "MYSERVICE_INSTANCE_PORT", "value": str(port)},
                # The instance enforces its limits itself: no API call per call or per
                # session; it says why it ended in its termination message.
                {"name": "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS",
                 "value": str(settings.session_idle_timeout_seconds)},
                {"name": "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS",
                 "value": str(settings.session_max_lifetime_seconds)},
            ],
            "resources": {
                "requests": {
                    "cpu": settings.instance_cpu_request,
                    "memory": settings.instance_memory_request,
                },
                "limits": {
                    "cpu": settings.instance_cpu_limit,
                    "memory": settings.instance_memory_limit,
                },
            },
            # The instance serves grpc.health.v1 on its port.
            "readinessProbe": {
                "grpc": {"port": port},
                "periodSeconds": 2,
                "timeoutSeconds": 3,  # the default 1 s fails spuriously on a busy node
                "failureThreshold": 3,
            },
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            },
            # The instance writes "<Reason>: <message>" here when its idle timeout or
            # lifetime ends it (kubelet's default, spelled out: statuses.py reads it).
            "terminationMessagePath": TERMINATION_MESSAGE_PATH,
            "terminationMessagePolicy": "File",
            # /tmp stays writable for Python and gRPC despite the read-only root.
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if settings.instance_service_account:
        spec["serviceAccountName"] = settings.instance_service_account
    deadline = active_deadline_seconds(settings.session_max_lifetime_seconds)
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(resource),
            "namespace": settings.namespace,
            "labels": instance_labels(resource),
            "annotations": {crd.ANNOTATION_SESSION_ID: session_id},
            "ownerReferences": [owner_reference(resource, uid)],
        },
        "spec": spec,
    }
