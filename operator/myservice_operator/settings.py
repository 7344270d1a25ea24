"""The operator's settings: one frozen object, read from the environment once.

Only the entry point (__main__) calls from_env(); everything else receives the
object. Every key is documented in helm/myservice/values.yaml (operator.*) and
docs/kubernetes.md.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import pods

# Where Kubernetes mounts the pod's own namespace (service account volume).
# The operator pod mounts its token, so this exists in-cluster.
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class SettingsError(ValueError):
    """An environment variable has a value the operator cannot use."""


@dataclasses.dataclass(frozen=True)
class Settings:
    namespace: str
    """MYSERVICE_NAMESPACE: the one namespace watched for sessions and where pods are made."""
    instance_image: str = "myservice-service:dev"
    """MYSERVICE_INSTANCE_IMAGE: image of the instance pods (never taken from the resource)."""
    instance_image_pull_policy: str = "IfNotPresent"
    """MYSERVICE_INSTANCE_IMAGE_PULL_POLICY: Always, IfNotPresent or Never."""
    instance_port: int = 50051
    """MYSERVICE_INSTANCE_PORT: the instance's gRPC port (also passed to it in its env)."""
    max_sessions: int = 10
    """MYSERVICE_MAX_SESSIONS: at most this many live (not finished) instance pods."""
    ready_timeout_seconds: int = 120
    """MYSERVICE_READY_TIMEOUT_SECONDS: a Starting session not Ready after this fails
    (ReadyTimeout); a Pending one still without a slot fails (CapacityExceeded)."""
    finished_ttl_seconds: int = 300
    """MYSERVICE_FINISHED_TTL_SECONDS: a Completed/Failed session is deleted this long
    after it finished (its pod goes with it, by ownerReference)."""
    instance_cpu_request: str = "100m"
    """MYSERVICE_INSTANCE_CPU_REQUEST."""
    instance_cpu_limit: str = "500m"
    """MYSERVICE_INSTANCE_CPU_LIMIT."""
    instance_memory_request: str = "128Mi"
    """MYSERVICE_INSTANCE_MEMORY_REQUEST."""
    instance_memory_limit: str = "256Mi"
    """MYSERVICE_INSTANCE_MEMORY_LIMIT."""
    instance_service_account: str = ""
    """MYSERVICE_INSTANCE_SERVICE_ACCOUNT: serviceAccountName of the pods; empty = the
    namespace's default (its token is never mounted either way)."""
    instance_termination_grace_seconds: int = 5
    """MYSERVICE_INSTANCE_TERMINATION_GRACE_SECONDS: terminationGracePeriodSeconds of the pods."""
    liveness_port: int = 8080
    """MYSERVICE_OPERATOR_LIVENESS_PORT: kopf's liveness endpoint (http://0.0.0.0:PORT/healthz)."""
    metrics_port: int = 0
    """MYSERVICE_OPERATOR_METRICS_PORT: Prometheus /metrics over HTTP on this port; 0 = off
    (the chart turns it on: operator.metricsPort)."""
    metrics_host: str = "127.0.0.1"
    """MYSERVICE_OPERATOR_METRICS_HOST: the address /metrics listens on (the chart: 0.0.0.0,
    for Prometheus to scrape the pod's IP)."""
    watch_timeout_seconds: int = 300
    """MYSERVICE_WATCH_TIMEOUT_SECONDS: server-side timeout of one watch request (the client
    timeout is 60 s more), so a silently dead watch stream is replaced."""
    session_idle_timeout_seconds: int = 900
    """MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS: passed to every instance, which ends itself
    after this long without a call (IdleTimeout); 0 = off."""
    session_max_lifetime_seconds: int = 86400
    """MYSERVICE_SESSION_MAX_LIFETIME_SECONDS: passed to every instance, which ends itself
    this long after its start (LifetimeExceeded); the pod's activeDeadlineSeconds is 60 s
    more, in case it does not. 0 = off."""
    lease_name: str = ""
    """MYSERVICE_OPERATOR_LEASE_NAME: the coordination.k8s.io Lease (in the namespace) that
    picks the one active replica (leadership.py); empty = no election, this process is
    the only operator (the chart always sets it)."""
    identity: str = ""
    """MYSERVICE_OPERATOR_IDENTITY: this replica's name in the Lease (the chart: the pod name);
    a random suffix is added at start, so a restarted container is a new holder."""
    warm_pool_size: int = 0
    """MYSERVICE_WARM_POOL_SIZE: keep this many ready instance pods that no session owns yet
    (chart value instance.warmPool.size); a new session claims one and is Ready at once.
    Pool pods are extra to MYSERVICE_MAX_SESSIONS. 0 = off: every pod is made on demand."""
    warm_pool_max_starting: int = 2
    """MYSERVICE_WARM_POOL_MAX_STARTING: at most this many pool pods starting at once (chart
    value instance.warmPool.maxStarting): a refill paced so that it does not starve the node
    the sessions run on; raise it with many nodes."""
    instance_pod_template: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """MYSERVICE_INSTANCE_POD_TEMPLATE: a PodTemplateSpec as JSON (chart value
    instance.podTemplate), merged into every instance pod by pods.apply_template. It
    refines the MYSERVICE_INSTANCE_* defaults above and never changes what the operator
    owns (pods.OWNED_*); a template that tries is refused here, at start."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], namespace_file: Path = NAMESPACE_FILE) -> Settings:
        """Build the settings from an environment mapping (os.environ at the entry point)."""
        namespace = env.get("MYSERVICE_NAMESPACE", "").strip()
        if not namespace:
            try:
                namespace = namespace_file.read_text().strip()
            except OSError:
                namespace = ""
        if not namespace:
            raise SettingsError(
                f"MYSERVICE_NAMESPACE is not set and {namespace_file} is not readable")
        defaults = cls(namespace=namespace)

        def text(key: str, default: str) -> str:
            return env.get(key, "").strip() or default

        def number(key: str, default: int, minimum: int) -> int:
            raw = env.get(key, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{key}={raw!r} is not an integer") from None
            if value < minimum:
                raise SettingsError(f"{key}={value} is below {minimum}")
            return value

        pull_policy = text("MYSERVICE_INSTANCE_IMAGE_PULL_POLICY", defaults.instance_image_pull_policy)
        if pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise SettingsError(
                f"MYSERVICE_INSTANCE_IMAGE_PULL_POLICY={pull_policy!r} is not Always, IfNotPresent or Never")
        port = number("MYSERVICE_INSTANCE_PORT", defaults.instance_port, 1)
        if port > 65535:
            raise SettingsError(f"MYSERVICE_INSTANCE_PORT={port} is above 65535")
        metrics_port = number("MYSERVICE_OPERATOR_METRICS_PORT", defaults.metrics_port, 0)
        if metrics_port > 65535:
            raise SettingsError(f"MYSERVICE_OPERATOR_METRICS_PORT={metrics_port} is above 65535")
        return cls(
            namespace=namespace,
            instance_image=text("MYSERVICE_INSTANCE_IMAGE", defaults.instance_image),
            instance_image_pull_policy=pull_policy,
            instance_port=port,
            max_sessions=number("MYSERVICE_MAX_SESSIONS", defaults.max_sessions, 0),
            ready_timeout_seconds=number(
                "MYSERVICE_READY_TIMEOUT_SECONDS", defaults.ready_timeout_seconds, 1),
            finished_ttl_seconds=number(
                "MYSERVICE_FINISHED_TTL_SECONDS", defaults.finished_ttl_seconds, 0),
            instance_cpu_request=text("MYSERVICE_INSTANCE_CPU_REQUEST", defaults.instance_cpu_request),
            instance_cpu_limit=text("MYSERVICE_INSTANCE_CPU_LIMIT", defaults.instance_cpu_limit),
            instance_memory_request=text(
                "MYSERVICE_INSTANCE_MEMORY_REQUEST", defaults.instance_memory_request),
            instance_memory_limit=text("MYSERVICE_INSTANCE_MEMORY_LIMIT", defaults.instance_memory_limit),
            instance_service_account=text(
                "MYSERVICE_INSTANCE_SERVICE_ACCOUNT", defaults.instance_service_account),
            instance_termination_grace_seconds=number(
                "MYSERVICE_INSTANCE_TERMINATION_GRACE_SECONDS",
                defaults.instance_termination_grace_seconds, 0),
            liveness_port=number("MYSERVICE_OPERATOR_LIVENESS_PORT", defaults.liveness_port, 1),
            metrics_port=metrics_port,
            metrics_host=text("MYSERVICE_OPERATOR_METRICS_HOST", defaults.metrics_host),
            watch_timeout_seconds=number(
                "MYSERVICE_WATCH_TIMEOUT_SECONDS", defaults.watch_timeout_seconds, 10),
            session_idle_timeout_seconds=number(
                "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS", defaults.session_idle_timeout_seconds, 0),
            session_max_lifetime_seconds=number(
                "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS", defaults.session_max_lifetime_seconds, 0),
            warm_pool_size=number("MYSERVICE_WARM_POOL_SIZE", defaults.warm_pool_size, 0),
            warm_pool_max_starting=number("MYSERVICE_WARM_POOL_MAX_STARTING", defaults.warm_pool_max_starting, 1),
            instance_pod_template=pod_template(env.get("MYSERVICE_INSTANCE_POD_TEMPLATE", "")),
            lease_name=text("MYSERVICE_OPERATOR_LEASE_NAME", defaults.lease_name),
            identity=text("MYSERVICE_OPERATOR_IDENTITY", defaults.identity),
        )


def pod_template(raw: str) -> dict[str, Any]:
    """MYSERVICE_INSTANCE_POD_TEMPLATE parsed and checked; {} when unset."""
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
