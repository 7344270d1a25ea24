"""The Helm chart: lint, and the manifests it renders for default and non-default values."""
from __future__ import annotations

import base64
import json
import re
import shutil

import pytest
import yaml

from myservice_api import crd
from myservice_gateway.liveness import LIVENESS_PATH

from .conftest import CHART, ROOT, by_kind_and_name, refusal, run_helm

GW = "rel-myservice-gateway"
OP = "rel-myservice-operator"
CL = "rel-myservice-cleanup"
FULL = str(CHART / "ci" / "full-values.yaml")
E2E = str(CHART / "ci" / "e2e-values.yaml")


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def container_named(spec: dict, name: str) -> dict:
    """The container `name` of a pod spec (never by position: the gateway pod has two)."""
    (container,) = [c for c in spec["containers"] if c["name"] == name]
    return container


def volume_named(spec: dict, name: str) -> dict:
    (volume,) = [v for v in spec["volumes"] if v["name"] == name]
    return volume


def pod_specs(manifests: list[dict]) -> list[dict]:
    specs = []
    for m in manifests:
        if m["kind"] in ("Deployment", "Job"):
            specs.append(m["spec"]["template"]["spec"])
        elif m["kind"] == "Pod":
            specs.append(m["spec"])
    return specs


# --- lint ---------------------------------------------------------------------

@pytest.mark.parametrize("values", [[], ["-f", E2E], ["-f", FULL]])
def test_lint_strict(helm, values):
    result = run_helm(helm, "lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


# --- what is rendered ---------------------------------------------------------

def test_default_objects(render):
    assert sorted((m["kind"], m["metadata"]["name"]) for m in render()) == sorted([
        ("CustomResourceDefinition", "myservicesessions.myservice.io"),
        ("Deployment", GW), ("Deployment", OP),
        ("Role", GW), ("Role", OP), ("RoleBinding", GW), ("RoleBinding", OP),
        ("Secret", "rel-myservice-jwt"), ("Secret", "rel-myservice-users"),
        ("Service", GW),
        ("ServiceAccount", GW), ("ServiceAccount", OP),
        ("ServiceAccount", CL), ("Role", CL), ("RoleBinding", CL), ("Job", CL),
        ("NetworkPolicy", "rel-myservice-instances"),
        ("Lease", OP),
    ])
    assert all(m["metadata"].get("namespace") == "ns" for m in render() if m["kind"] != "CustomResourceDefinition")


def test_full_values_objects(render):
    kinds = sorted((m["kind"], m["metadata"]["name"]) for m in render("-f", FULL))
    assert ("NetworkPolicy", "rel-myservice-instances") in kinds
    assert ("Pod", "rel-myservice-test") in kinds
    assert ("Secret", "rel-myservice-test-user") in kinds
    assert len(kinds) == 20


def test_names_fit_63_characters_for_a_long_release_name(render):
    release = "a-very-long-release-name-that-goes-on-and-on-and-on-x"  # 53, helm's maximum
    for m in render("-f", FULL, release=release):
        assert len(m["metadata"]["name"]) <= 63, m["metadata"]["name"]
        assert m["metadata"]["name"].endswith(("-gateway", "-operator", "-users", "-jwt", "-test",
                                               "-test-user", "-instances", "-cleanup", crd.GROUP))


# --- the CRD ------------------------------------------------------------------

def test_chart_crd_copy_equals_the_repository_crd():
    assert (CHART / "files" / "crds" / "myservicesessions.yaml").read_bytes() == \
        (ROOT / "crds" / "myservicesessions.yaml").read_bytes()


def test_rendered_crd_is_the_repository_crd_kept_on_uninstall(render):
    source = yaml.safe_load((ROOT / "crds" / "myservicesessions.yaml").read_text())
    rendered = by_kind_and_name(render())[("CustomResourceDefinition", "myservicesessions.myservice.io")]
    assert rendered["spec"] == source["spec"]
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert rendered["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"


def test_crd_can_be_left_out_or_not_kept(render):
    assert not [m for m in render("--set", "crds.install=false") if m["kind"] == "CustomResourceDefinition"]
    rendered = [m for m in render("--set", "crds.keep=false") if m["kind"] == "CustomResourceDefinition"]
    assert "annotations" not in rendered[0]["metadata"]


# --- RBAC ---------------------------------------------------------------------

def test_rbac_is_namespaced_least_privilege_without_wildcards(render):
    manifests = render("-f", FULL)
    assert not [m for m in manifests if m["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for role in (m for m in manifests if m["kind"] == "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
    objects = by_kind_and_name(manifests)
    assert objects[("Role", GW)]["rules"] == [
        {"apiGroups": ["myservice.io"], "resources": ["myservicesessions"],
         "verbs": ["get", "list", "watch", "create", "delete"]},
    ]
    assert objects[("Role", OP)]["rules"] == [
        {"apiGroups": ["myservice.io"], "resources": ["myservicesessions"],
         "verbs": ["get", "list", "watch", "patch", "update", "delete"]},
        {"apiGroups": ["myservice.io"], "resources": ["myservicesessions/status"],
         "verbs": ["get", "patch", "update"]},
        {"apiGroups": ["myservice.io"], "resources": ["myservicesessions/finalizers"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [OP],
         "verbs": ["get", "update"]},
    ]
    assert objects[("Role", CL)]["rules"] == [
        {"apiGroups": ["myservice.io"], "resources": ["myservicesessions"], "verbs": ["list", "delete"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]},
    ]
    for name, kind in ((GW, "Deployment"), (OP, "Deployment"), (CL, "Job")):
        binding = objects[("RoleBinding", name)]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "ns"}]
        assert objects[(kind, name)]["spec"]["template"]["spec"]["serviceAccountName"] == name


# --- security contexts --------------------------------------------------------

RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                  "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


@pytest.mark.parametrize("values", [[], ["-f", FULL]])
def test_every_pod_is_restricted(render, values):
    specs = pod_specs(render(*values))
    assert len(specs) == (3 if not values else 4)
    for spec in specs:
        assert spec["securityContext"] == RESTRICTED_POD
        assert spec["enableServiceLinks"] is False
        for container in spec["containers"]:
            assert container["securityContext"] == RESTRICTED_CONTAINER
            assert container["resources"]["limits"] and container["resources"]["requests"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


# --- gateway ------------------------------------------------------------------

def test_gateway_deployment_defaults(render):
    deployment = by_kind_and_name(render())[("Deployment", GW)]
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "myservice", "app.kubernetes.io/instance": "rel",
        "app.kubernetes.io/component": "gateway"}
    assert pod["spec"]["automountServiceAccountToken"] is True
    # the default front (haproxy) is a container of its own: test_front_values.py
    assert [c["name"] for c in pod["spec"]["containers"]] == ["gateway", "front"]
    container = container_named(pod["spec"], "gateway")
    front = container_named(pod["spec"], "front")
    assert (container["image"], container["imagePullPolicy"], container["args"]) == (
        "myservice-gateway:dev", "IfNotPresent", ["gateway"])
    # the public port is the front's; the Python gateway listens on a socket in the shared directory
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert front["ports"] == [{"name": "grpc", "containerPort": 10000, "protocol": "TCP"},
                              {"name": "front-metrics", "containerPort": 9101, "protocol": "TCP"}]
    assert env_of(container) == {
        "MYSERVICE_BACKEND": "kubernetes",
        "MYSERVICE_PORT": "10000",
        "MYSERVICE_SERVICES": "myservice.v1.MyService",
        "MYSERVICE_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "MYSERVICE_USERS_FILE": "/etc/myservice/users/users.json",
        "MYSERVICE_JWT_KEY_FILE": "/etc/myservice/jwt/key",
        "MYSERVICE_DEV_USER": "false",
        "MYSERVICE_SESSION_READY_TIMEOUT_SECONDS": "120",
        "MYSERVICE_MAX_SESSIONS_PER_USER": "10",
        "MYSERVICE_TOKEN_TTL_SECONDS": "3600",
        "MYSERVICE_ENDED_SESSIONS_REMEMBERED": "100000",
        "MYSERVICE_METRICS_PORT": "9090",
        "MYSERVICE_METRICS_HOST": "0.0.0.0",
        "MYSERVICE_FRONT": "haproxy",
        "MYSERVICE_FRONT_DIRECTORY": "/run/myservice/front",
        "MYSERVICE_FRONT_METRICS_PORT": "9101",
    }
    assert env_of(front) == {"MYSERVICE_FRONT_DIRECTORY": "/run/myservice/front"}
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics"}
    # the pod is Ready when HAProxy's /ready answers (HAProxy runs and the gateway's socket passes)
    assert "readinessProbe" not in container
    assert container["livenessProbe"]["httpGet"] == {"path": LIVENESS_PATH, "port": "metrics"}
    assert front["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "front-metrics"}
    assert front["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    # drainSeconds (5): the front accepts on for 5 s, the gateway serves on 2 s longer, the pod has 5 + 25
    assert front["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sleep", "5"]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sleep", "7"]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert pod["spec"]["volumes"] == [
        {"name": "front", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": "users", "secret": {"secretName": "rel-myservice-users"}},
        {"name": "jwt", "secret": {"secretName": "rel-myservice-jwt"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]


def test_gateway_forwards_the_services_of_its_values(render):
    # gateway.services -> MYSERVICE_SERVICES, read by the gateway's own declaration.
    from myservice_gateway.settings import parse_services

    deployment = by_kind_and_name(render("--set", "gateway.services={counter.v1.Counter,x.v1.X}"))[("Deployment", GW)]
    value = env_of(container_named(deployment["spec"]["template"]["spec"], "gateway"))["MYSERVICE_SERVICES"]
    assert parse_services(value) == ("counter.v1.Counter", "x.v1.X")


def test_gateway_replicas_and_node_port(render):
    objects = by_kind_and_name(render("-f", FULL))
    assert objects[("Deployment", GW)]["spec"]["replicas"] == 2
    service = objects[("Service", GW)]
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [{"name": "grpc", "port": 10000, "targetPort": "grpc",
                                         "protocol": "TCP", "appProtocol": "grpc", "nodePort": 30100}]


def test_gateway_service_default_is_cluster_ip(render):
    service = by_kind_and_name(render())[("Service", GW)]
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": "myservice", "app.kubernetes.io/instance": "rel",
                     "app.kubernetes.io/component": "gateway"},
        "ports": [{"name": "grpc", "port": 10000, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}],
    }


# --- operator -----------------------------------------------------------------

def test_operator_deployment_defaults(render):
    deployment = by_kind_and_name(render())[("Deployment", OP)]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "myservice-gateway:dev"
    assert container["command"] == ["/usr/bin/tini", "--", "myservice-operator"]
    assert env_of(container) == {
        "MYSERVICE_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "MYSERVICE_INSTANCE_IMAGE": "myservice-service:dev",
        "MYSERVICE_INSTANCE_IMAGE_PULL_POLICY": "IfNotPresent",
        "MYSERVICE_INSTANCE_PORT": "50051",
        "MYSERVICE_MAX_SESSIONS": "10",
        "MYSERVICE_WARM_POOL_SIZE": "0",
        "MYSERVICE_WARM_POOL_MAX_STARTING": "2",
        "MYSERVICE_SESSION_READY_TIMEOUT_SECONDS": "120",
        "MYSERVICE_FINISHED_TTL_SECONDS": "300",
        "MYSERVICE_WATCH_TIMEOUT_SECONDS": "300",
        "MYSERVICE_OPERATOR_LIVENESS_PORT": "8080",
        "MYSERVICE_OPERATOR_METRICS_PORT": "9091",
        "MYSERVICE_OPERATOR_METRICS_HOST": "0.0.0.0",
        "MYSERVICE_OPERATOR_LEASE_NAME": OP,
        "MYSERVICE_OPERATOR_IDENTITY": {"fieldRef": {"fieldPath": "metadata.name"}},
        "MYSERVICE_OPERATOR_DEBUG": "0",
        "MYSERVICE_INSTANCE_CPU_REQUEST": "100m",
        "MYSERVICE_INSTANCE_CPU_LIMIT": "500m",
        "MYSERVICE_INSTANCE_MEMORY_REQUEST": "128Mi",
        "MYSERVICE_INSTANCE_MEMORY_LIMIT": "256Mi",
        "MYSERVICE_INSTANCE_SERVICE_ACCOUNT": "",
        "MYSERVICE_INSTANCE_TERMINATION_GRACE_SECONDS": "5",
        "MYSERVICE_INSTANCE_POD_TEMPLATE": "{}",
        "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS": "900",
        "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS": "86400",
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"},
                                  {"name": "metrics", "containerPort": 9091, "protocol": "TCP"}]
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9091", "prometheus.io/path": "/metrics"}


def test_operator_metrics_off_and_own_annotations(render):
    def operator(*args: str) -> dict:
        return by_kind_and_name(render(*args))[("Deployment", OP)]["spec"]["template"]
    off = operator("--set", "operator.metricsPort=0")
    assert "annotations" not in off["metadata"]
    assert [p["name"] for p in off["spec"]["containers"][0]["ports"]] == ["health"]
    assert env_of(off["spec"]["containers"][0])["MYSERVICE_OPERATOR_METRICS_PORT"] == "0"
    mine = operator("--set", "operator.metricsPort=9100", "--set-string", "operator.podAnnotations.team=x",
                    "--set-string", "operator.podAnnotations.prometheus\\.io/scrape=false")
    assert mine["metadata"]["annotations"] == {
        "team": "x", "prometheus.io/scrape": "false", "prometheus.io/port": "9100", "prometheus.io/path": "/metrics"}


def test_an_old_values_file_with_the_reconcile_interval_still_installs(render):
    objects = by_kind_and_name(render("--set", "operator.reconcileIntervalSeconds=5"))
    assert "MYSERVICE_RECONCILE_INTERVAL_SECONDS" not in env_of(
        objects[("Deployment", OP)]["spec"]["template"]["spec"]["containers"][0])


def test_operator_env_follows_values(render):
    objects = by_kind_and_name(render("-f", E2E, "--set", "image.service.tag=1.2.3"))
    env = env_of(objects[("Deployment", OP)]["spec"]["template"]["spec"]["containers"][0])
    assert (env["MYSERVICE_INSTANCE_IMAGE"], env["MYSERVICE_INSTANCE_IMAGE_PULL_POLICY"],
            env["MYSERVICE_MAX_SESSIONS"], env["MYSERVICE_SESSION_READY_TIMEOUT_SECONDS"],
            env["MYSERVICE_FINISHED_TTL_SECONDS"],
            env["MYSERVICE_INSTANCE_CPU_REQUEST"], env["MYSERVICE_INSTANCE_MEMORY_REQUEST"]) == (
        "myservice-service:1.2.3", "Never", "2", "60", "30", "50m", "64Mi")
    gateway_spec = objects[("Deployment", GW)]["spec"]["template"]["spec"]
    gateway = container_named(gateway_spec, "gateway")
    assert gateway["imagePullPolicy"] == "Never"
    assert container_named(gateway_spec, "front")["imagePullPolicy"] == "Never"
    assert env_of(gateway)["MYSERVICE_SESSION_READY_TIMEOUT_SECONDS"] == "60"


def test_one_ready_timeout_for_operator_and_gateway_old_values_still_win(render):
    def ready(*args: str) -> tuple[str, str]:
        objects = by_kind_and_name(render(*args))
        return tuple(env_of(container_named(objects[("Deployment", name)]["spec"]["template"]["spec"], container))[
            "MYSERVICE_SESSION_READY_TIMEOUT_SECONDS"] for name, container in ((OP, "operator"), (GW, "gateway")))
    assert ready() == ("120", "120")
    assert ready("--set", "session.readyTimeoutSeconds=1000000") == ("1000000", "1000000")
    assert ready("--set", "operator.readyTimeoutSeconds=900") == ("900", "900")  # bench/scale/values.yaml
    assert ready("--set", "gateway.sessionReadyTimeoutSeconds=60") == ("60", "60")
    assert ready("--set", "operator.readyTimeoutSeconds=900", "--set", "gateway.sessionReadyTimeoutSeconds=60") == (
        "900", "900")


def test_warm_pool_reaches_the_operator_and_only_then_may_it_patch_pods(render):
    def pool(*args: str) -> tuple[str, list[str]]:
        objects = by_kind_and_name(render(*args))
        env = env_of(objects[("Deployment", OP)]["spec"]["template"]["spec"]["containers"][0])
        pods_rule = next(r for r in objects[("Role", OP)]["rules"] if r["resources"] == ["pods"])
        return env["MYSERVICE_WARM_POOL_SIZE"], pods_rule["verbs"]
    assert pool() == ("0", ["get", "list", "watch", "create", "delete"])
    assert pool("--set", "instance.warmPool.size=3") == ("3", ["get", "list", "watch", "create", "delete", "patch"])


def test_session_limits_reach_the_operator(render):
    def limits(*args: str) -> tuple[str, str]:
        env = env_of(by_kind_and_name(render(*args))[("Deployment", OP)]["spec"]["template"]["spec"]["containers"][0])
        return env["MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS"], env["MYSERVICE_SESSION_MAX_LIFETIME_SECONDS"]
    assert limits("--set", "session.idleTimeoutSeconds=5", "--set", "session.maxLifetimeSeconds=0") == ("5", "0")
    # whole seconds, never 1e+06 (Helm reads YAML numbers as floats)
    assert limits("--set-json", "session.idleTimeoutSeconds=0", "--set-json", "session.maxLifetimeSeconds=1000000") == (
        "0", "1000000")


def test_session_values_defaults():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["session"] == {"idleTimeoutSeconds": 900, "maxLifetimeSeconds": 86400, "maxPerUser": 10,
                                 "readyTimeoutSeconds": 120}


# Where the chart's value is not the declared default, and why.
CHART_OWN = {
    "gateway": {
        "MYSERVICE_BACKEND": "the chart's gateway routes to the operator's pods",
        "MYSERVICE_NAMESPACE": "the release's (downward API)",
        "MYSERVICE_USERS_FILE": "the users Secret, mounted",
        "MYSERVICE_JWT_KEY_FILE": "the JWT Secret, mounted",
        "MYSERVICE_METRICS_PORT": "on (gateway.metricsPort), for Prometheus",
        "MYSERVICE_METRICS_HOST": "the pod's IP, for Prometheus",
        "MYSERVICE_TLS_CERT_FILE": "the TLS Secret, mounted", "MYSERVICE_TLS_KEY_FILE": "the same",
        "MYSERVICE_TLS_CLIENT_CA_FILE": "the same",
        "MYSERVICE_FRONT": "always said (gateway.front): unset would mean haproxy wherever it is found",
        "MYSERVICE_FRONT_METRICS_PORT": "on (gateway.frontMetricsPort), for Prometheus",
        "MYSERVICE_FRONT_DIRECTORY": "HAProxy runs in the front container, on the directory they share",
    },
    "operator": {
        "MYSERVICE_NAMESPACE": "the release's (downward API)",
        "MYSERVICE_OPERATOR_METRICS_PORT": "on (operator.metricsPort), for Prometheus",
        "MYSERVICE_OPERATOR_METRICS_HOST": "the pod's IP, for Prometheus",
        "MYSERVICE_OPERATOR_LEASE_NAME": "HA: always an election",
        "MYSERVICE_OPERATOR_IDENTITY": "the pod name (downward API)",
    },
}


def declarations(component: str) -> dict:
    from myservice_api import settings
    from myservice_gateway.settings import GatewaySettings
    from myservice_operator.settings import Settings

    return {s.env: s for s in settings.declared(GatewaySettings if component == "gateway" else Settings)}


@pytest.mark.parametrize("component,name", [("gateway", GW), ("operator", OP)])
def test_every_env_the_chart_sets_is_declared_with_its_default_unless_said_why(render, component, name):
    declared = declarations(component)

    def env_in(*values: str) -> dict:
        spec = by_kind_and_name(render(*values))[("Deployment", name)]["spec"]["template"]["spec"]
        return env_of(container_named(spec, component))
    for values in ([], ["-f", FULL], ["--set", "gateway.front=none"],
                   ["--set", "gateway.tls.secretName=tls", "--set", "gateway.tls.clientCA.enabled=true"]):
        assert sorted(set(env_in(*values)) - set(declared)) == [], "set by the chart, read by no declaration"
    env = env_in()
    differs = {key for key, value in env.items() if not isinstance(value, str)
               or declared[key].convert(value, key) != (declared[key].factory or (lambda: declared[key].default))()}
    assert sorted(differs - set(CHART_OWN[component])) == []


def test_the_chart_sets_every_operator_setting_and_docs_list_them():
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    template = (CHART / "templates" / "operator.yaml").read_text()
    declared = set(declarations("operator"))
    assert declared == set(re.findall(r"name: (MYSERVICE_[A-Z_]+)", template))
    assert sorted(v for v in declared if f"`{v}`" not in docs) == []


# --- the instance pod template --------------------------------------------------

POD_TEMPLATE = {
    "metadata": {"labels": {"team": "games"}, "annotations": {"cost-center": "42"}},
    "spec": {
        "nodeSelector": {"type": "kwok"},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                             "labelSelector": {"matchLabels": {"team": "games"}}}}]}},
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "sessions",
        "terminationGracePeriodSeconds": 1000000,
        "securityContext": {"supplementalGroups": [2000]},
        "containers": [{"name": "instance", "resources": {"limits": {"memory": "1Gi"}},
                        "securityContext": {"readOnlyRootFilesystem": True}}],
    },
}


def operator_env(manifests: list[dict]) -> dict:
    return env_of(by_kind_and_name(manifests)[("Deployment", OP)]["spec"]["template"]["spec"]["containers"][0])


def test_pod_template_reaches_the_operator_as_one_json_document(render, tmp_path):
    values = tmp_path / "template.yaml"
    values.write_text(yaml.safe_dump({"instance": {"podTemplate": POD_TEMPLATE}}))
    env = operator_env(render("-f", str(values)))
    # whole numbers stay whole (Helm reads YAML numbers as floats)
    assert '"terminationGracePeriodSeconds":1000000' in env["MYSERVICE_INSTANCE_POD_TEMPLATE"]
    assert json.loads(env["MYSERVICE_INSTANCE_POD_TEMPLATE"]) == POD_TEMPLATE


def test_rendered_pod_template_is_what_the_operator_merges_into_its_pods(render, tmp_path):
    # the chart's env, read by the operator's own settings, through make_pod: the chain
    # values -> Deployment -> Settings -> pod, without a cluster
    from myservice_operator.pods import make_pod
    from myservice_operator.settings import Settings

    values = tmp_path / "template.yaml"
    values.write_text(yaml.safe_dump({"instance": {"podTemplate": POD_TEMPLATE}}))
    env = {k: v for k, v in operator_env(render("-f", str(values))).items() if isinstance(v, str)}
    settings = Settings.from_env({**env, "MYSERVICE_NAMESPACE": "ns"}, tmp_path / "absent")
    pod = make_pod(resource="mss-a-1", uid="u", session_id="s", settings=settings)
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    for field in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets", "priorityClassName"):
        assert spec[field] == POD_TEMPLATE["spec"][field]
    assert pod["metadata"]["labels"]["team"] == "games"
    assert pod["metadata"]["annotations"]["cost-center"] == "42"
    assert spec["terminationGracePeriodSeconds"] == 1000000
    assert spec["securityContext"]["supplementalGroups"] == [2000]
    assert spec["securityContext"]["runAsNonRoot"] is True  # the restricted defaults stay
    # the template refines instance.resources key by key: its memory limit, the chart's others
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": "500m", "memory": "1Gi"}}
    assert (container["image"], container["ports"][0]["containerPort"]) == ("myservice-service:dev", 50051)


def test_pod_template_default_is_empty_and_the_pod_unchanged(render, tmp_path):
    from myservice_operator.settings import Settings

    env = {k: v for k, v in operator_env(render()).items() if isinstance(v, str)}
    assert env["MYSERVICE_INSTANCE_POD_TEMPLATE"] == "{}"
    settings = Settings.from_env({**env, "MYSERVICE_NAMESPACE": "ns"}, tmp_path / "absent")
    assert settings.instance_pod_template == {}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["instance"]["podTemplate"] == {}


@pytest.mark.parametrize("setting,message", [
    ("instance.podTemplate.spec.restartPolicy=Always", "at '/instance/podTemplate/spec/restartPolicy': 'not' failed"),
    ("instance.podTemplate.spec.activeDeadlineSeconds=5",
     "at '/instance/podTemplate/spec/activeDeadlineSeconds': 'not' failed"),
    ("instance.podTemplate.metadata.name=x", "at '/instance/podTemplate/metadata'"),
    ("instance.podTemplate.kind=Pod", "at '/instance/podTemplate'"),
    ("instance.podTemplate.spec.nodeSelector.pool=null", "at '/instance/podTemplate/spec/nodeSelector/pool'"),
])
def test_schema_rejects_owned_or_malformed_pod_template_fields(helm, setting, message):
    assert message in refusal(helm, setting)


def test_operator_refuses_owned_fields_the_schema_lets_through(render, tmp_path):
    # container-level owned fields pass the schema; the operator names them at start
    from myservice_operator.settings import Settings, SettingsError

    values = tmp_path / "owned.yaml"
    values.write_text(yaml.safe_dump({"instance": {"podTemplate": {"spec": {"containers": [
        {"name": "instance", "image": "other:1", "env": [{"name": "MYSERVICE_INSTANCE_PORT", "value": "1"}]}]}}}}))
    env = {k: v for k, v in operator_env(render("-f", str(values))).items() if isinstance(v, str)}
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**env, "MYSERVICE_NAMESPACE": "ns"}, tmp_path / "absent")
    assert str(refused.value) == (
        "MYSERVICE_INSTANCE_POD_TEMPLATE: spec.containers[instance].image: set by the operator; "
        "spec.containers[instance].env[MYSERVICE_INSTANCE_PORT]: set by the operator")


# --- secrets ------------------------------------------------------------------

def users_json(manifests: list[dict]) -> dict:
    secret = by_kind_and_name(manifests)[("Secret", "rel-myservice-users")]
    return json.loads(secret["stringData"]["users.json"])


def test_no_users_by_default(render):
    assert users_json(render()) == {"users": {}}


def test_users_are_written_for_the_gateway_to_hash_with_argon2(render):
    """No htpasswd (bcrypt: enumerable by timing, cut at 72 bytes): `password` goes into
    users.json as given, the gateway hashes it with argon2id; `passwordHash` as given."""
    users = users_json(render("-f", FULL))["users"]
    assert users == {
        "alice": {"password": "alice-password", "role": "admin"},
        "bob": {"password_hash": "$2a$10$abcdefghijklmnopqrstuu5Kq0e3D1x8m7cFQq3yq7bFZp8k6Zp5W", "role": "user"},
        "TestUser": {"password": "TestPassword", "role": "user"},
    }


def test_users_json_of_plain_users_holds_passwords_and_no_bcrypt_hash(render, tmp_path):
    secret = by_kind_and_name(render("--set", "testUser.enabled=true", "--set", "users[0].username=carol",
                                     "--set", "users[0].password=c-pass"))[("Secret", "rel-myservice-users")]
    text = secret["stringData"]["users.json"]
    assert '"password"' in text and "$2a$" not in text and "password_hash" not in text
    argon2_hash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
    values = tmp_path / "hashed.yaml"
    values.write_text(yaml.safe_dump({"users": [{"username": "dave", "passwordHash": argon2_hash}]}))
    given = users_json(render("-f", str(values)))
    assert given == {"users": {"dave": {"password_hash": argon2_hash, "role": "user"}}}


def test_users_json_is_what_the_gateway_reads(render, tmp_path):
    from myservice_gateway.users import UserStore

    path = tmp_path / "users.json"
    path.write_text(json.dumps(users_json(render("-f", FULL))))
    store = UserStore(users_file=str(path), dev_user=False)
    assert store.authenticate("alice", "alice-password").role == "admin"
    assert store.get("alice").password_hash.startswith("$argon2id$")
    assert store.authenticate("TestUser", "TestPassword").role == "user"


def test_the_same_values_render_the_same_users_secret(render):
    """No salt at render time: an upgrade with unchanged values leaves the Secret as it is."""
    one = by_kind_and_name(render("-f", FULL))[("Secret", "rel-myservice-users")]
    two = by_kind_and_name(render("-f", FULL, "--set", "gateway.replicas=3"))[("Secret", "rel-myservice-users")]
    assert one == two


def test_existing_users_secret(render):
    manifests = render("--set", "usersExistingSecret=my-users")
    objects = by_kind_and_name(manifests)
    assert ("Secret", "rel-myservice-users") not in objects
    spec = objects[("Deployment", GW)]["spec"]["template"]["spec"]
    assert volume_named(spec, "users") == {"name": "users", "secret": {"secretName": "my-users"}}


def test_generated_jwt_key_is_64_alphanumerics(render):
    secret = by_kind_and_name(render())[("Secret", "rel-myservice-jwt")]
    key = base64.b64decode(secret["data"]["key"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{64}", key)


def test_given_jwt_key(render):
    secret = by_kind_and_name(render("-f", FULL))[("Secret", "rel-myservice-jwt")]
    assert base64.b64decode(secret["data"]["key"]) == b"0123456789abcdef0123456789abcdef-fixed-test-key"


def test_existing_jwt_secret(render):
    objects = by_kind_and_name(render("--set", "jwt.existingSecret=my-jwt"))
    assert ("Secret", "rel-myservice-jwt") not in objects
    spec = objects[("Deployment", GW)]["spec"]["template"]["spec"]
    assert volume_named(spec, "jwt") == {"name": "jwt", "secret": {"secretName": "my-jwt"}}


# --- uninstall cleanup hook ---------------------------------------------------

def test_cleanup_hook_runs_before_delete(render):
    objects = by_kind_and_name(render())
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        assert objects[(kind, CL)]["metadata"]["annotations"] == {
            "helm.sh/hook": "pre-delete", "helm.sh/hook-weight": "-10",
            "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}
    job = objects[("Job", CL)]
    assert job["metadata"]["annotations"] == {
        "helm.sh/hook": "pre-delete", "helm.sh/hook-weight": "0",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}
    assert job["spec"]["activeDeadlineSeconds"] == 180
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/usr/bin/tini", "--", "myservice-operator", "cleanup", "--grace-seconds", "60"]
    assert env_of(container) == {"MYSERVICE_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}}}


def test_cleanup_hook_can_be_turned_off(render):
    assert not [m for m in render("--set", "cleanup.enabled=false") if m["metadata"]["name"] == CL]


# --- network policy -----------------------------------------------------------

def test_network_policy_is_on_by_default_and_lets_only_gateways_reach_instances(render):
    policy = by_kind_and_name(render())[("NetworkPolicy", "rel-myservice-instances")]
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "myservice",
                                        "app.kubernetes.io/component": "instance",
                                        "app.kubernetes.io/managed-by": "myservice-operator"}},
        "policyTypes": ["Ingress"],
        "ingress": [{
            "from": [{"podSelector": {"matchLabels": {
                "app.kubernetes.io/name": "myservice", "app.kubernetes.io/instance": "rel",
                "app.kubernetes.io/component": "gateway"}}}],
            "ports": [{"protocol": "TCP", "port": 50051}],
        }],
    }


def test_network_policy_admits_the_gateway_pods_and_not_the_helm_test_pod(render):
    objects = by_kind_and_name(render("-f", E2E))
    allowed = objects[("NetworkPolicy", "rel-myservice-instances")]["spec"]["ingress"][0]["from"][0]["podSelector"]
    gateway_pod_labels = objects[("Deployment", GW)]["spec"]["template"]["metadata"]["labels"]
    test_pod_labels = objects[("Pod", "rel-myservice-test")]["metadata"]["labels"]
    assert allowed["matchLabels"].items() <= gateway_pod_labels.items()
    assert not allowed["matchLabels"].items() <= test_pod_labels.items()


def test_network_policy_follows_the_instance_port_and_can_be_turned_off(render):
    policy = by_kind_and_name(render("--set", "instance.port=6000"))[("NetworkPolicy", "rel-myservice-instances")]
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 6000}]
    assert not [m for m in render("--set", "networkPolicy.enabled=false") if m["kind"] == "NetworkPolicy"]


def test_network_policy_selects_the_pods_the_operator_makes():
    from myservice_operator.pods import instance_labels

    values = yaml.safe_load((CHART / "templates" / "networkpolicy.yaml").read_text().split("podSelector:")[1]
                            .split("policyTypes")[0])
    assert values["matchLabels"].items() <= instance_labels("mss-x-1").items()


# --- helm test ----------------------------------------------------------------

def test_helm_test_pod(render):
    objects = by_kind_and_name(render("-f", E2E))
    pod = objects[("Pod", "rel-myservice-test")]
    assert pod["metadata"]["annotations"] == {"helm.sh/hook": "test",
                                              "helm.sh/hook-delete-policy": "before-hook-creation"}
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["/usr/bin/tini", "--", "integrationtests", "basic_workflow",
                                    "--gateway", "rel-myservice-gateway:10000"]
    assert env_of(container) == {
        "MYSERVICE_TEST_USERNAME": {"secretKeyRef": {"name": "rel-myservice-test-user", "key": "username"}},
        "MYSERVICE_TEST_PASSWORD": {"secretKeyRef": {"name": "rel-myservice-test-user", "key": "password"}},
    }
    assert objects[("Secret", "rel-myservice-test-user")]["stringData"] == {
        "username": "TestUser", "password": "TestPassword"}
    assert "TestUser" in users_json(render("-f", E2E))["users"]


# --- values schema ------------------------------------------------------------

@pytest.mark.parametrize("setting,message", [
    ("gateway.replicas=two", "at '/gateway/replicas': got string, want integer"),
    ("image.service.pullPolicy=Sometimes", "at '/image/service/pullPolicy'"),
    ("jwt.key=short", "at '/jwt/key'"),
    ("gateway.service.type=Ingress", "at '/gateway/service/type'"),
    ("operator.maxSessions=-1", "at '/operator/maxSessions'"),
    ("users[0].username=nopassword", "at '/users/0'"),
    ("session.idleTimeoutSeconds=-1", "at '/session/idleTimeoutSeconds'"),
    ("session.maxLifetimeSeconds=1.5", "at '/session/maxLifetimeSeconds'"),
    ("session.maxPerUser=-1", "at '/session/maxPerUser'"),
    ("instance.warmPool.size=-1", "at '/instance/warmPool/size'"),
    ("instance.warmPool.size=some", "at '/instance/warmPool/size'"),
    ("instance.warmPool.maxStarting=0", "at '/instance/warmPool/maxStarting'"),
    ("gateway.services=null", "at '/gateway'"),
    ("gateway.services={}", "at '/gateway/services/0'"),  # helm reads {} as one empty name
    ("gateway.services={a/b}", "at '/gateway/services/0'"),
    ("gateway.services={a.B,a.B}", "at '/gateway/services'"),
])
def test_schema_rejects_bad_values(helm, setting, message):
    assert message in refusal(helm, setting)


def test_notes_tell_how_to_reach_the_gateway(helm, tmp_path):
    # helm template never prints NOTES.txt: render a copy of it as an ordinary template.
    chart = tmp_path / "myservice"
    shutil.copytree(CHART, chart)
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes-copy.tpl").write_text('{{- define "notes" -}}\n' + notes + "{{- end }}\n")
    (chart / "templates" / "notes-copy.yaml").write_text('notes: {{ include "notes" . | toJson }}\n')
    result = run_helm(helm, "template", "rel", str(chart), "--namespace", "ns",
                      "--show-only", "templates/notes-copy.yaml")
    assert result.returncode == 0, result.stderr
    text = yaml.safe_load(result.stdout)["notes"]
    assert "kubectl -n ns port-forward svc/rel-myservice-gateway 10000:10000" in text
    assert "kubectl -n ns get mss -o wide" in text
    assert "WARNING: no users are configured" in text


# --- TLS on the gateway -----------------------------------------------------------

TLS = ["--set", "gateway.tls.secretName=gw-tls"]
TLS_MOUNT = {"name": "tls", "mountPath": "/etc/myservice/tls", "readOnly": True}


def gateway_container(manifests: list[dict], name: str = "gateway") -> dict:
    return container_named(by_kind_and_name(manifests)[("Deployment", GW)]["spec"]["template"]["spec"], name)


def test_gateway_tls_mounts_the_secret_as_a_directory_and_sets_the_files(render):
    deployment = by_kind_and_name(render(*TLS))[("Deployment", GW)]
    spec = deployment["spec"]["template"]["spec"]
    container = container_named(spec, "gateway")
    env = env_of(container)
    assert (env["MYSERVICE_TLS_CERT_FILE"], env["MYSERVICE_TLS_KEY_FILE"]) == (
        "/etc/myservice/tls/tls.crt", "/etc/myservice/tls/tls.key")
    assert "MYSERVICE_TLS_CLIENT_CA_FILE" not in env
    assert TLS_MOUNT in container["volumeMounts"]
    assert not any("subPath" in m for m in container["volumeMounts"])  # rotation must reach the pod
    assert {"name": "tls", "secret": {"secretName": "gw-tls", "defaultMode": 0o440}} in spec["volumes"]


def test_gateway_tls_probes_are_tcp_without_the_front(render):
    # (with the front, the chart's default, readiness asks HAProxy's /ready: test_front_values.py)
    container = gateway_container(render(*TLS, "--set", "gateway.front=none"))
    for probe in ("readinessProbe", "livenessProbe"):
        assert "grpc" not in container[probe]
        assert container[probe]["tcpSocket"] == {"port": "grpc"}
    plain = gateway_container(render("--set", "gateway.front=none"))
    for probe in ("readinessProbe", "livenessProbe"):
        assert "tcpSocket" not in plain[probe] and plain[probe]["grpc"] == {"port": 10000}


def test_gateway_client_ca_from_the_tls_secret_or_its_own(render):
    same = gateway_container(render(*TLS, "--set", "gateway.tls.clientCA.enabled=true"))
    assert env_of(same)["MYSERVICE_TLS_CLIENT_CA_FILE"] == "/etc/myservice/tls/ca.crt"
    assert [m["name"] for m in same["volumeMounts"] if m["name"].startswith("tls")] == ["tls"]
    manifests = render(*TLS, "--set", "gateway.tls.clientCA.enabled=true",
                       "--set", "gateway.tls.clientCA.secretName=clients-ca", "--set", "gateway.tls.clientCA.key=bundle.pem")
    spec = by_kind_and_name(manifests)[("Deployment", GW)]["spec"]["template"]["spec"]
    own = container_named(spec, "gateway")
    assert env_of(own)["MYSERVICE_TLS_CLIENT_CA_FILE"] == "/etc/myservice/tls-client-ca/bundle.pem"
    assert {"name": "tls-client-ca", "mountPath": "/etc/myservice/tls-client-ca", "readOnly": True} in own["volumeMounts"]
    assert {"name": "tls-client-ca", "secret": {"secretName": "clients-ca", "defaultMode": 0o440}} in spec["volumes"]


def test_every_pod_is_still_restricted_with_tls(render):
    for spec in pod_specs(render("-f", E2E, *TLS, "--set", "gateway.tls.clientCA.enabled=true")):
        assert spec["securityContext"] == RESTRICTED_POD
        for container in spec["containers"]:
            assert container["securityContext"] == RESTRICTED_CONTAINER


def test_helm_test_pod_trusts_the_secrets_ca(render):
    pod = by_kind_and_name(render("-f", E2E, *TLS))[("Pod", "rel-myservice-test")]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["/usr/bin/tini", "--", "integrationtests", "basic_workflow",
                                    "--gateway", "rel-myservice-gateway:10000", "--tls-ca", "/etc/myservice/tls/ca.crt"]
    assert TLS_MOUNT in container["volumeMounts"]
    assert {"name": "tls", "secret": {"secretName": "gw-tls", "defaultMode": 0o440,
                                      "items": [{"key": "ca.crt", "path": "ca.crt"}]}} in pod["spec"]["volumes"]


def test_helm_test_pod_with_a_server_name_and_client_certificates(render):
    pod = by_kind_and_name(render("-f", E2E, *TLS, "--set", "gateway.tls.serverName=gw.example.com",
                                  "--set", "gateway.tls.clientCA.enabled=true"))[("Pod", "rel-myservice-test")]
    assert pod["spec"]["containers"][0]["command"][-8:] == [
        "--tls-ca", "/etc/myservice/tls/ca.crt", "--tls-server-name", "gw.example.com",
        "--tls-cert", "/etc/myservice/tls/tls.crt", "--tls-key", "/etc/myservice/tls/tls.key"]
    assert {"name": "tls", "secret": {"secretName": "gw-tls", "defaultMode": 0o440}} in pod["spec"]["volumes"]


def test_schema_wants_a_tls_secret_for_client_certificates(helm):
    assert "at '/gateway/tls/secretName': minLength: got 0, want 1" in refusal(
        helm, "gateway.tls.clientCA.enabled=true")


# --- operator HA (Lease) and metrics scraping ----------------------------------

def test_operator_lease_is_rendered_empty_for_the_operator_to_take(render):
    lease = by_kind_and_name(render())[("Lease", OP)]
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    assert (lease["metadata"]["namespace"], lease["spec"]) == ("ns", {})
    assert by_kind_and_name(render("--set", "operator.replicas=3"))[("Deployment", OP)]["spec"]["replicas"] == 3


def test_gateway_metrics_off_and_own_annotations(render):
    def gateway(*args: str) -> dict:
        return by_kind_and_name(render(*args))[("Deployment", GW)]["spec"]["template"]
    off = gateway("--set", "gateway.metricsPort=0")
    container = container_named(off["spec"], "gateway")
    # with the front: no port left on the gateway container, nor the liveness probe on it
    assert "ports" not in container and "livenessProbe" not in container
    assert env_of(container)["MYSERVICE_METRICS_PORT"] == "0"
    assert [p["name"] for p in container_named(off["spec"], "front")["ports"]] == ["grpc", "front-metrics"]
    assert "annotations" not in off["metadata"]
    alone = gateway("--set", "gateway.metricsPort=0", "--set", "gateway.front=none",
                    "--set", "gateway.frontMetricsPort=0")
    assert [c["name"] for c in alone["spec"]["containers"]] == ["gateway"]
    assert [p["name"] for p in alone["spec"]["containers"][0]["ports"]] == ["grpc"]
    assert "annotations" not in alone["metadata"]
    mine = gateway("--set", "gateway.metricsPort=9200", "--set-string", "gateway.podAnnotations.team=x",
                   "--set-string", "gateway.podAnnotations.prometheus\\.io/scrape=false")
    assert mine["metadata"]["annotations"] == {
        "team": "x", "prometheus.io/scrape": "false", "prometheus.io/port": "9200", "prometheus.io/path": "/metrics"}
    assert container_named(mine["spec"], "gateway")["ports"] == [
        {"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]


def test_service_monitors_off_by_default(render):
    kinds = {m["kind"] for m in render()}
    assert "ServiceMonitor" not in kinds
    assert [m["metadata"]["name"] for m in render() if m["kind"] == "Service"] == [GW]


def test_service_monitors_for_both_components(render):
    # (the front's exporter beside the gateway's: test_front_values.py)
    objects = by_kind_and_name(render("--set", "metrics.serviceMonitor.enabled=true", "--set", "gateway.front=none",
                                      "--set", "metrics.serviceMonitor.interval=15s",
                                      "--set-string", "metrics.serviceMonitor.labels.release=prom"))
    for component, name, port in (("gateway", GW, 9090), ("operator", OP, 9091)):
        selector = {"app.kubernetes.io/name": "myservice", "app.kubernetes.io/instance": "rel",
                    "app.kubernetes.io/component": component}
        service = objects[("Service", f"{name}-metrics")]
        assert service["spec"] == {"clusterIP": "None", "selector": selector, "ports": [
            {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]}
        assert service["metadata"]["labels"]["myservice.io/metrics"] == "true"
        monitor = objects[("ServiceMonitor", name)]
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "prom"
        assert monitor["spec"] == {
            "namespaceSelector": {"matchNames": ["ns"]},
            "selector": {"matchLabels": {**selector, "myservice.io/metrics": "true"}},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}]}
    # the gateway's own Service stays gRPC only (a NodePort never publishes /metrics)
    assert [p["name"] for p in objects[("Service", GW)]["spec"]["ports"]] == ["grpc"]
    # a component with metrics off gets neither
    off = by_kind_and_name(render("--set", "metrics.serviceMonitor.enabled=true", "--set", "operator.metricsPort=0"))
    assert ("ServiceMonitor", OP) not in off and ("Service", f"{OP}-metrics") not in off
    assert ("ServiceMonitor", GW) in off


def test_network_policy_still_selects_only_instance_pods(render):
    policy = by_kind_and_name(render("--set", "metrics.serviceMonitor.enabled=true"))[
        ("NetworkPolicy", "rel-myservice-instances")]
    # still only the instance pods: /metrics of the gateway and operator stay reachable
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "instance"
