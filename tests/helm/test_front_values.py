"""The chart's gateway.front (issue 18, item 3, Kubernetes): `haproxy` by default runs
HAProxy in a second container of the gateway pod, `front` (values.yaml says why), on the
haproxy.cfg the `gateway` container writes into a directory they share; it owns the public
port, and its /ready and exporter on gateway.frontMetricsPort (which it needs) are the pod's
readiness. `none` renders no more of it than the setting itself (the gateway would otherwise
take HAProxy wherever it finds it). tests/helm/test_front_container.py runs the front's script."""
from __future__ import annotations

import pytest
import yaml

from myservice_gateway.front.config import SOFT_STOP_SECONDS
from myservice_gateway.liveness import LIVENESS_PATH

from .conftest import CHART, by_kind_and_name, refusal, run_helm
from .test_chart import (E2E, GW, RESTRICTED_CONTAINER, RESTRICTED_POD, TLS, TLS_MOUNT, container_named, env_of,
                         pod_specs, volume_named)

FRONT = ["--set", "gateway.front=haproxy"]
NONE = ["--set", "gateway.front=none"]
FRONT_ENV = ("MYSERVICE_FRONT", "MYSERVICE_FRONT_DIRECTORY", "MYSERVICE_FRONT_METRICS_PORT")
FRONT_DIRECTORY = "/run/myservice/front"


def gateway_pod(manifests: list[dict]) -> dict:
    return by_kind_and_name(manifests)[("Deployment", GW)]["spec"]["template"]["spec"]


def gateway_of(manifests: list[dict]) -> dict:
    return container_named(gateway_pod(manifests), "gateway")


def front_of(manifests: list[dict]) -> dict:
    return container_named(gateway_pod(manifests), "front")


def container_with_port(spec: dict, port_name: str) -> str:
    """The name of the one container of the pod that has the named port (a Service's targetPort)."""
    (name,) = [c["name"] for c in spec["containers"] if port_name in [p["name"] for p in c.get("ports", [])]]
    return name


def test_front_is_on_by_default_and_none_renders_only_the_setting(render):
    values = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]
    assert (values["front"], values["frontMetricsPort"]) == ("haproxy", 9101)
    for args in ([], ["-f", E2E]):
        env = env_of(gateway_of(render(*args)))
        assert (env["MYSERVICE_FRONT"], env["MYSERVICE_FRONT_METRICS_PORT"]) == ("haproxy", "9101")
        assert [c["name"] for c in gateway_pod(render(*args))["containers"]] == ["gateway", "front"]
    spec = gateway_pod(render(*NONE))
    assert [c["name"] for c in spec["containers"]] == ["gateway"]
    container = spec["containers"][0]
    assert env_of(container)["MYSERVICE_FRONT"] == "none"
    assert "MYSERVICE_FRONT_METRICS_PORT" not in env_of(container)
    assert "MYSERVICE_FRONT_DIRECTORY" not in env_of(container)
    assert [p["name"] for p in container["ports"]] == ["grpc", "metrics"]
    assert "front" not in [v["name"] for v in spec["volumes"]]
    assert "front" not in [m["name"] for m in container["volumeMounts"]]


def test_without_the_front_the_gateway_container_serves_and_is_probed_as_before(render):
    spec = gateway_pod(render(*NONE, "--set", "gateway.drainSeconds=9"))
    container = container_named(spec, "gateway")
    # the Service's port is this container's, the grpc probes reach the Python gateway on it
    assert container_with_port(spec, "grpc") == "gateway"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": 10000}
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sleep", "9"]
    assert spec["terminationGracePeriodSeconds"] == 9 + 25


def test_haproxy_front_runs_in_its_own_container_beside_the_gateway(render):
    manifests = render("-f", E2E, *FRONT)
    spec = gateway_pod(manifests)
    assert [c["name"] for c in spec["containers"]] == ["gateway", "front"]
    container, front = container_named(spec, "gateway"), container_named(spec, "front")
    assert container["args"] == ["gateway"]
    env = env_of(container)
    assert (env["MYSERVICE_FRONT"], env["MYSERVICE_FRONT_METRICS_PORT"]) == ("haproxy", "9101")
    # the front: the gateway's image, sh running the chart's script (test_front_container.py runs it)
    assert (front["image"], front["imagePullPolicy"]) == (container["image"], container["imagePullPolicy"])
    assert front["command"][:2] == ["/bin/sh", "-c"] and len(front["command"]) == 3
    assert "haproxy -db -f" in front["command"][2] and "args" not in front
    # the Service's targetPort `grpc` is the front's: HAProxy owns the public port, the gateway has none
    service_port = by_kind_and_name(manifests)[("Service", GW)]["spec"]["ports"][0]
    assert service_port["targetPort"] == "grpc" and container_with_port(spec, "grpc") == "front"
    assert {"name": "grpc", "containerPort": 10000, "protocol": "TCP"} in front["ports"]
    assert [p["name"] for p in container["ports"]] == ["metrics"]
    # the exporter and /ready bind where the gateway tells HAProxy to (haproxy.cfg is its render)
    assert {"name": "front-metrics", "containerPort": int(env["MYSERVICE_FRONT_METRICS_PORT"]),
            "protocol": "TCP"} in front["ports"]
    # the pod's readiness is HAProxy's /ready (HAProxy runs and the gateway's socket passes):
    # no probe of the gateway container may make the pod Ready or not
    assert front["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "front-metrics"}
    assert "readinessProbe" not in container
    assert front["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    assert container["livenessProbe"]["httpGet"] == {"path": LIVENESS_PATH, "port": "metrics"}
    # HAProxy binds only once the gateway's first start wrote its config: liveness waits for that
    startup = front["startupProbe"]
    assert startup["tcpSocket"] == {"port": "grpc"} and startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert "initialDelaySeconds" not in front["livenessProbe"]
    # one directory, shared: the gateway writes haproxy.cfg there, the front waits for it there
    mount = {"name": "front", "mountPath": FRONT_DIRECTORY}
    assert mount in container["volumeMounts"] and mount in front["volumeMounts"]
    assert env["MYSERVICE_FRONT_DIRECTORY"] == env_of(front)["MYSERVICE_FRONT_DIRECTORY"] == FRONT_DIRECTORY
    # in memory: haproxy.cfg holds the signing key, which must never reach the node's disk
    assert volume_named(spec, "front") == {"name": "front", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}
    assert {"name": "tmp", "mountPath": "/tmp"} in front["volumeMounts"]
    assert spec["securityContext"] == RESTRICTED_POD
    assert container["securityContext"] == front["securityContext"] == RESTRICTED_CONTAINER


def test_front_container_has_its_own_resources_and_none_of_the_gateways_secrets(render):
    values = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]
    front = front_of(render(*FRONT, *TLS, "--set", "jwt.key=" + "k" * 64))
    assert front["resources"] == values["frontResources"]
    assert [m["name"] for m in front["volumeMounts"]] == ["front", "tmp"]
    assert list(env_of(front)) == ["MYSERVICE_FRONT_DIRECTORY"]
    assert "k" * 64 not in yaml.safe_dump(front)
    mine = front_of(render(*FRONT, "--set", "gateway.frontResources.limits.memory=1Gi"))
    assert mine["resources"]["limits"]["memory"] == "1Gi"


@pytest.mark.parametrize("drain", [5, 0, 40])
def test_the_front_stops_after_the_drain_and_the_gateway_after_the_front(render, drain):
    spec = gateway_pod(render(*FRONT, "--set", f"gateway.drainSeconds={drain}"))

    def pre_stop(name: str) -> int:
        command = container_named(spec, name)["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "/bin/sleep"
        return int(command[1])
    # the front accepts on while the Service drops the pod, then soft-stops (SIGTERM: the script);
    # the gateway serves on a little longer, for the calls HAProxy still forwards to it
    assert pre_stop("front") == drain
    assert pre_stop("gateway") == drain + 2
    # the grace period holds the front's drain and HAProxy's soft stop after it (hard-stop-after), with
    # room; and the gateway's stop after its own preStop, which gives its calls as long (Gateway.stop_grace)
    assert spec["terminationGracePeriodSeconds"] == drain + 25
    assert spec["terminationGracePeriodSeconds"] > pre_stop("front") + SOFT_STOP_SECONDS
    assert spec["terminationGracePeriodSeconds"] > pre_stop("gateway") + SOFT_STOP_SECONDS


def test_the_signing_key_reaches_the_front_as_a_file_only(render):
    manifests = render(*FRONT, "--set", "jwt.key=" + "k" * 64)
    container = gateway_of(manifests)
    env = env_of(container)
    assert env["MYSERVICE_JWT_KEY_FILE"] == "/etc/myservice/jwt/key"
    assert "MYSERVICE_JWT_KEY" not in env
    assert "k" * 64 not in yaml.safe_dump([container.get("args"), container.get("command"), container["env"]])
    assert {"name": "jwt", "mountPath": "/etc/myservice/jwt", "readOnly": True} in container["volumeMounts"]
    # HAProxy gets it in the haproxy.cfg the gateway writes into the shared directory, not the Secret
    front = front_of(manifests)
    assert "jwt" not in [m["name"] for m in front["volumeMounts"]]
    assert "k" * 64 not in yaml.safe_dump([front["command"], front["env"]])


def test_front_env_is_declared_by_the_gateway(render):
    from myservice_api import settings
    from myservice_gateway.settings import GatewaySettings

    declared = {s.env: s for s in settings.declared(GatewaySettings)}
    env = env_of(gateway_of(render(*FRONT)))
    for name in FRONT_ENV:
        assert declared[name].convert(env[name], name) is not None
    assert declared["MYSERVICE_FRONT"].convert(env["MYSERVICE_FRONT"], "MYSERVICE_FRONT") == "haproxy"


def test_the_front_needs_its_metrics_port_the_gateway_alone_does_not(render, helm):
    # the pod's readiness is HAProxy's /ready on that port: without it no pod would be Ready
    for settings in (("gateway.frontMetricsPort=0",), ("gateway.front=haproxy", "gateway.frontMetricsPort=0")):
        assert "gateway.frontMetricsPort" in refusal(helm, *settings)
    container = gateway_of(render(*NONE, "--set", "gateway.frontMetricsPort=0"))
    assert "MYSERVICE_FRONT_METRICS_PORT" not in env_of(container)
    assert "front-metrics" not in [p["name"] for p in container["ports"]]
    assert container["readinessProbe"]["grpc"] == {"port": 10000}
    moved = gateway_pod(render(*FRONT, "--set", "gateway.frontMetricsPort=9300"))
    assert env_of(container_named(moved, "gateway"))["MYSERVICE_FRONT_METRICS_PORT"] == "9300"
    assert {"name": "front-metrics", "containerPort": 9300, "protocol": "TCP"} in \
        container_named(moved, "front")["ports"]


def test_proxy_protocol_is_the_fronts_and_its_probes_send_no_header(render, helm):
    manifests = render("--set", "gateway.proxyProtocol=true")
    container, front = gateway_of(manifests), front_of(manifests)
    assert env_of(container)["MYSERVICE_FRONT_PROXY_PROTOCOL"] == "true"
    # kubelet sends no PROXY header: readiness asks HAProxy's /ready (both processes, on the
    # metrics bind, which expects none), liveness only that the public port accepts
    assert front["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "front-metrics"}
    assert front["livenessProbe"]["tcpSocket"] == {"port": "grpc"} and "grpc" not in front["livenessProbe"]
    assert "readinessProbe" not in container
    # the same probes as without it
    default = front_of(render())
    for probe in ("readinessProbe", "livenessProbe"):
        assert front[probe] == default[probe]
    assert "MYSERVICE_FRONT_PROXY_PROTOCOL" not in env_of(gateway_of(render()))
    assert "gateway.proxyProtocol needs gateway.front=haproxy" in refusal(
        helm, "gateway.proxyProtocol=true", "gateway.front=none")


def test_front_with_tls_keeps_the_tls_files_in_the_gateway_container_and_probes_both_processes(render):
    manifests = render(*FRONT, *TLS, "--set", "gateway.tls.clientCA.enabled=true")
    container, front = gateway_of(manifests), front_of(manifests)
    env = env_of(container)
    assert env["MYSERVICE_FRONT"] == "haproxy"
    # the gateway reads the Secret's files and writes HAProxy's copy into the shared directory (fronttls.py)
    assert (env["MYSERVICE_TLS_CERT_FILE"], env["MYSERVICE_TLS_KEY_FILE"], env["MYSERVICE_TLS_CLIENT_CA_FILE"]) == (
        "/etc/myservice/tls/tls.crt", "/etc/myservice/tls/tls.key", "/etc/myservice/tls/ca.crt")
    assert TLS_MOUNT in container["volumeMounts"]
    # the front container never mounts the Secret itself
    assert not [m for m in front["volumeMounts"] if m["name"].startswith("tls")]
    assert not [k for k in env_of(front) if k.startswith("MYSERVICE_TLS")]
    # kubelet's grpc probe cannot speak TLS: HAProxy's /ready (plain HTTP) says whether both processes answer
    assert front["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "front-metrics"}
    assert front["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    assert "readinessProbe" not in container
    # without the front the port alone, as before
    alone = gateway_of(render(*TLS, *NONE))
    for probe in ("readinessProbe", "livenessProbe"):
        assert alone[probe]["tcpSocket"] == {"port": "grpc"}


def test_service_monitor_scrapes_the_front_too(render):
    objects = by_kind_and_name(render("--set", "metrics.serviceMonitor.enabled=true", *FRONT))
    assert objects[("Service", f"{GW}-metrics")]["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
        {"name": "front-metrics", "port": 9101, "targetPort": "front-metrics", "protocol": "TCP"}]
    assert [e["port"] for e in objects[("ServiceMonitor", GW)]["spec"]["endpoints"]] == ["metrics", "front-metrics"]
    off = by_kind_and_name(render("--set", "metrics.serviceMonitor.enabled=true", "--set", "gateway.front=none"))
    assert [e["port"] for e in off[("ServiceMonitor", GW)]["spec"]["endpoints"]] == ["metrics"]
    # the gateway's own Service stays gRPC only
    assert [p["name"] for p in objects[("Service", GW)]["spec"]["ports"]] == ["grpc"]
    # each port scraped is a port of the container that serves it
    spec = objects[("Deployment", GW)]["spec"]["template"]["spec"]
    scraped = objects[("Service", f"{GW}-metrics")]["spec"]["ports"]
    assert [container_with_port(spec, p["targetPort"]) for p in scraped] == ["gateway", "front"]


def test_every_pod_is_still_restricted_with_the_front(render):
    for spec in pod_specs(render("-f", E2E, *FRONT)):
        assert spec["securityContext"] == RESTRICTED_POD
        for container in spec["containers"]:
            assert container["securityContext"] == RESTRICTED_CONTAINER


@pytest.mark.parametrize("setting,message", [
    ("gateway.front=nginx", "at '/gateway/front'"),
    ("gateway.frontMetricsPort=-1", "at '/gateway/frontMetricsPort'"),
    ("gateway.frontMetricsPort=70000", "at '/gateway/frontMetricsPort'"),
])
def test_schema_rejects_bad_front_values(helm, setting, message):
    assert message in refusal(helm, setting)


def test_lint_strict_with_the_front(helm):
    result = run_helm(helm, "lint", "--strict", str(CHART), "-f", E2E, *FRONT,
                      "--set", "metrics.serviceMonitor.enabled=true")
    assert result.returncode == 0, result.stdout + result.stderr
