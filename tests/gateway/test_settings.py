"""Gateway settings from the environment: defaults and clear errors."""
import pytest

from myservice_gateway.settings import SettingsError, from_env


def test_local_defaults():
    s = from_env({})
    assert (s.port, s.backend, s.max_instances, s.dev_user, s.jwt_key_generated, len(s.jwt_key)) == (
        10000, "local", 16, True, True, 32)


def test_kubernetes_needs_users_and_no_dev_user_by_default(tmp_path):
    with pytest.raises(SettingsError, match="no users"):
        from_env({"MYSERVICE_BACKEND": "kubernetes"})
    key = tmp_path / "key"
    key.write_bytes(b"z" * 40 + b"\n")
    s = from_env({"MYSERVICE_BACKEND": "kubernetes", "MYSERVICE_USERS_FILE": "/x.json",
                  "MYSERVICE_JWT_KEY_FILE": str(key), "MYSERVICE_NAMESPACE": "ns1"})
    assert (s.dev_user, s.jwt_key, s.jwt_key_generated, s.namespace) == (False, b"z" * 40, False, "ns1")


@pytest.mark.parametrize("env,message", [
    ({"MYSERVICE_PORT": "abc"}, "MYSERVICE_PORT must be an integer"),
    ({"MYSERVICE_MAX_INSTANCES": "-1"}, "MYSERVICE_MAX_INSTANCES must be >= 0"),
    ({"MYSERVICE_BACKEND": "docker"}, "MYSERVICE_BACKEND must be 'local' or 'kubernetes'"),
    ({"MYSERVICE_JWT_KEY": "short"}, "at least 32 bytes"),
    ({"MYSERVICE_JWT_KEY_FILE": "/nonexistent/key"}, "cannot read /nonexistent/key"),
    ({"MYSERVICE_DEV_USER": "maybe"}, "MYSERVICE_DEV_USER must be true or false"),
])
def test_errors_name_the_key(env, message):
    with pytest.raises(SettingsError, match=message):
        from_env(env)


def test_flags_override_env():
    assert from_env({"MYSERVICE_PORT": "1"}, port=2, max_instances=None).port == 2
