"""front/config.py (the HAProxy configuration, a pure function), front/mapkeeper.py
(the map's wanted content and its commands, pure) and front/front.py's choice of
front: by exact text, no HAProxy needed."""
import re
import shutil
import subprocess

import pytest

from myservice import errors
from myservice_gateway.front import config, front, mapkeeper, runtime

KEY = b"k" * 31 + b"\xff"
CONFIG = config.FrontConfig(
    bind="127.0.0.1:10000", gateway_socket="/run/f/gateway.sock", runtime_socket="/run/f/runtime.sock",
    map_file="/run/f/sessions.map", jwt_key=KEY, issuer="myservice-gateway", audience="myservice",
    methods=("/myservice.v1.MyService/MyServiceEcho", "/myservice.v1.MyService/MyServiceChat"))


def lines():
    return config.render(CONFIG).splitlines()


def test_refusals_are_made_from_the_error_constructors():
    assert [line for line in lines() if "http-request return" in line] == [
        f"    http-request return status 200 hdr grpc-status 16 hdr grpc-message \"{error().message}\" "
        f"if fwd {{ var(txn.err) -m int {number} }}"
        for number, error in enumerate((errors.repeated_credentials, errors.missing_token,
                                        errors.missing_session_id, errors.invalid_token), 1)]
    # Only once the request has ended (HAProxy 2.6's RST_STREAM(CANCEL) must not race the status).
    assert "    http-request wait-for-body time 1s if fwd failed" in lines()
    assert "    acl failed var(txn.err) -m found" in lines()
    assert "    http-request set-var(txn.err) int(2) if fwd !failed !{ req.fhdr(authorization) -m len 1: }" in lines()
    # A stale entry (or Python away): HAProxy's own 502/503/504 become the contract's UNAVAILABLE.
    assert ('    http-error status 503 hdr grpc-status 14 hdr grpc-message "backend service unavailable"'
            in lines())
    assert lines().count("    http-after-response set-status 200 if { status 502:504 }") == 2
    # `return` drops a content-type without a body; clients other than Python's need it.
    assert ("    http-after-response set-header content-type application/grpc if { res.hdr(grpc-status) -m found } "
            "!{ res.hdr(content-type) -m found }") in lines()


def test_an_instances_own_unavailable_or_cancelled_is_the_contracts_unavailable():
    # As the Python proxy maps them: e.g. grpc's "Cancelling all calls" of an instance's stop.
    unavailable = errors.backend_unavailable()
    backend = "\n".join(lines()).split(f"backend {config.INSTANCES_BACKEND}\n")[1].split("\nbackend ")[0]
    assert backend.splitlines()[-3:] == [
        "    acl instance_gone res.hdr(grpc-status) -m int 14 1",
        f'    http-response set-header grpc-message "{unavailable.message}" if instance_gone',
        f"    http-response set-header grpc-status {unavailable.code.value[0]} if instance_gone"]


def test_connection_and_stream_limits_are_said():
    assert f"    maxconn {config.MAX_CONNECTIONS}" in lines()
    # Never more than the open-file limit carries (HAProxy would refuse to start).
    assert [config.connection_limit(n) for n in (1024, 20000, 1 << 20)] == [412, 9900, config.MAX_CONNECTIONS]
    assert f"    tune.h2.fe.max-concurrent-streams {config.MAX_STREAMS_PER_CONNECTION}" in lines()
    # Long calls are the instances' business: an hour-long quiet Chat is not cut here.
    assert {"    timeout client 25h", "    timeout server 25h", "    timeout http-request 10s"} <= set(lines())


def test_a_refused_call_never_reaches_the_map():
    assert ("    http-request set-var(txn.addr) var(txn.key),map_str(/run/f/sessions.map) "
            "if fwd { var(txn.key) -m found }") in lines()
    assert ("    http-request set-var-fmt(txn.key) %[var(txn.sub)]/%[var(txn.sid)] "
            f"if fwd !failed {{ var(txn.sub) -m reg '{mapkeeper.KEY_USER_PATTERN}' }}") in lines()


def test_the_order_of_checks_is_auth_pys():
    order = [i for i, line in enumerate(lines()) for text in (
        "req.fhdr_cnt(authorization) gt 1", "!{ req.fhdr(authorization) -m len 1: }",
        "!{ req.fhdr(session-id) -m len 1: }", "jwt_verify", "http-request return", "map_str(") if text in line]
    assert order == sorted(order) and len(order) == 9


def test_the_key_is_in_the_file_as_hex_only_and_verified_as_hs256():
    text = config.render(CONFIG)
    assert f"    set-var proc.jwt_key bin({KEY.hex()})" in lines()
    assert KEY.decode("latin-1") not in text
    assert 'jwt_verify("HS256",proc.jwt_key) -m int 1' in text
    assert "jwt_header_query('$.alg') -m str HS256" in text


def test_only_the_forwarded_methods_are_checked_and_routed():
    assert ("    acl fwd path -m str /myservice.v1.MyService/MyServiceEcho /myservice.v1.MyService/MyServiceChat"
            in lines())
    assert "    default_backend gateway" in lines()
    assert "    server gateway unix@/run/f/gateway.sock proto h2 check inter 1s fall 2 rise 1" in lines()


def test_forwarded_headers_are_the_fronts():
    assert [line for line in lines() if "x-forwarded-for" in line] == [
        "    http-request set-header x-forwarded-for %[src]"]  # a client's own value is replaced
    assert not [line for line in lines() if "trusted_peer" in line or "accept-proxy" in line]
    assert "    http-request del-header authorization if { var(txn.addr) -m found }" in lines()
    assert "    http-request set-header session-id %[var(txn.sid)] if { var(txn.addr) -m found }" in lines()
    assert "    http-request set-header myservice-user %[var(txn.sub)] if { var(txn.addr) -m found }" in lines()


def test_issuer_and_audience_are_quoted():
    text = config.render(CONFIG.__class__(**{**CONFIG.__dict__, "issuer": 'a "b" $c\\', "audience": "x y"}))
    assert r'var(txn.iss) -m str "a \"b\" \$c\\"' in text
    assert 'var(txn.aud) -m str "x y"' in text


def test_grpc_message_is_percent_encoded_and_log_format_escaped():
    assert config.grpc_message("50% é\n") == "50%25 %C3%A9%0A"
    assert config.log_format_quoted("50%25") == '"50%%25"'


def test_map_key_holds_only_unambiguous_users_and_visible_session_ids():
    assert mapkeeper.map_key("alice", "s/1;x") == "alice/s/1;x"
    for user, sid in (("a/b", "c"), ("a%b", "c"), ("al ice", "c"), ("é", "c"), ("", "c"), ("a", ""), ("a", "s 1")):
        assert mapkeeper.map_key(user, sid) is None


def test_only_tcp_addresses_get_an_entry():
    assert mapkeeper.tcp_address("127.0.0.1:4000") and mapkeeper.tcp_address("10.1.2.3:50051")
    assert mapkeeper.tcp_address("fd00::1:50051")
    assert not mapkeeper.tcp_address("unix:/tmp/x/myservice-local-1")
    assert not mapkeeper.tcp_address("127.0.0.1")


def test_keeper_diffs_ready_and_ended():
    keeper = mapkeeper.MapKeeper()
    assert keeper.ready("k1", "alice", "s1", "unix:/tmp/s") is None  # a Unix socket: through Python
    assert keeper.ready("k1", "alice", "s1", "127.0.0.1:4000") == mapkeeper.Set("alice/s1", "127.0.0.1:4000", False)
    assert keeper.ready("k1", "alice", "s1", "127.0.0.1:4000") is None  # already so: nothing to send
    assert keeper.ready("k1", "alice", "s1", "127.0.0.1:4001") == mapkeeper.Set("alice/s1", "127.0.0.1:4001", True)
    assert keeper.entries == {"alice/s1": "127.0.0.1:4001"}
    assert keeper.ended("k1") == mapkeeper.Delete("alice/s1")
    assert keeper.ended("k1") is None and keeper.ended("never") is None
    assert keeper.entries == {}


def test_commands_escape_the_runtime_apis_separators():
    assert mapkeeper.command(mapkeeper.Set("a/s;1\\", "127.0.0.1:1", False), "/m") == (
        "add map /m a/s\\;1\\\\ 127.0.0.1:1")
    assert mapkeeper.command(mapkeeper.Set("a/s", "127.0.0.1:2", True), "/m") == "set map /m a/s 127.0.0.1:2"
    assert mapkeeper.command(mapkeeper.Delete("a/s"), "/m") == "del map /m a/s"
    assert mapkeeper.rebuild_commands({"b/2": "h:2", "a/1": "h:1"}, "/m", "7") == [
        "add map @7 /m a/1 h:1", "add map @7 /m b/2 h:2"]


def test_runtime_batches_stay_under_the_limit():
    assert runtime.batches(["a" * 5, "b" * 5, "c" * 5], limit=11) == [["a" * 5, "b" * 5], ["c" * 5]]
    assert runtime.batches(["x" * 20], limit=11) == [["x" * 20]]
    assert runtime.batches([]) == []


HAPROXY_30 = "/usr/sbin/haproxy, HAProxy 3.0"


@pytest.mark.parametrize("wanted,backend,found,version,key,expected", [
    # unset: HAProxy when a 3.0+ binary is found, on both backends (the chart always says which)
    (None, "local", "/usr/sbin/haproxy", (3, 0), b"k", ("haproxy", HAPROXY_30 + ": the default when found")),
    (None, "kubernetes", "/usr/sbin/haproxy", (3, 2), b"k",
     ("haproxy", "/usr/sbin/haproxy, HAProxy 3.2: the default when found")),
    ("haproxy", "local", "/usr/sbin/haproxy", (3, 0), b"k", ("haproxy", HAPROXY_30)),
    ("haproxy", "kubernetes", "/usr/sbin/haproxy", (3, 0), b"k", ("haproxy", HAPROXY_30)),
    ("none", "local", "/usr/sbin/haproxy", (3, 0), b"k", ("none", "MYSERVICE_FRONT=none")),
    # unset and none to be had: the Python gateway alone, the log line says why
    (None, "local", None, None, b"k", ("none", "the haproxy binary is not found on PATH "
                                              f"({front.INSTALL_HINT})")),
    (None, "local", "/usr/sbin/haproxy", (2, 6), b"k", ("none", "/usr/sbin/haproxy is HAProxy 2.6; the front "
                                                               f"needs 3.0 or newer ({front.INSTALL_HINT})")),
])
def test_choice_of_front(wanted, backend, found, version, key, expected):
    choice = front.choose(wanted, backend=backend, which=lambda name: found, version=lambda binary: version, key=key)
    assert (choice.front, choice.why) == expected


@pytest.mark.parametrize("found,version,key,problem", [
    (None, None, b"k", f"the haproxy binary is not found on PATH ({front.INSTALL_HINT})"),
    ("/usr/sbin/haproxy", (2, 6), b"k",
     f"/usr/sbin/haproxy is HAProxy 2.6; the front needs 3.0 or newer ({front.INSTALL_HINT})"),
    ("/usr/sbin/haproxy", None, b"k", "/usr/sbin/haproxy -v does not tell its version"),
    ("/usr/sbin/haproxy", (3, 0), b"k\0", "the JWT key holds a NUL byte, which HAProxy's jwt_verify cannot take"),
])
def test_haproxy_asked_for_but_impossible_is_refused(found, version, key, problem):
    with pytest.raises(ValueError, match=f"^MYSERVICE_FRONT=haproxy: {re.escape(problem)}$"):
        front.choose("haproxy", backend="local", which=lambda name: found, version=lambda binary: version, key=key)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (make test installs it)")
def test_the_version_is_read_from_the_binary():
    assert front.haproxy_version(shutil.which("haproxy")) >= (2, 6)
    assert front.haproxy_version("/nonexistent/haproxy") is None


def test_forwarded_methods_are_the_services_but_login():
    assert front.forwarded_methods(("myservice.v1.MyService", "no.such.Service")) == (
        "/myservice.v1.MyService/MyServiceEcho", "/myservice.v1.MyService/MyServiceEchoStream",
        "/myservice.v1.MyService/MyServiceChat", "/myservice.v1.MyService/MyServiceShutdown")


def test_a_removed_users_entries_all_go():
    keeper = mapkeeper.MapKeeper()
    keeper.ready("a1", "alice", "s1", "127.0.0.1:1")
    keeper.ready("a2", "alice", "s/2", "127.0.0.1:2")
    keeper.ready("b1", "alicia", "s1", "127.0.0.1:3")
    assert sorted(c.key for c in keeper.user_removed("alice")) == ["alice/s/2", "alice/s1"]
    assert keeper.entries == {"alicia/s1": "127.0.0.1:3"}
    assert keeper.user_removed("alice") == []


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (make test installs it)")
@pytest.mark.parametrize("extra", [{}, {"trusted_proxies": ("10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"),
                                       "proxy_protocol": True, "metrics_bind": "127.0.0.1:65001"}])
def test_haproxy_accepts_the_configuration(tmp_path, extra):
    methods = front.forwarded_methods(("myservice.v1.MyService",))
    rendered = config.render(config.FrontConfig(
        bind="127.0.0.1:65000", gateway_socket=str(tmp_path / "g.sock"), runtime_socket=str(tmp_path / "r.sock"),
        map_file=str(tmp_path / "m.map"), jwt_key=KEY, issuer='i "$x', audience="a b", methods=methods, **extra))
    (tmp_path / "m.map").write_text("")
    (tmp_path / "haproxy.cfg").write_text(rendered)
    checked = subprocess.run([shutil.which("haproxy"), "-c", "-f", str(tmp_path / "haproxy.cfg")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "WARNING" not in checked.stdout + checked.stderr


def test_a_trusted_proxys_x_forwarded_for_is_kept_and_the_peer_appended():
    trusted = config.FrontConfig(**{**CONFIG.__dict__, "trusted_proxies": ("10.0.0.0/8", "2001:db8::/32")})
    assert config.forwarded_for(trusted) == [
        "    acl trusted_peer src 10.0.0.0/8 2001:db8::/32",
        "    http-request set-var(txn.xff) req.fhdr(x-forwarded-for) if trusted_peer",
        '    http-request set-header x-forwarded-for "%[var(txn.xff)], %[src]" if { var(txn.xff) -m found }',
        "    http-request set-header x-forwarded-for %[src] if !{ var(txn.xff) -m found }"]
    rendered = config.render(trusted).splitlines()
    assert rendered[rendered.index("    acl trusted_peer src 10.0.0.0/8 2001:db8::/32"):][:4] == (
        config.forwarded_for(trusted))


def test_the_proxy_protocol_is_accepted_on_the_public_bind_only():
    proxied = config.FrontConfig(**{**CONFIG.__dict__, "proxy_protocol": True})
    assert config.bind_line(proxied) == "    bind 127.0.0.1:10000 accept-proxy proto h2"
    assert [line for line in config.render(proxied).splitlines() if "accept-proxy" in line] == [
        "    bind 127.0.0.1:10000 accept-proxy proto h2"]


def test_haproxys_exporter_has_a_bind_of_its_own():
    assert "frontend metrics" not in config.render(CONFIG)
    rendered = config.render(config.FrontConfig(**{**CONFIG.__dict__, "metrics_bind": "fd@7"})).splitlines()
    start = rendered.index("frontend metrics")
    assert rendered[start:start + 7] == [
        "frontend metrics",
        "    bind fd@7",
        "    timeout client 30s",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        # /ready: HAProxy answers, and the Python gateway's socket passes its check
        "    http-request return status 200 content-type text/plain string ready if { path /ready } "
        "{ nbsrv(gateway) gt 0 }",
        '    http-request return status 503 content-type text/plain string "the gateway is not answering" '
        "if { path /ready }",
        "    http-request return status 404"]
    assert "    server gateway unix@/run/f/gateway.sock proto h2 check inter 1s fall 2 rise 1" in rendered
    assert start > rendered.index("backend gateway")  # after the public frontend's rules


def test_the_public_socket_takes_an_ipv6_host_with_or_without_brackets():
    import socket as sockets

    from myservice_gateway.front import supervisor
    for host in ("[::1]", "::1"):
        try:
            sock = supervisor.listening_socket(host, 0)
        except OSError as e:
            pytest.skip(f"no IPv6 loopback here: {e}")
        with sock:
            assert (sock.family, sock.getsockname()[0]) == (sockets.AF_INET6, "::1")
            port = sock.getsockname()[1]
            with pytest.raises(OSError, match=rf"^cannot listen on {re.escape(host)}:{port} \(address in use or not "
                                              r"available\)$"):
                supervisor.listening_socket(host, port)
