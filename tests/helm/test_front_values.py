"""The chart's gateway.front (issue 18, item 3, Kubernetes): `haproxy` by default runs
HAProxy as the gateway process's child inside the gateway container (values.yaml says
why), its exporter on gateway.frontMetricsPort; `none` renders no more of it than the
setting itself (the gateway would otherwise take HAProxy wherever it finds it)."""
from __future__ import annotations

import pytest
import yaml

from .conftest import CHART, by_kind_and_name, refusal, run_helm
from .test_chart import E2E, GW, RESTRICTED_CONTAINER, RESTRICTED_POD, TLS, env_of, pod_specs

FRONT = ["--set", "gateway.front=haproxy"]
FRONT_ENV = ("MYSERVICE_FRONT", "MYSERVICE_FRONT_METRICS_PORT")


def gateway_pod(manifests: list[dict]) -> dict:
    return by_kind_and_name(manifests)[("Deployment", GW)]["spec"]["template"]["spec"]


def test_front_is_on_by_default_and_none_renders_only_the_setting(render):
    values = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]
    assert (values["front"], values["frontMetricsPort"]) == ("haproxy", 9101)
    for args in ([], ["-f", E2E]):
        env = env_of(gateway_pod(render(*args))["containers"][0])
        assert (env["MYSERVICE_FRONT"], env["MYSERVICE_FRONT_METRICS_PORT"]) == ("haproxy", "9101")
    container = gateway_pod(render("--set", "gateway.front=none"))["containers"][0]
    assert env_of(container)["MYSERVICE_FRONT"] == "none"
    assert "MYSERVICE_FRONT_METRICS_PORT" not in env_of(container)
    assert [p["name"] for p in container["ports"]] == ["grpc", "metrics"]


def test_haproxy_front_runs_in_the_gateway_container(render):
    spec = gateway_pod(render("-f", E2E, *FRONT))
    # one container: HAProxy is the gateway process's child, not a container of its own
    assert [c["name"] for c in spec["containers"]] == ["gateway"]
    container = spec["containers"][0]
    assert container["args"] == ["gateway"]
    env = env_of(container)
    assert (env["MYSERVICE_FRONT"], env["MYSERVICE_FRONT_METRICS_PORT"]) == ("haproxy", "9101")
    assert {"name": "front-metrics", "containerPort": 9101, "protocol": "TCP"} in container["ports"]
    # the probes go through HAProxy to the Python gateway's health service: both must answer
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": 10000}
    # HAProxy's files (haproxy.cfg with the key, the map, the sockets) go to the writable /tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert spec["securityContext"] == RESTRICTED_POD and container["securityContext"] == RESTRICTED_CONTAINER


def test_the_signing_key_reaches_the_front_as_a_file_only(render):
    manifests = render(*FRONT, "--set", "jwt.key=" + "k" * 64)
    container = gateway_pod(manifests)["containers"][0]
    env = env_of(container)
    assert env["MYSERVICE_JWT_KEY_FILE"] == "/etc/myservice/jwt/key"
    assert "MYSERVICE_JWT_KEY" not in env
    assert "k" * 64 not in yaml.safe_dump([container.get("args"), container.get("command"), container["env"]])
    assert {"name": "jwt", "mountPath": "/etc/myservice/jwt", "readOnly": True} in container["volumeMounts"]


def test_front_env_is_declared_by_the_gateway(render):
    from myservice_api import settings
    from myservice_gateway.settings import GatewaySettings

    declared = {s.env: s for s in settings.declared(GatewaySettings)}
    env = env_of(gateway_pod(render(*FRONT))["containers"][0])
    for name in FRONT_ENV:
        assert declared[name].convert(env[name], name) is not None
    assert declared["MYSERVICE_FRONT"].convert(env["MYSERVICE_FRONT"], "MYSERVICE_FRONT") == "haproxy"


def test_front_metrics_can_be_off(render):
    container = gateway_pod(render(*FRONT, "--set", "gateway.frontMetricsPort=0"))["containers"][0]
    assert env_of(container)["MYSERVICE_FRONT_METRICS_PORT"] == "0"
    assert "front-metrics" not in [p["name"] for p in container["ports"]]


def test_proxy_protocol_is_the_fronts_and_makes_the_probes_tcp(render, helm):
    container = gateway_pod(render("--set", "gateway.proxyProtocol=true"))["containers"][0]
    assert env_of(container)["MYSERVICE_FRONT_PROXY_PROTOCOL"] == "true"
    # kubelet sends no PROXY header: readiness asks HAProxy's /ready (both processes), liveness the port
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "front-metrics"}
    assert container["livenessProbe"]["tcpSocket"] == {"port": "grpc"} and "grpc" not in container["livenessProbe"]
    assert "MYSERVICE_FRONT_PROXY_PROTOCOL" not in env_of(gateway_pod(render())["containers"][0])
    assert "gateway.proxyProtocol needs gateway.front=haproxy" in refusal(
        helm, "gateway.proxyProtocol=true", "gateway.front=none")


def test_front_with_tls_keeps_the_tls_files_and_probes_both_processes(render):
    container = gateway_pod(render(*FRONT, *TLS))["containers"][0]
    env = env_of(container)
    assert env["MYSERVICE_FRONT"] == "haproxy"
    assert env["MYSERVICE_TLS_CERT_FILE"] == "/etc/myservice/tls/tls.crt"  # HAProxy serves it (fronttls.py)
    # kubelet's grpc probe cannot speak TLS: HAProxy's /ready says whether both processes answer
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "front-metrics"}
    assert container["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    # without the exporter's port (or without the front) the port alone, as before
    for args in ((*FRONT, *TLS, "--set", "gateway.frontMetricsPort=0"), (*TLS, "--set", "gateway.front=none")):
        assert gateway_pod(render(*args))["containers"][0]["readinessProbe"]["tcpSocket"] == {"port": "grpc"}


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
