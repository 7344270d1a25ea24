"""bench/scale/manifests.py: the nodes, FlowSchemas and chart values of a scale run."""
import json
import subprocess
import sys

import bcrypt

import manifests
from myservice_operator.pods import make_pod, template_problems
from myservice_operator.settings import Settings

from ..helm.conftest import ROOT


def test_kwok_node_is_managed_by_this_runs_kwok_and_tainted_for_everyone_else():
    node = manifests.kwok_node("scale-ab12", 3)
    assert node["metadata"]["name"] == "scale-ab12-kwok-3"
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "scale-ab12"
    assert node["metadata"]["labels"]["myservice.io/scale-run"] == "scale-ab12"
    assert node["spec"]["taints"] == [{"key": "kwok.x-k8s.io/node", "value": "scale-ab12", "effect": "NoSchedule"}]


def test_flow_schema_matches_one_component_service_account_before_the_builtin_one():
    schema = manifests.flow_schema("scale-ab12", "myservice-scale-ab12", "scale", "operator")
    assert schema["metadata"]["name"] == "scale-ab12-operator"
    spec = schema["spec"]
    assert spec["matchingPrecedence"] < 9000  # the built-in "service-accounts"
    assert spec["priorityLevelConfiguration"] == {"name": "workload-low"}  # the built-in one's level
    assert spec["rules"][0]["subjects"] == [{"kind": "ServiceAccount", "serviceAccount": {
        "name": "scale-myservice-operator", "namespace": "myservice-scale-ab12"}}]


def test_chart_values_users_have_cheap_hashes_and_pods_go_to_this_runs_nodes():
    values = manifests.chart_values("scale-ab12", 3, "pw")
    assert [u["username"] for u in values["users"]] == ["scale-user-0", "scale-user-1", "scale-user-2"]
    password_hash = values["users"][0]["passwordHash"]
    assert password_hash.startswith("$2b$04$") and bcrypt.checkpw(b"pw", password_hash.encode())
    template = values["instance"]["podTemplate"]
    assert template_problems(template) == []
    pod = make_pod(resource="mss-a-1", uid="u", session_id="s",
                   settings=Settings(namespace="ns", instance_pod_template=template))
    node = manifests.kwok_node("scale-ab12", 0)
    # the pod selects the node's labels and tolerates its taint
    assert pod["spec"]["nodeSelector"].items() <= node["metadata"]["labels"].items()
    taint = node["spec"]["taints"][0]
    assert {"key": taint["key"], "operator": "Equal", "value": taint["value"],
            "effect": taint["effect"]} in pod["spec"]["tolerations"]


def test_cli_prints_kubectl_lists():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "scale" / "manifests.py"), "nodes", "scale-x", "2"],
                         capture_output=True, text=True, check=True).stdout
    document = json.loads(out)
    assert document["kind"] == "List"
    assert [n["metadata"]["name"] for n in document["items"]] == ["scale-x-kwok-0", "scale-x-kwok-1"]


def test_scale_values_render_and_the_operator_accepts_the_rendered_template(tmp_path):
    import pytest
    import yaml

    from ..helm.conftest import CHART, find_helm, run_helm

    helm = find_helm()
    if helm is None:
        pytest.fail("helm not found (see tests/helm/conftest.py)", pytrace=False)
    run_values = tmp_path / "run-values.json"
    run_values.write_text(json.dumps(manifests.chart_values("scale-ab12", 2, "pw")))
    result = run_helm(helm, "template", "scale", str(CHART), "--namespace", "myservice-scale-ab12",
                      "-f", str(ROOT / "bench" / "scale" / "values.yaml"), "-f", str(run_values))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert not [d for d in docs if d["kind"] == "CustomResourceDefinition"]  # shared: never taken over
    operator = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "scale-myservice-operator")
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] == manifests.component_service_account(
        "scale", "operator")
    env = {e["name"]: e["value"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    settings = Settings.from_env({**env, "MYSERVICE_NAMESPACE": "myservice-scale-ab12"})
    assert settings.instance_pod_template["spec"]["nodeSelector"] == {"myservice.io/scale-run": "scale-ab12"}
    assert (settings.session_idle_timeout_seconds, settings.session_max_lifetime_seconds) == (0, 0)
    gateway = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "scale-myservice-gateway")
    genv = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (genv["MYSERVICE_LOGIN_PEER_FAILURE_BURST"], genv["MYSERVICE_MAX_SESSIONS_PER_USER"]) == ("0", "0")
