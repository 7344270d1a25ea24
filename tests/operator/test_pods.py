"""make_pod: the exact manifest of a session's instance pod."""
from myservice_operator.pods import instance_labels, instance_selector, make_pod
from myservice_operator.settings import Settings

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
                "readinessProbe": {"grpc": {"port": 50051}, "periodSeconds": 2, "timeoutSeconds": 3,
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
