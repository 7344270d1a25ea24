"""make_pod: the exact manifest of a session's instance pod; the pod template merged into it."""
import json

import pytest

from myservice_operator.pods import (
    INSTANCE_ENV_NAMES, apply_template, instance_env, instance_labels, instance_selector, make_pod,
    template_problems)
from myservice_operator.settings import Settings, SettingsError

RESOURCE = "mss-alice-0123456789"


def test_make_pod_with_default_settings():
    pod = make_pod(resource=RESOURCE, uid="uid-1", session_id="Alice/1", settings=Settings(namespace="ns"))
    assert pod == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "mss-alice-0123456789-pod",
            "namespace": "ns",
            "labels": {
                "app.kubernetes.io/name": "myservice",
                "app.kubernetes.io/component": "instance",
                "app.kubernetes.io/managed-by": "myservice-operator",
                "myservice.io/session": RESOURCE,
            },
            "annotations": {"myservice.io/session-id": "Alice/1"},
            "ownerReferences": [{
                "apiVersion": "myservice.io/v1alpha1",
                "kind": "MyServiceSession",
                "name": RESOURCE,
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 5,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "instance",
                "image": "myservice-service:dev",
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "grpc", "containerPort": 50051, "protocol": "TCP"}],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "MYSERVICE_INSTANCE_PORT", "value": "50051"},
                    {"name": "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS", "value": "900"},
                    {"name": "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS", "value": "86400"},
                ],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
                "readinessProbe": {"grpc": {"port": 50051}, "periodSeconds": 1, "timeoutSeconds": 3,
                                   "failureThreshold": 3},
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
            "activeDeadlineSeconds": 86460,
        },
    }


def test_make_pod_takes_image_port_resources_and_account_from_settings():
    settings = Settings(
        namespace="prod", instance_image="reg/svc:2", instance_image_pull_policy="Never",
        instance_port=6000, instance_cpu_request="1", instance_cpu_limit="2",
        instance_memory_request="1Gi", instance_memory_limit="2Gi",
        instance_service_account="instances", instance_termination_grace_seconds=0)
    pod = make_pod(resource=RESOURCE, uid="u", session_id="s", settings=settings)
    container = pod["spec"]["containers"][0]
    assert pod["metadata"]["namespace"] == "prod"
    assert pod["spec"]["serviceAccountName"] == "instances"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 0
    assert (container["image"], container["imagePullPolicy"]) == ("reg/svc:2", "Never")
    assert container["ports"] == [{"name": "grpc", "containerPort": 6000, "protocol": "TCP"}]
    assert container["env"][1] == {"name": "MYSERVICE_INSTANCE_PORT", "value": "6000"}
    assert container["readinessProbe"]["grpc"] == {"port": 6000}
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"},
                                      "limits": {"cpu": "2", "memory": "2Gi"}}


def test_make_pod_passes_the_session_limits_and_bounds_the_lifetime():
    settings = Settings(namespace="ns", session_idle_timeout_seconds=5, session_max_lifetime_seconds=3600)
    pod = make_pod(resource=RESOURCE, uid="u", session_id="s", settings=settings)
    assert pod["spec"]["containers"][0]["env"][2:] == [
        {"name": "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS", "value": "5"},
        {"name": "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS", "value": "3600"},
    ]
    assert pod["spec"]["activeDeadlineSeconds"] == 3660


def test_make_pod_with_the_limits_off_passes_zero_and_sets_no_deadline():
    # 0 reaches the instance as 0 (off), not as "unset" (which would be its own default)
    settings = Settings(namespace="ns", session_idle_timeout_seconds=0, session_max_lifetime_seconds=0)
    pod = make_pod(resource=RESOURCE, uid="u", session_id="s", settings=settings)
    assert pod["spec"]["containers"][0]["env"][2:] == [
        {"name": "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS", "value": "0"},
        {"name": "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS", "value": "0"},
    ]
    assert "activeDeadlineSeconds" not in pod["spec"]


def test_make_pod_never_uses_generate_name():
    pod = make_pod(resource=RESOURCE, uid="u", session_id="s", settings=Settings(namespace="ns"))
    assert "generateName" not in pod["metadata"]
    assert pod == make_pod(resource=RESOURCE, uid="u", session_id="s", settings=Settings(namespace="ns"))


def test_labels_and_selector():
    assert instance_labels("mss-x-1") == {
        "app.kubernetes.io/name": "myservice",
        "app.kubernetes.io/component": "instance",
        "app.kubernetes.io/managed-by": "myservice-operator",
        "myservice.io/session": "mss-x-1",
    }
    assert instance_selector() == "app.kubernetes.io/component=instance,app.kubernetes.io/managed-by=myservice-operator"


# --- the installer's pod template (instance.podTemplate) ----------------------------

KWOK_PLACEMENT = {
    "metadata": {"labels": {"team": "games"}, "annotations": {"cost-center": "42"}},
    "spec": {
        "nodeSelector": {"type": "kwok"},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "sessions",
    },
}


def pod_with(template: dict, **settings: object) -> dict:
    return make_pod(resource=RESOURCE, uid="uid-1", session_id="Alice/1",
                    settings=Settings(namespace="ns", instance_pod_template=template, **settings))


def test_template_adds_placement_pull_secrets_priority_labels_and_annotations():
    plain = pod_with({})
    pod = pod_with(KWOK_PLACEMENT)
    assert pod["metadata"]["labels"] == {**plain["metadata"]["labels"], "team": "games"}
    assert pod["metadata"]["annotations"] == {"myservice.io/session-id": "Alice/1", "cost-center": "42"}
    for field in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets", "priorityClassName"):
        assert pod["spec"][field] == KWOK_PLACEMENT["spec"][field]
    # nothing else moved
    added = {"nodeSelector", "tolerations", "affinity", "imagePullSecrets", "priorityClassName"}
    assert {k: v for k, v in pod["spec"].items() if k not in added} == plain["spec"]


def test_no_template_is_the_plain_pod():
    assert pod_with({}) == make_pod(resource=RESOURCE, uid="uid-1", session_id="Alice/1",
                                    settings=Settings(namespace="ns"))


def test_template_refines_the_instance_variables_defaults():
    # MYSERVICE_INSTANCE_CPU_*/MEMORY_* and _SERVICE_ACCOUNT/_TERMINATION_GRACE_SECONDS are
    # the defaults; the template's value wins key by key, the rest of the defaults stay.
    template = {"spec": {
        "serviceAccountName": "from-template",
        "terminationGracePeriodSeconds": 30,
        "containers": [{"name": "instance", "imagePullPolicy": "Always",
                        "resources": {"limits": {"memory": "1Gi", "nvidia.com/gpu": "1"}}}],
    }}
    pod = pod_with(template, instance_service_account="from-env", instance_cpu_limit="2",
                   instance_termination_grace_seconds=5)
    container = pod["spec"]["containers"][0]
    assert pod["spec"]["serviceAccountName"] == "from-template"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"}}


def test_template_security_contexts_merge_over_the_restricted_defaults():
    template = {"spec": {"securityContext": {"supplementalGroups": [2000]},
                         "containers": [{"name": "instance", "securityContext": {"readOnlyRootFilesystem": False}}]}}
    pod = pod_with(template)
    assert pod["spec"]["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"}, "supplementalGroups": [2000]}
    assert pod["spec"]["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}}


def test_template_adds_env_mounts_volumes_and_a_sidecar_by_name():
    template = {"spec": {
        "containers": [
            {"name": "instance", "env": [{"name": "LOG_LEVEL", "value": "debug"}],
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            {"name": "log-shipper", "image": "shipper:1"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {"medium": "Memory"}}],
    }}
    pod = pod_with(template)
    instance, sidecar = pod["spec"]["containers"]
    assert [e["name"] for e in instance["env"]] == [*INSTANCE_ENV_NAMES, "LOG_LEVEL"]
    assert instance["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}, {"name": "data", "mountPath": "/data"}]
    assert sidecar == {"name": "log-shipper", "image": "shipper:1"}
    # the same name refines the operator's item (tmp keeps its size limit), a new one is appended
    assert pod["spec"]["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi", "medium": "Memory"}},
                                      {"name": "data", "emptyDir": {}}]


def test_template_never_changes_what_the_operator_owns():
    # apply_template puts owned fields back even when asked to change them (the settings
    # refuse such a template at start: test_settings_refuse_... below)
    hostile = {
        "metadata": {"name": "x", "namespace": "other", "ownerReferences": [], "generateName": "g-",
                     "labels": {"myservice.io/session": "someone-else", "app.kubernetes.io/component": "x"},
                     "annotations": {"myservice.io/session-id": "forged"}},
        "spec": {"restartPolicy": "Always", "activeDeadlineSeconds": 1,
                 "containers": [{"name": "instance", "image": "evil:1", "command": ["sh"], "args": ["-c", "x"],
                                 "ports": [{"containerPort": 1}], "readinessProbe": {"exec": {"command": ["true"]}},
                                 "terminationMessagePath": "/x", "terminationMessagePolicy": "FallbackToLogsOnError",
                                 "env": [{"name": "MYSERVICE_INSTANCE_PORT", "value": "1"},
                                         {"name": "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS", "value": "0"}]}]},
    }
    plain = pod_with({})
    pod = apply_template(plain, hostile)
    assert pod == plain
    lifetime_off = pod_with({}, session_max_lifetime_seconds=0)
    assert "activeDeadlineSeconds" not in apply_template(lifetime_off, hostile)["spec"]


def test_apply_template_changes_neither_argument():
    plain = pod_with({})
    before = json.dumps(plain, sort_keys=True)
    template = json.loads(json.dumps(KWOK_PLACEMENT))
    pod = apply_template(plain, template)
    pod["spec"]["tolerations"].append({"key": "x"})
    pod["spec"]["containers"][0]["env"].append({"name": "Y"})
    assert json.dumps(plain, sort_keys=True) == before
    assert template == KWOK_PLACEMENT


def test_instance_env_names_are_the_owned_ones():
    assert tuple(e["name"] for e in instance_env(Settings(namespace="ns"))) == INSTANCE_ENV_NAMES


def test_template_problems_accepts_the_placement_template():
    assert template_problems(KWOK_PLACEMENT) == []
    assert template_problems({}) == []


@pytest.mark.parametrize("template,problem", [
    ([], "the pod template must be an object (a PodTemplateSpec), got list"),
    ({"kind": "Pod"}, "kind: not a PodTemplateSpec field (only metadata and spec)"),
    ({"metadata": {"name": "x"}}, "metadata.name: set by the operator"),
    ({"metadata": {"ownerReferences": []}}, "metadata.ownerReferences: set by the operator"),
    ({"metadata": {"finalizers": ["x"]}}, "metadata.finalizers: only labels and annotations can be given"),
    ({"metadata": {"labels": {"myservice.io/session": "x"}}}, "metadata.labels.myservice.io/session: set by the operator"),
    ({"metadata": {"labels": {"app.kubernetes.io/managed-by": "me"}}},
     "metadata.labels.app.kubernetes.io/managed-by: set by the operator"),
    ({"metadata": {"labels": {"tier": 1}}}, "metadata.labels.tier: must be a string"),
    ({"metadata": {"annotations": {"myservice.io/session-id": "x"}}},
     "metadata.annotations.myservice.io/session-id: set by the operator"),
    ({"spec": {"restartPolicy": "Always"}}, "spec.restartPolicy: set by the operator"),
    ({"spec": {"activeDeadlineSeconds": 10}}, "spec.activeDeadlineSeconds: set by the operator"),
    ({"spec": {"tolerations": []}, "metadata": []}, "metadata and spec must be objects"),
    ({"spec": {"containers": {"name": "instance"}}}, "spec.containers: must be a list"),
    ({"spec": {"containers": [{"image": "x"}]}}, "spec.containers[0]: needs a name"),
    ({"spec": {"containers": [{"name": "instance", "image": "x"}]}}, "spec.containers[instance].image: set by the operator"),
    ({"spec": {"containers": [{"name": "instance", "ports": []}]}}, "spec.containers[instance].ports: set by the operator"),
    ({"spec": {"containers": [{"name": "instance", "readinessProbe": {}}]}},
     "spec.containers[instance].readinessProbe: set by the operator"),
    ({"spec": {"containers": [{"name": "instance", "command": ["sh"]}]}},
     "spec.containers[instance].command: set by the operator"),
    ({"spec": {"containers": [{"name": "instance", "env": [{"name": "POD_NAME", "value": "x"}]}]}},
     "spec.containers[instance].env[POD_NAME]: set by the operator"),
])
def test_template_problems_name_each_refused_field(template, problem):
    assert template_problems(template) == [problem]


def test_a_sidecar_may_set_what_the_instance_may_not():
    sidecar = {"name": "proxy", "image": "envoy:1", "ports": [{"containerPort": 9901}], "command": ["envoy"],
               "env": [{"name": "POD_NAME", "value": "x"}]}
    assert template_problems({"spec": {"containers": [sidecar]}}) == []


def test_settings_read_the_template_as_json_and_refuse_owned_fields(tmp_path):
    env = {"MYSERVICE_NAMESPACE": "ns", "MYSERVICE_INSTANCE_POD_TEMPLATE": json.dumps(KWOK_PLACEMENT)}
    assert Settings.from_env(env, tmp_path / "absent").instance_pod_template == KWOK_PLACEMENT
    assert Settings.from_env({"MYSERVICE_NAMESPACE": "ns", "MYSERVICE_INSTANCE_POD_TEMPLATE": ""},
                             tmp_path / "absent").instance_pod_template == {}
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**env, "MYSERVICE_INSTANCE_POD_TEMPLATE": json.dumps(
            {"spec": {"restartPolicy": "Always", "containers": [{"name": "instance", "image": "x"}]}})},
            tmp_path / "absent")
    assert str(refused.value) == ("MYSERVICE_INSTANCE_POD_TEMPLATE: spec.restartPolicy: set by the operator; "
                                  "spec.containers[instance].image: set by the operator")
    with pytest.raises(SettingsError, match=r"^MYSERVICE_INSTANCE_POD_TEMPLATE is not JSON: "):
        Settings.from_env({**env, "MYSERVICE_INSTANCE_POD_TEMPLATE": "{nodeSelector: x}"}, tmp_path / "absent")
