"""The instance pod of a session, as a plain manifest dict (pure, no I/O).

One pod per MyServiceSession, named names.pod_name(resource) (never generateName,
so a replayed create finds the existing pod instead of making a second one),
owned by the session (deleting the session deletes the pod), and meeting the
Pod Security "restricted" profile. The session's idle timeout and maximum
lifetime go to the instance in its env; activeDeadlineSeconds backs the lifetime.

An installer's pod template (chart value instance.podTemplate, a PodTemplateSpec:
placement, pull secrets, priority, extra labels/annotations, resources, security
context, sidecars) is merged in by apply_template: it may add anything and refine
the defaults, but never change what the operator owns (OWNED_*: identity, owner,
session labels, restartPolicy, lifetime deadline, the instance container's name,
image, command, ports, env, readiness probe, termination message).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from myservice_api import crd
from myservice_api.names import pod_name

if TYPE_CHECKING:  # settings.py checks templates with this module: no import cycle
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


# The names of instance_env's variables: the operator's, a template may add others.
INSTANCE_ENV_NAMES = ("POD_NAME", "MYSERVICE_INSTANCE_PORT", "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS",
                      "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS")


def instance_env(settings: Settings) -> list[dict]:
    """The instance container's env (INSTANCE_ENV_NAMES, in this order)."""
    return [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MYSERVICE_INSTANCE_PORT", "value": str(settings.instance_port)},
        # The instance enforces its limits itself: no API call per call or per
        # session; it says why it ended in its termination message.
        {"name": "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS",
         "value": str(settings.session_idle_timeout_seconds)},
        {"name": "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS",
         "value": str(settings.session_max_lifetime_seconds)},
    ]


def make_pod(*, resource: str, uid: str, session_id: str, settings: Settings) -> dict:
    """The pod manifest for the session named `resource` (uid = the session's metadata.uid),
    with the settings' pod template merged in (apply_template)."""
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
            "env": instance_env(settings),
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
            # The instance serves grpc.health.v1 on its port. kubelet probes once as the
            # container starts (too early: Python is still importing) and then every
            # period: 1 s, so a cold session waits at most ~1 s past the instance's start.
            "readinessProbe": {
                "grpc": {"port": port},
                "periodSeconds": 1,
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
            # lifetime ends it (kubelet's default, spelled out: podstate.py reads it).
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
    pod = {
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
    return apply_template(pod, settings.instance_pod_template) if settings.instance_pod_template else pod


# --- the installer's pod template ----------------------------------------------

# What the operator decides and a template may not set (template_problems says so;
# apply_template keeps the operator's value even if asked to). Everything else is
# the template's to add or refine.
OWNED_METADATA = ("name", "generateName", "namespace", "ownerReferences")
# The labels the operator's watch, the NetworkPolicy and routing select on, and
# the session-id annotation (read back by nobody but a human: still the session's).
OWNED_LABELS = (crd.LABEL_NAME, crd.LABEL_COMPONENT, crd.LABEL_MANAGED_BY, crd.LABEL_SESSION)
OWNED_ANNOTATIONS = (crd.ANNOTATION_SESSION_ID,)
# restartPolicy: the instance's exit 0 after Shutdown is the end; activeDeadlineSeconds:
# the lifetime's backstop, derived from session.maxLifetimeSeconds.
OWNED_SPEC = ("restartPolicy", "activeDeadlineSeconds")
# The instance itself: what runs, where it listens, how it is found Ready and how it
# says why it ended (podstate.py reads the termination message). Its env is keyed:
# a template may add variables, not redefine the operator's.
OWNED_CONTAINER = ("image", "command", "args", "ports", "readinessProbe",
                   "terminationMessagePath", "terminationMessagePolicy")
# Lists merged by a key, like a strategic merge patch: a template item with the key
# of an existing item refines it, a new key is appended. Other lists are replaced.
LIST_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
             "volumeMounts": "mountPath", "imagePullSecrets": "name"}
TEMPLATE_FIELDS = ("metadata", "spec")
TEMPLATE_METADATA_FIELDS = ("labels", "annotations")


def template_problems(template: Any) -> list[str]:
    """Why `template` (a PodTemplateSpec as a dict) cannot be used: one line per
    problem, [] when it can."""
    if not isinstance(template, Mapping):
        return [f"the pod template must be an object (a PodTemplateSpec), got {type(template).__name__}"]
    problems = [f"{key}: not a PodTemplateSpec field (only metadata and spec)"
                for key in template if key not in TEMPLATE_FIELDS]
    metadata = {} if template.get("metadata") is None else template["metadata"]
    spec = {} if template.get("spec") is None else template["spec"]
    if not isinstance(metadata, Mapping) or not isinstance(spec, Mapping):
        return problems + ["metadata and spec must be objects"]
    for key in metadata:
        if key in OWNED_METADATA:
            problems.append(f"metadata.{key}: set by the operator")
        elif key not in TEMPLATE_METADATA_FIELDS:
            problems.append(f"metadata.{key}: only labels and annotations can be given")
    for field, owned in (("labels", OWNED_LABELS), ("annotations", OWNED_ANNOTATIONS)):
        values = metadata.get(field) or {}
        if not isinstance(values, Mapping):
            problems.append(f"metadata.{field}: must be an object")
            continue
        problems += [f"metadata.{field}.{key}: set by the operator" for key in values if key in owned]
        problems += [f"metadata.{field}.{key}: must be a string" for key, value in values.items()
                     if not isinstance(value, str)]
    problems += [f"spec.{key}: set by the operator" for key in spec if key in OWNED_SPEC]
    for field in ("containers", "initContainers", "volumes", "imagePullSecrets"):
        if field in spec and not isinstance(spec[field], list):
            problems.append(f"spec.{field}: must be a list")
    containers = spec.get("containers") or []
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        if not isinstance(container, Mapping) or not container.get("name"):
            problems.append(f"spec.containers[{index}]: needs a name")
            continue
        if container["name"] != CONTAINER_NAME:
            continue  # a sidecar: the template's own
        where = f"spec.containers[{CONTAINER_NAME}]"
        problems += [f"{where}.{key}: set by the operator" for key in container if key in OWNED_CONTAINER]
        env = container.get("env") or []
        if not isinstance(env, list):
            problems.append(f"{where}.env: must be a list")
            continue
        problems += [f"{where}.env[{item.get('name')}]: set by the operator" for item in env
                     if isinstance(item, Mapping) and item.get("name") in INSTANCE_ENV_NAMES]
    return problems


def apply_template(pod: Mapping, template: Mapping) -> dict:
    """`pod` (make_pod's manifest) with `template` merged in: objects merged key by
    key (the template's value wins), LIST_KEYS lists merged by their key, other lists
    replaced; then every OWNED_* field put back as the operator made it, so the
    template adds and refines but never changes those (template_problems reports them
    first, at start). Pure: neither argument is changed."""
    merged = copy.deepcopy(dict(pod))
    template_metadata = template.get("metadata") or {}
    metadata = merged["metadata"]
    for field in TEMPLATE_METADATA_FIELDS:
        if template_metadata.get(field):
            metadata[field] = {**template_metadata[field], **metadata.get(field, {})}  # ours win
    merged["spec"] = _merge(merged["spec"], template.get("spec") or {})
    spec, base_spec = merged["spec"], pod["spec"]
    for key in OWNED_SPEC:
        if key in base_spec:
            spec[key] = copy.deepcopy(base_spec[key])
        else:
            spec.pop(key, None)
    base_instance = next(c for c in base_spec["containers"] if c["name"] == CONTAINER_NAME)
    instance = next(c for c in spec["containers"] if c["name"] == CONTAINER_NAME)
    for key in OWNED_CONTAINER:
        if key in base_instance:
            instance[key] = copy.deepcopy(base_instance[key])
        else:
            instance.pop(key, None)
    owned_env = {item["name"] for item in base_instance["env"]}
    instance["env"] = copy.deepcopy(base_instance["env"]) + [
        item for item in instance["env"] if item.get("name") not in owned_env]
    return merged


def _merge(base: Any, over: Any, key: str | None = None) -> Any:
    """`over` merged onto `base` (fresh objects; neither is changed)."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        result = copy.deepcopy(dict(base))
        for name, value in over.items():
            result[name] = _merge(base[name], value, name) if name in base else copy.deepcopy(value)
        return result
    if isinstance(base, list) and isinstance(over, list) and key in LIST_KEYS:
        item_key = LIST_KEYS[key]
        result = copy.deepcopy(base)
        positions = {item.get(item_key): i for i, item in enumerate(result) if isinstance(item, Mapping)}
        for item in over:
            name = item.get(item_key) if isinstance(item, Mapping) else None
            if name is not None and name in positions:
                result[positions[name]] = _merge(result[positions[name]], item)
            else:
                result.append(copy.deepcopy(item))
        return result
    return copy.deepcopy(over)
