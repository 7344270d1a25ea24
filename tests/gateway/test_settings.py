"""Gateway settings from the environment: defaults and clear errors."""
import pytest

from myservice_gateway.settings import SettingsError, from_env


def test_local_defaults():
    s = from_env({}, dev_user=True)  # what `myservice up` passes without a users file
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
    ({"MYSERVICE_PORT": "70000"}, r"^MYSERVICE_PORT must be an integer 0..65535, got '70000'$"),
    ({"MYSERVICE_MAX_INSTANCES": "-1"}, r"^MYSERVICE_MAX_INSTANCES must be an integer >= 0, got '-1'$"),
    ({"MYSERVICE_BACKEND": "docker"}, r"^MYSERVICE_BACKEND must be local or kubernetes, got 'docker'$"),
    ({"MYSERVICE_JWT_KEY": "short"}, "at least 32 bytes"),
    ({"MYSERVICE_JWT_KEY_FILE": "/nonexistent/key"}, "cannot read /nonexistent/key"),
    ({"MYSERVICE_DEV_USER": "maybe"}, "MYSERVICE_DEV_USER must be true or false"),
])
def test_errors_name_the_key(env, message):
    with pytest.raises(SettingsError, match=message):
        from_env(env)


def test_flags_override_env():
    assert from_env({"MYSERVICE_PORT": "1"}, port=2, max_instances=None, dev_user=True).port == 2


def test_no_default_user_and_dev_user_env_refused_without_up():
    with pytest.raises(SettingsError, match="no users: set MYSERVICE_USERS_FILE"):
        from_env({})  # `myservice gateway`, local backend: no user of its own
    with pytest.raises(SettingsError, match="MYSERVICE_DEV_USER: the development user exists only in `myservice up`"):
        from_env({"MYSERVICE_DEV_USER": "true", "MYSERVICE_USERS_FILE": "/u.json"})
    s = from_env({"MYSERVICE_DEV_USER": "false", "MYSERVICE_USERS_FILE": "/u.json"})  # what the chart sets
    assert (s.dev_user, s.users_file) == (False, "/u.json")


def test_login_limit_defaults_and_env():
    s = from_env({}, dev_user=True)
    assert (s.login_hash_nice, s.login_queue, s.login_user_failure_burst,
            s.login_user_failures_per_minute, s.login_peer_failure_burst, s.login_peer_failures_per_minute) == (
        10, 1000, 10, 6.0, 30, 60.0)
    assert 1 <= s.login_hash_workers <= 4
    assert (s.login_queue_max_wait, s.trusted_proxies) == (10.0, ())
    assert from_env({"MYSERVICE_LOGIN_QUEUE_MAX_WAIT_SECONDS": "30"}, dev_user=True).login_queue_max_wait == 30.0
    s = from_env({"MYSERVICE_LOGIN_HASH_WORKERS": "3", "MYSERVICE_LOGIN_QUEUE": "0",
                  "MYSERVICE_TRUSTED_PROXIES": "10.0.0.0/8 192.0.2.7,2001:db8::/32", "MYSERVICE_LOGIN_HASH_NICE": "0",
                  "MYSERVICE_LOGIN_USER_FAILURE_BURST": "0", "MYSERVICE_LOGIN_USER_FAILURES_PER_MINUTE": "0.5",
                  "MYSERVICE_LOGIN_PEER_FAILURE_BURST": "7", "MYSERVICE_LOGIN_PEER_FAILURES_PER_MINUTE": "120"},
                 dev_user=True)
    assert (s.login_hash_workers, s.login_queue, s.login_hash_nice,
            s.login_user_failure_burst, s.login_user_failures_per_minute, s.login_peer_failure_burst,
            s.login_peer_failures_per_minute) == (3, 0, 0, 0, 0.5, 7, 120.0)
    assert [str(n) for n in s.trusted_proxies] == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]


@pytest.mark.parametrize("env,message", [
    ({"MYSERVICE_LOGIN_HASH_WORKERS": "0"}, "MYSERVICE_LOGIN_HASH_WORKERS must be an integer >= 1, got '0'"),
    ({"MYSERVICE_LOGIN_QUEUE": "-1"}, "MYSERVICE_LOGIN_QUEUE must be an integer >= 0"),
    ({"MYSERVICE_LOGIN_HASH_NICE": "20"}, "MYSERVICE_LOGIN_HASH_NICE must be an integer 0..19, got '20'"),
    ({"MYSERVICE_LOGIN_USER_FAILURES_PER_MINUTE": "0"},
     "MYSERVICE_LOGIN_USER_FAILURES_PER_MINUTE must be a number > 0, got '0'"),
    ({"MYSERVICE_LOGIN_QUEUE_MAX_WAIT_SECONDS": "nan"},
     "MYSERVICE_LOGIN_QUEUE_MAX_WAIT_SECONDS must be a number of seconds > 0, got 'nan'"),
    ({"MYSERVICE_LOGIN_PEER_FAILURE_BURST": "x"}, "MYSERVICE_LOGIN_PEER_FAILURE_BURST must be an integer"),
    ({"MYSERVICE_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"},
     "MYSERVICE_TRUSTED_PROXIES must be a comma-separated list of CIDRs .*, got 'proxy.local'"),
])
def test_login_limit_errors_name_the_key(env, message):
    with pytest.raises(SettingsError, match=message):
        from_env(env, dev_user=True)


def test_session_limits_defaults_env_and_off():
    s = from_env({}, dev_user=True)
    assert (s.max_sessions_per_user, s.session_idle_timeout, s.session_max_lifetime) == (10, 900, 86400)
    s = from_env({"MYSERVICE_MAX_SESSIONS_PER_USER": "0", "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS": "0",
                  "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS": "2.5"}, dev_user=True)
    assert (s.max_sessions_per_user, s.session_idle_timeout, s.session_max_lifetime) == (0, 0, 2.5)


@pytest.mark.parametrize("env,message", [
    ({"MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS": "-1"},
     r"^MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS must be a number of seconds >= 0 \(0 = off\), got '-1'$"),
    ({"MYSERVICE_SESSION_MAX_LIFETIME_SECONDS": "soon"}, "MYSERVICE_SESSION_MAX_LIFETIME_SECONDS must be a number"),
    ({"MYSERVICE_MAX_SESSIONS_PER_USER": "-2"}, r"MYSERVICE_MAX_SESSIONS_PER_USER must be an integer >= 0 \(0 = no limit\)"),
    ({"MYSERVICE_ENDED_SESSIONS_REMEMBERED": "0"}, "MYSERVICE_ENDED_SESSIONS_REMEMBERED must be an integer >= 1, got '0'"),
    ({"MYSERVICE_SESSION_READY_TIMEOUT_SECONDS": "0"}, "MYSERVICE_SESSION_READY_TIMEOUT_SECONDS must be a number of seconds > 0"),
])
def test_session_limit_errors_name_the_key(env, message):
    with pytest.raises(SettingsError, match=message):
        from_env(env, dev_user=True)


def test_negative_session_limit_flags_are_refused():
    with pytest.raises(SettingsError, match=r"^--idle-timeout must be a number of seconds >= 0 \(0 = off\), got -1$"):
        from_env({}, dev_user=True, session_idle_timeout=-1.0)
    with pytest.raises(SettingsError, match=r"^--port must be an integer 0..65535, got 'x'$"):
        from_env({}, dev_user=True, port="x")  # a flag's text


@pytest.mark.parametrize("files,quota", [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
    ({}, None),
    ({"cpu.max": "garbage"}, None),
])
def test_cgroup_cpu_quota_v2_and_v1(tmp_path, files, quota):
    from myservice_gateway.settings import cgroup_cpu_quota

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(str(tmp_path)) == quota


def test_default_hash_workers_follow_the_cpu_limit(tmp_path, monkeypatch):
    from myservice_gateway.settings import default_login_hash_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert default_login_hash_workers(str(tmp_path)) == 4  # no limit: at most 4
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # 2.5 CPUs: 3 cores' worth, one for the loop
    assert default_login_hash_workers(str(tmp_path)) == 2
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert default_login_hash_workers(str(tmp_path)) == 1


# --- declared once: the README, the flags and the defaults follow the declarations ----

def test_readme_table_documents_every_setting_its_flag_and_default():
    from myservice_gateway.settings import GatewaySettings
    from tests import settingsdocs

    rows = settingsdocs.table_under(settingsdocs.ROOT / "README.md", "## Configuration (gateway)")
    assert settingsdocs.problems(GatewaySettings, rows) == []


def test_ended_sessions_remembered():
    assert from_env({}, dev_user=True).ended_sessions_remembered == 100_000
    assert from_env({"MYSERVICE_ENDED_SESSIONS_REMEMBERED": "5"}, dev_user=True).ended_sessions_remembered == 5


def test_ready_timeout_new_name_then_old_name_with_a_warning(caplog):
    assert from_env({}, dev_user=True).session_ready_timeout == 120.0
    assert from_env({"MYSERVICE_SESSION_READY_TIMEOUT_SECONDS": "0.5"}, dev_user=True).session_ready_timeout == 0.5
    assert from_env({"MYSERVICE_SESSION_READY_TIMEOUT": "30"}, dev_user=True).session_ready_timeout == 30.0
    assert "MYSERVICE_SESSION_READY_TIMEOUT is deprecated: read as MYSERVICE_SESSION_READY_TIMEOUT_SECONDS" in caplog.text


def test_defaults_are_the_dataclass_defaults():
    from myservice_gateway.settings import GatewaySettings

    parsed = from_env({}, dev_user=True)
    made = GatewaySettings()
    for field in ("port", "max_instances", "session_idle_timeout", "session_max_lifetime", "session_ready_timeout",
                  "login_queue_max_wait", "metrics_host", "namespace"):
        assert getattr(parsed, field) == getattr(made, field), field
    assert isinstance(parsed.session_idle_timeout, float)


def test_help_shows_each_flags_variable_and_default(capsys):
    from myservice_gateway.cli import build_parser

    for command in ("up", "gateway"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for flag, env, default in [("--port", "MYSERVICE_PORT", "10000"),
                                   ("--idle-timeout", "MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS", "900; 0 = off"),
                                   ("--max-sessions-per-user", "MYSERVICE_MAX_SESSIONS_PER_USER", "10; 0 = no limit"),
                                   ("--warm-pool", "MYSERVICE_WARM_POOL_SIZE", "0 = off")]:
            assert flag in text and f"(env {env}, default {default})" in text
    assert "(env MYSERVICE_HOST, default 0.0.0.0)" in text  # gateway; up: 127.0.0.1


def test_forwarded_services_default_env_and_repeated_flag():
    from myservice_api import settings as declarations
    from myservice_gateway import cli, settings

    assert from_env({}, dev_user=True).services == ("myservice.v1.MyService",)
    assert from_env({"MYSERVICE_SERVICES": " a.v1.A, b.B ,a.v1.A,"}, dev_user=True).services == ("a.v1.A", "b.B")
    args = cli.build_parser().parse_args(["up", "--service", "a.v1.A", "--service", "c.C,d.D"])
    flags = declarations.flag_values(args, settings.GatewaySettings)
    assert from_env({"MYSERVICE_SERVICES": "x.X"}, dev_user=True, **flags).services == ("a.v1.A", "c.C", "d.D")
    assert from_env({"MYSERVICE_SERVICES": " "}, dev_user=True).services == ("myservice.v1.MyService",)  # blank: unset
    for bad in (" , ", "a/b", "a..b", "1a.B"):
        with pytest.raises(SettingsError, match=r"MYSERVICE_SERVICES \(--service\) must be full gRPC service names"):
            from_env({"MYSERVICE_SERVICES": bad}, dev_user=True)
