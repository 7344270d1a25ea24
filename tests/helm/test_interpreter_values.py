"""The chart with the interpreter example's values (examples/interpreter/values.yaml):
an instance pod that runs users' code is a sandbox, and reaches nothing.

Rendered with helm, then read by the operator's own settings and built by its
make_pod, as test_chart.py does for the pod template: values -> Deployment ->
Settings -> pod, without a cluster."""
from __future__ import annotations

import sys

import yaml

from .conftest import CHART, ROOT, by_kind_and_name, refusal, run_helm

INTERPRETER = ROOT / "examples" / "interpreter"
VALUES = str(INTERPRETER / "values.yaml")
OP = "rel-myservice-operator"
NO_EGRESS = ("NetworkPolicy", "rel-myservice-instances-no-egress")
INSTANCE_SELECTOR = {"matchLabels": {"app.kubernetes.io/name": "myservice",
                                     "app.kubernetes.io/component": "instance",
                                     "app.kubernetes.io/managed-by": "myservice-operator"}}


def operator_settings(manifests: list[dict], tmp_path):
    from myservice_operator.settings import Settings

    container = by_kind_and_name(manifests)[("Deployment", OP)]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    return Settings.from_env({**env, "MYSERVICE_NAMESPACE": "ns"}, tmp_path / "absent")


def interpreter_pod(render, tmp_path) -> dict:
    from myservice_operator.pods import make_pod

    settings = operator_settings(render("-f", VALUES), tmp_path)
    return make_pod(resource="mss-a-1", uid="u", session_id="s", settings=settings)


def test_lint_strict_with_the_interpreter_values(helm):
    result = run_helm(helm, "lint", "--strict", str(CHART), "-f", VALUES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_no_egress_policy_is_off_by_default(render):
    assert NO_EGRESS not in by_kind_and_name(render())


def test_interpreter_values_deny_every_egress_of_instance_pods(render):
    objects = by_kind_and_name(render("-f", VALUES))
    policy = objects[NO_EGRESS]
    assert policy["metadata"]["namespace"] == "ns"
    # Egress with no rule: no connection out at all (API server, pods, DNS, internet)
    assert policy["spec"] == {"podSelector": INSTANCE_SELECTOR, "policyTypes": ["Egress"], "egress": []}
    # and the ingress policy stays: only this release's gateways reach an instance
    ingress = objects[("NetworkPolicy", "rel-myservice-instances")]["spec"]
    assert (ingress["podSelector"], ingress["policyTypes"]) == (INSTANCE_SELECTOR, ["Ingress"])


def test_no_egress_policy_holds_without_the_ingress_policy(render):
    objects = by_kind_and_name(render("--set", "networkPolicy.enabled=false",
                                      "--set", "networkPolicy.denyInstanceEgress=true"))
    assert NO_EGRESS in objects and ("NetworkPolicy", "rel-myservice-instances") not in objects


def test_schema_rejects_a_non_boolean_deny(helm):
    assert "at '/networkPolicy/denyInstanceEgress'" in refusal(helm, "networkPolicy.denyInstanceEgress=maybe")


def test_no_egress_policy_selects_session_and_warm_pool_pods(render, tmp_path):
    from myservice_operator import pool

    settings = operator_settings(render("-f", VALUES), tmp_path)
    member = pool.make_member(settings, template=pool.template_hash(settings), suffix="x")
    session_pod = interpreter_pod(render, tmp_path)
    for pod in (session_pod, member):
        assert INSTANCE_SELECTOR["matchLabels"].items() <= pod["metadata"]["labels"].items(), pod["metadata"]


def test_interpreter_pod_is_a_sandbox(render, tmp_path):
    pod = interpreter_pod(render, tmp_path)
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert container["image"] == "myservice-interpreter:dev"
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                       "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    # the one writable place is the /tmp emptyDir
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "96Mi"},
                                      "limits": {"cpu": "500m", "memory": "384Mi"}}


def test_interpreter_settings_reach_the_pod_under_their_declared_names(render, tmp_path):
    sys.path.insert(0, str(INTERPRETER))
    try:
        from myservice_interpreter.settings import InterpreterSettings
        from myservice_api import settings
    finally:
        sys.path.remove(str(INTERPRETER))
    container = interpreter_pod(render, tmp_path)["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    declared = {s.env for s in settings.declared(InterpreterSettings)}
    ours = {name: value for name, value in env.items() if name.startswith("MYSERVICE_INTERPRETER_")}
    assert set(ours) == declared
    parsed = settings.parse(InterpreterSettings, ours)
    assert (parsed.time_limit, parsed.max_output, parsed.memory_limit_mib) == (10.0, 65536, 256)
    # the process that runs the code stays below the pod's memory limit (384Mi), with room for the server
    assert parsed.memory_limit_mib < 384 - 64


def test_interpreter_values_keep_the_sessions_limits(render):
    values = yaml.safe_load(open(VALUES))
    assert values["session"] == {"idleTimeoutSeconds": 600, "maxLifetimeSeconds": 14400}
    operator = by_kind_and_name(render("-f", VALUES))[("Deployment", OP)]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert (env["MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS"], env["MYSERVICE_SESSION_MAX_LIFETIME_SECONDS"]) == \
        ("600", "14400")



def test_the_gateway_forwards_the_interpreter_only(render):
    gateway = by_kind_and_name(render("-f", VALUES))[("Deployment", "rel-myservice-gateway")]
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MYSERVICE_SERVICES"] == "interpreter.v1.Interpreter"
