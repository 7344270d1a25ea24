"""Settings.from_env: defaults, overrides, the namespace file fallback, rejected values."""
import pytest

from myservice_operator.settings import Settings, SettingsError


def test_defaults(tmp_path):
    missing = tmp_path / "absent"
    assert Settings.from_env({"MYSERVICE_NAMESPACE": "ns1"}, missing) == Settings(
        namespace="ns1",
        instance_image="myservice-service:dev",
        instance_image_pull_policy="IfNotPresent",
        instance_port=50051,
        max_sessions=10,
        ready_timeout_seconds=120,
        finished_ttl_seconds=300,
        instance_cpu_request="100m",
        instance_cpu_limit="500m",
        instance_memory_request="128Mi",
        instance_memory_limit="256Mi",
        instance_service_account="",
        instance_termination_grace_seconds=5,
        liveness_port=8080,
        metrics_port=0,
        metrics_host="127.0.0.1",
        watch_timeout_seconds=300,
        session_idle_timeout_seconds=900,
        session_max_lifetime_seconds=86400,
    )


def test_every_key_overrides(tmp_path):
    env = {
        "MYSERVICE_NAMESPACE": "prod",
        "MYSERVICE_INSTANCE_IMAGE": "reg/svc:1.2",
        "MYSERVICE_INSTANCE_IMAGE_PULL_POLICY": "Never",
        "MYSERVICE_INSTANCE_PORT": "6000",
        "MYSERVICE_MAX_SESSIONS": "2",
        "MYSERVICE_SESSION_READY_TIMEOUT_SECONDS": "30",
        "MYSERVICE_FINISHED_TTL_SECONDS": "0",
        "MYSERVICE_INSTANCE_CPU_REQUEST": "50m",
        "MYSERVICE_INSTANCE_CPU_LIMIT": "1",
        "MYSERVICE_INSTANCE_MEMORY_REQUEST": "64Mi",
        "MYSERVICE_INSTANCE_MEMORY_LIMIT": "1Gi",
        "MYSERVICE_INSTANCE_SERVICE_ACCOUNT": "instances",
        "MYSERVICE_INSTANCE_TERMINATION_GRACE_SECONDS": "1",
        "MYSERVICE_OPERATOR_LIVENESS_PORT": "9090",
        "MYSERVICE_OPERATOR_METRICS_PORT": "9091",
        "MYSERVICE_OPERATOR_METRICS_HOST": "0.0.0.0",
        "MYSERVICE_WATCH_TIMEOUT_SECONDS": "60",
        "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS": "0",
        "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS": "7200",
        "MYSERVICE_OPERATOR_LEASE_NAME": "lease",
        "MYSERVICE_OPERATOR_IDENTITY": "pod-1",
        "MYSERVICE_WARM_POOL_SIZE": "3",
        "MYSERVICE_WARM_POOL_MAX_STARTING": "4",
        "MYSERVICE_INSTANCE_POD_TEMPLATE": '{"spec": {"priorityClassName": "sessions"}}',
        "MYSERVICE_OPERATOR_DEBUG": "1",
    }
    assert Settings.from_env(env, tmp_path / "absent") == Settings(
        namespace="prod", instance_image="reg/svc:1.2", instance_image_pull_policy="Never",
        instance_port=6000, max_sessions=2, ready_timeout_seconds=30, finished_ttl_seconds=0,
        instance_cpu_request="50m", instance_cpu_limit="1",
        instance_memory_request="64Mi", instance_memory_limit="1Gi",
        instance_service_account="instances", instance_termination_grace_seconds=1,
        liveness_port=9090, metrics_port=9091, metrics_host="0.0.0.0", watch_timeout_seconds=60,
        session_idle_timeout_seconds=0, session_max_lifetime_seconds=7200, lease_name="lease",
        identity="pod-1", warm_pool_size=3, warm_pool_max_starting=4,
        instance_pod_template={"spec": {"priorityClassName": "sessions"}}, debug=True)


def test_namespace_from_the_service_account_file(tmp_path):
    ns_file = tmp_path / "namespace"
    ns_file.write_text("from-file\n")
    assert Settings.from_env({}, ns_file).namespace == "from-file"
    assert Settings.from_env({"MYSERVICE_NAMESPACE": "  "}, ns_file).namespace == "from-file"


def test_no_namespace_anywhere_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="MYSERVICE_NAMESPACE is not set"):
        Settings.from_env({}, tmp_path / "absent")


@pytest.mark.parametrize("key,value,message", [
    ("MYSERVICE_MAX_SESSIONS", "ten", "MYSERVICE_MAX_SESSIONS must be an integer >= 0, got 'ten'"),
    ("MYSERVICE_MAX_SESSIONS", "-1", "MYSERVICE_MAX_SESSIONS must be an integer >= 0, got '-1'"),
    ("MYSERVICE_INSTANCE_PORT", "70000", "MYSERVICE_INSTANCE_PORT must be an integer 1..65535, got '70000'"),
    ("MYSERVICE_SESSION_READY_TIMEOUT_SECONDS", "0",
     "MYSERVICE_SESSION_READY_TIMEOUT_SECONDS must be a whole number of seconds > 0, got '0'"),
    ("MYSERVICE_READY_TIMEOUT_SECONDS", "0",  # its old name, still read
     "MYSERVICE_READY_TIMEOUT_SECONDS must be a whole number of seconds > 0, got '0'"),
    ("MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS", "-1",
     "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS must be a whole number of seconds >= 0 (0 = off), got '-1'"),
    ("MYSERVICE_SESSION_MAX_LIFETIME_SECONDS", "1.5",
     "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS must be a whole number of seconds >= 0 (0 = off), got '1.5'"),
    ("MYSERVICE_OPERATOR_METRICS_PORT", "65536",
     "MYSERVICE_OPERATOR_METRICS_PORT must be an integer 0..65535 (0 = off), got '65536'"),
    ("MYSERVICE_OPERATOR_METRICS_PORT", "-1",
     "MYSERVICE_OPERATOR_METRICS_PORT must be an integer 0..65535 (0 = off), got '-1'"),
    ("MYSERVICE_INSTANCE_IMAGE_PULL_POLICY", "Sometimes",
     "MYSERVICE_INSTANCE_IMAGE_PULL_POLICY must be Always, IfNotPresent or Never, got 'Sometimes'"),
])
def test_rejected_values(tmp_path, key, value, message):
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"MYSERVICE_NAMESPACE": "ns", key: value}, tmp_path / "absent")
    assert str(error.value) == message


def test_settings_are_frozen():
    settings = Settings(namespace="ns")
    with pytest.raises(AttributeError):
        settings.max_sessions = 3


def test_the_ready_timeout_old_name_is_read_with_a_warning(tmp_path, caplog):
    env = {"MYSERVICE_NAMESPACE": "ns", "MYSERVICE_READY_TIMEOUT_SECONDS": "30"}
    assert Settings.from_env(env, tmp_path / "absent").ready_timeout_seconds == 30
    assert "MYSERVICE_READY_TIMEOUT_SECONDS is deprecated: read as MYSERVICE_SESSION_READY_TIMEOUT_SECONDS" in caplog.text
    env["MYSERVICE_SESSION_READY_TIMEOUT_SECONDS"] = "40"
    assert Settings.from_env(env, tmp_path / "absent").ready_timeout_seconds == 40


def test_debug_is_on_for_1_only(tmp_path):
    def debug(value: str) -> bool:
        return Settings.from_env({"MYSERVICE_NAMESPACE": "ns", "MYSERVICE_OPERATOR_DEBUG": value}, tmp_path / "x").debug
    assert (debug("1"), debug("0"), debug("true"), debug("")) == (True, False, False, False)


def test_docs_table_documents_every_setting_and_its_default():
    from tests import settingsdocs

    rows = settingsdocs.table_under(settingsdocs.ROOT / "docs" / "kubernetes.md", "### Operator environment")
    assert settingsdocs.problems(Settings, rows) == []
