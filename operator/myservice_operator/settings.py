"""The operator's settings: one frozen object, read from the environment once.

Only the entry point (__main__) calls from_env(); everything else receives the
object. Each setting is declared once, below (myservice_api.settings); the
chart's operator env and docs/kubernetes.md are checked against the declarations
(tests/operator/test_settings.py).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from myservice_api import settings
from myservice_api.settings import SettingsError as SettingsError  # raised and caught as this module's
from myservice_api.settings import declare

from . import pods

# Where Kubernetes mounts the pod's own namespace (service account volume).
# The operator pod mounts its token, so this exists in-cluster.
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclasses.dataclass(frozen=True)
class Settings:
    namespace: str = declare(
        env="MYSERVICE_NAMESPACE", default_text="the pod's namespace (service account mount)",
        help="the one namespace watched for sessions and where pods are made")
    instance_image: str = declare(
        "myservice-service:dev", env="MYSERVICE_INSTANCE_IMAGE",
        help="image of the instance pods (never taken from the resource)")
    instance_image_pull_policy: str = declare(
        "IfNotPresent", env="MYSERVICE_INSTANCE_IMAGE_PULL_POLICY", choices=("Always", "IfNotPresent", "Never"),
        help="imagePullPolicy of the instance pods")
    instance_port: int = settings.INSTANCE_PORT.field(
        minimum=1, help="the instance's gRPC port (also passed to it in its env)")
    max_sessions: int = declare(
        10, env="MYSERVICE_MAX_SESSIONS", minimum=0,
        help="at most this many live (not finished) instance pods")
    ready_timeout_seconds: int = settings.SESSION_READY_TIMEOUT.field(
        help="a Starting session not Ready after this fails (ReadyTimeout); a Pending one still "
             "without a slot fails (CapacityExceeded)")
    finished_ttl_seconds: int = declare(
        300, env="MYSERVICE_FINISHED_TTL_SECONDS", minimum=0, unit="seconds",
        help="a Completed/Failed session is deleted this long after it finished (its pod goes "
             "with it, by ownerReference)")
    instance_cpu_request: str = declare("100m", env="MYSERVICE_INSTANCE_CPU_REQUEST", help="CPU request of the instance pods")
    instance_cpu_limit: str = declare("500m", env="MYSERVICE_INSTANCE_CPU_LIMIT", help="CPU limit of the instance pods")
    instance_memory_request: str = declare(
        "128Mi", env="MYSERVICE_INSTANCE_MEMORY_REQUEST", help="memory request of the instance pods")
    instance_memory_limit: str = declare(
        "256Mi", env="MYSERVICE_INSTANCE_MEMORY_LIMIT", help="memory limit of the instance pods")
    instance_service_account: str = declare(
        "", env="MYSERVICE_INSTANCE_SERVICE_ACCOUNT",
        help="serviceAccountName of the pods; empty = the namespace's default (its token is never "
             "mounted either way)")
    instance_termination_grace_seconds: int = declare(
        5, env="MYSERVICE_INSTANCE_TERMINATION_GRACE_SECONDS", minimum=0, unit="seconds",
        help="terminationGracePeriodSeconds of the pods")
    liveness_port: int = declare(
        8080, env="MYSERVICE_OPERATOR_LIVENESS_PORT", minimum=1, maximum=65535,
        help="kopf's liveness endpoint (http://0.0.0.0:PORT/healthz)")
    metrics_port: int = declare(
        0, env="MYSERVICE_OPERATOR_METRICS_PORT", minimum=0, maximum=65535, zero="off",
        help="Prometheus /metrics over HTTP on this port (the chart turns it on: operator.metricsPort)")
    metrics_host: str = declare(
        "127.0.0.1", env="MYSERVICE_OPERATOR_METRICS_HOST",
        help="the address /metrics listens on (the chart: 0.0.0.0, for Prometheus to scrape the pod's IP)")
    watch_timeout_seconds: int = declare(
        300, env="MYSERVICE_WATCH_TIMEOUT_SECONDS", minimum=10, unit="seconds",
        help="server-side timeout of one watch request (the client timeout is 60 s more), so a "
             "silently dead watch stream is replaced")
    session_idle_timeout_seconds: int = settings.SESSION_IDLE_TIMEOUT.field(
        help="passed to every instance, which ends itself after this long without a call (IdleTimeout)")
    session_max_lifetime_seconds: int = settings.SESSION_MAX_LIFETIME.field(
        help="passed to every instance, which ends itself this long after its start "
             "(LifetimeExceeded); the pod's activeDeadlineSeconds is 60 s more, in case it does not")
    lease_name: str = declare(
        "", env="MYSERVICE_OPERATOR_LEASE_NAME",
        help="the coordination.k8s.io Lease (in the namespace) that picks the one active replica "
             "(leadership.py); empty = no election, this process is the only operator (the chart "
             "always sets it)")
    identity: str = declare(
        "", env="MYSERVICE_OPERATOR_IDENTITY", default_text="the hostname",
        help="this replica's name in the Lease (the chart: the pod name); a random suffix is added "
             "at start, so a restarted container is a new holder")
    warm_pool_size: int = declare(
        0, env="MYSERVICE_WARM_POOL_SIZE", minimum=0, zero="off",
        help="keep this many ready instance pods that no session owns yet (chart value "
             "instance.warmPool.size); a new session claims one and is Ready at once. Pool pods are "
             "extra to MYSERVICE_MAX_SESSIONS; 0 = every pod is made on demand")
    warm_pool_max_starting: int = declare(
        2, env="MYSERVICE_WARM_POOL_MAX_STARTING", minimum=1,
        help="at most this many pool pods starting at once (chart value instance.warmPool.maxStarting): "
             "a refill paced so that it does not starve the node the sessions run on; raise it with many nodes")
    instance_pod_template: Mapping[str, Any] = declare(
        env="MYSERVICE_INSTANCE_POD_TEMPLATE", factory=dict, parse=lambda raw: pod_template(raw),
        default_text="{}",
        help="a PodTemplateSpec as JSON (chart value instance.podTemplate), merged into every instance "
             "pod by pods.apply_template. It refines the MYSERVICE_INSTANCE_* defaults above and never "
             "changes what the operator owns (pods.OWNED_*); a template that tries is refused here, at start")
    debug: bool = declare(
        False, env="MYSERVICE_OPERATOR_DEBUG", parse=lambda raw: raw.strip() == "1",
        help="1: debug logs (kopf's verbose mode and every handler run)")

    @classmethod
    def from_env(cls, env: Mapping[str, str], namespace_file: Path = NAMESPACE_FILE) -> Settings:
        """Build the settings from an environment mapping (os.environ at the entry point);
        without MYSERVICE_NAMESPACE, the namespace is the pod's own (namespace_file)."""
        defaults: dict[str, str] = {}
        if not env.get("MYSERVICE_NAMESPACE", "").strip():
            try:
                defaults["namespace"] = namespace_file.read_text().strip()
            except OSError:
                pass
            if not defaults.get("namespace"):
                raise SettingsError(f"MYSERVICE_NAMESPACE is not set and {namespace_file} is not readable")
        return settings.parse(cls, env, defaults=defaults)


def pod_template(raw: str) -> dict[str, Any]:
    """MYSERVICE_INSTANCE_POD_TEMPLATE parsed and checked; {} when blank."""
    if not raw.strip():
        return {}
    try:
        template = json.loads(raw)
    except ValueError as error:
        raise SettingsError(f"MYSERVICE_INSTANCE_POD_TEMPLATE is not JSON: {error}") from None
    problems = pods.template_problems(template)
    if problems:
        raise SettingsError("MYSERVICE_INSTANCE_POD_TEMPLATE: " + "; ".join(problems))
    return template
