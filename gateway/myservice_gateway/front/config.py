"""The HAProxy configuration of the front: a pure function of FrontConfig.

What HAProxy does per call, in the order auth.py does it (the tests hold both
fronts to the same code and text for every rule):

1. Not a forwarded method (Login, reflection, health, a method the service does
   not have): to the Python gateway untouched, but for x-forwarded-for, which ends
   with HAProxy's peer (so that Login's per-address limits can trust it from the
   front): appended to the peer's own value when the peer is a trusted proxy
   (MYSERVICE_TRUSTED_PROXIES), the only value otherwise (a client's is dropped).
   With the PROXY protocol on the bind, the peer is the address the load balancer
   says it received the connection from.
2. A second `authorization` or `session-id`: UNAUTHENTICATED "more than one ...".
3. None (or empty): "missing authorization token", then "missing session-id".
4. The token (`Bearer ` optional, any case): HS256 only (header `alg` and the
   signature), every claim auth.py requires present, `exp` and `iat`/`nbf` against
   the clock, `iss`, `aud`, and `sid` equal to the session-id: else "invalid token".
5. Its session (`sub`, `sid`) in the map: straight to that instance, without the
   token (the Python proxy does not forward it either); else to Python, which
   starts the instance, answers "has ended", the capacity errors, ...

Every refusal is a gRPC trailers-only answer made from errors.py's constructor,
so the texts live in one place. A call to an instance that cannot be reached (a
map entry a moment stale) is answered UNAVAILABLE "backend service unavailable",
as the Python proxy answers it: never another session's instance, since the map
is keyed by the verified (user, session) and instances check their session.
An instance's own UNAVAILABLE or CANCELLED (trailers-only) is answered the same,
as the Python proxy maps it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import grpc

from myservice import contract, errors

from . import mapkeeper

# Names inside the configuration, for the runtime API and the tests.
KEY_VARIABLE = "proc.jwt_key"  # the signing key, as jwt_verify reads it (sidecar.py sets it live)
FRONTEND = "myservice"
INSTANCES_BACKEND = "instances"
GATEWAY_BACKEND = "gateway"
METRICS_FRONTEND = "metrics"

# Long calls are the instances' business (their idle timeout and maximum lifetime
# end sessions): the front must not cut a Chat stream that stays quiet for hours.
LONG_TIMEOUT = "25h"
# A request's headers must arrive within this (slow clients do not hold a stream).
HEADERS_TIMEOUT = "10s"
CONNECT_TIMEOUT = "5s"
REFUSAL_BODY_WAIT = "1s"
METRICS_TIMEOUT = "30s"  # a scrape, not a stream
# A soft stop (SIGUSR1: the gateway stopping its child, or the front container stopped by
# Kubernetes) lets calls in flight end, and ends what is still open after this: a Chat may stay
# open for hours. The chart's terminationGracePeriodSeconds leaves room for it after the drain.
SOFT_STOP_SECONDS = 20
READY_PATH = "/ready"  # on the metrics bind: HAProxy and the Python gateway both answer
GATEWAY_CHECK_INTERVAL = "1s"
# Connections at once. HAProxy's own default follows the open-file limit (a million in
# some containers); and a maxconn the limit cannot carry (two descriptors a connection) is
# fatal at start. So: this many, or what the hard open-file limit carries (connection_limit).
# Each client keeps one HTTP/2 connection for all its calls, so this is clients, not calls:
# 10,000 sessions' clients and as many again for their instances, with room. Over it, new
# connections wait in the kernel's backlog rather than being refused.
MAX_CONNECTIONS = 40000
# Streams (calls) at once on one client connection: HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS
# HAProxy announces. 100, gRPC's and HAProxy's usual; a client past it queues its calls.
MAX_STREAMS_PER_CONNECTION = 100


@dataclasses.dataclass(frozen=True)
class FrontConfig:
    bind: str  # HAProxy's address: host:port, or fd@N (a socket the gateway bound)
    gateway_socket: str  # the Python gateway's private Unix socket
    runtime_socket: str  # HAProxy's runtime API (level admin: mode 600, private directory)
    map_file: str  # the sessions map as HAProxy loads it at start (the runtime API keeps it)
    jwt_key: bytes
    issuer: str
    audience: str
    methods: tuple[str, ...]  # '/pkg.Service/Method' of every method checked and routed here
    # One thread: ~55 us of CPU per call carries far more calls than the instances of one
    # machine serve, and one thread keeps each backend connection's streams on it (no
    # hand-off between threads); the figures of issue 18 were taken so.
    threads: int = 1
    # TLS (fronttls.py): HAProxy's combined PEM (chain and key, mode 0600, private directory)
    # and the client CA file (set: a client certificate signed by it is required).
    tls_cert_file: str | None = None
    tls_client_ca_file: str | None = None
    # The peers whose x-forwarded-for is kept (CIDRs, MYSERVICE_TRUSTED_PROXIES), and whether
    # the public bind expects a PROXY protocol header (v1 or v2) first on every connection.
    trusted_proxies: tuple[str, ...] = ()
    proxy_protocol: bool = False
    # HAProxy's own Prometheus exporter (its PROMEX service) on a bind of its own, or None.
    metrics_bind: str | None = None
    max_connections: int = MAX_CONNECTIONS  # connection_limit() of the process's open-file limit


def connection_limit(open_files_hard_limit: int) -> int:
    """maxconn for a process whose open files may reach `open_files_hard_limit`: HAProxy
    needs two descriptors a connection and some for itself (listeners, sockets, files)."""
    return max(100, min(MAX_CONNECTIONS, (open_files_hard_limit - 200) // 2))


def quoted(text: str) -> str:
    """`text` as one double-quoted word of the configuration (no expansion of $)."""
    out = []
    for ch in text:
        if ch in '\\"$':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return '"' + "".join(out) + '"'


def log_format_quoted(text: str) -> str:
    """`text` as a double-quoted log-format word: '%' introduces a sample there."""
    return quoted(text.replace("%", "%%"))


def grpc_message(text: str) -> str:
    """The grpc-message header's value: percent-encoded as the gRPC HTTP/2 spec says
    (bytes outside 0x20-0x7E, and '%' itself)."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in text.encode())


# The refusals, in auth.py's order; a call's first failed check sets txn.err to its number here.
REFUSALS = (errors.repeated_credentials, errors.missing_token, errors.missing_session_id, errors.invalid_token)
_NO_ERROR_YET = "fwd !failed"  # acl failed: a check has failed already


def check(error: Callable[[], errors.ContractError], *terms: str) -> str:
    """Record `error` as the call's refusal when any of `terms` holds (and no earlier check failed)."""
    number = REFUSALS.index(error) + 1
    return (f"    http-request set-var(txn.err) int({number}) if "
            + " || ".join(f"{_NO_ERROR_YET} {term}" for term in terms))


def refusals() -> list[str]:
    """The answers to the recorded refusal, as gRPC trailers-only responses. The request's
    end is awaited first (at most REFUSAL_BODY_WAIT): HAProxy 2.6 ends a stream answered
    before its request ended with RST_STREAM(CANCEL) (haproxy/haproxy#1219), which a
    client may read as CANCELLED before the status. A one-message request ends at once; a
    client stream that stays open is answered after the wait, and may still read CANCELLED."""
    lines = [f"    http-request wait-for-body time {REFUSAL_BODY_WAIT} if fwd failed"]
    for number, make in enumerate(REFUSALS, 1):
        error = make()
        lines.append(f"    http-request return status 200 hdr grpc-status {error.code.value[0]} "
                     f"hdr grpc-message {log_format_quoted(grpc_message(error.message))} "
                     f"if fwd {{ var(txn.err) -m int {number} }}")
    return lines


def claim(name: str, kind: str = "") -> str:
    return (f"    http-request set-var(txn.{name}) var(txn.tok),jwt_payload_query('$.{name}'"
            f"{',' + repr(kind) if kind else ''}) if {_NO_ERROR_YET}")


def _unavailable_errors(error: errors.ContractError) -> list[str]:
    """HAProxy's own 502/503/504 of a backend as the gRPC status `error` (HTTP 200:
    a gRPC client reads grpc-status only from a 200 answer)."""
    return [*(f"    http-error status {status} hdr grpc-status {error.code.value[0]} "
              f"hdr grpc-message {log_format_quoted(grpc_message(error.message))}" for status in (502, 503, 504)),
            "    http-after-response set-status 200 if { status 502:504 }"]


def _instance_unavailable(error: errors.ContractError) -> list[str]:
    """An instance's own UNAVAILABLE or CANCELLED (e.g. grpc's "Cancelling all calls" when a
    call meets its server's stop) as `error`, as the Python proxy maps them (_abort_from).
    Only a trailers-only answer carries grpc-status in its headers; trailers after a
    HEADERS frame are not seen by http-response rules."""
    statuses = f"{grpc.StatusCode.UNAVAILABLE.value[0]} {grpc.StatusCode.CANCELLED.value[0]}"
    return [f"    acl instance_gone res.hdr(grpc-status) -m int {statuses}",
            # The message first: the status it keys on is rewritten next.
            f"    http-response set-header grpc-message {log_format_quoted(grpc_message(error.message))} "
            "if instance_gone",
            f"    http-response set-header grpc-status {error.code.value[0]} if instance_gone"]


def bind_line(config: FrontConfig) -> str:
    """The public bind: HTTP/2 always (gRPC), TLS when a certificate is given (ALPN h2),
    client certificates required when a client CA is."""
    words = [f"    bind {config.bind}"]
    if config.tls_cert_file:
        words.append(f"ssl crt {config.tls_cert_file} alpn h2")
        if config.tls_client_ca_file:
            words.append(f"ca-file {config.tls_client_ca_file} verify required")
    if config.proxy_protocol:
        words.append("accept-proxy")
    words.append("proto h2")
    return " ".join(words)


def forwarded_for(config: FrontConfig) -> list[str]:
    """x-forwarded-for as clientaddress.py reads it (right to left, skipping trusted
    proxies): HAProxy's peer always last. A trusted proxy's own value stays before it;
    anyone else's is dropped, so a client cannot choose the address Login's limits count
    it as. One line (the gRPC server keeps only the last line of a repeated header): a
    trusted proxy's last line, then the peer."""
    if not config.trusted_proxies:
        return ["    http-request set-header x-forwarded-for %[src]"]
    return [f"    acl trusted_peer src {' '.join(config.trusted_proxies)}",
            "    http-request set-var(txn.xff) req.fhdr(x-forwarded-for) if trusted_peer",
            '    http-request set-header x-forwarded-for "%[var(txn.xff)], %[src]" if { var(txn.xff) -m found }',
            "    http-request set-header x-forwarded-for %[src] if !{ var(txn.xff) -m found }"]


def render(config: FrontConfig) -> str:
    """The whole haproxy.cfg. The key travels as hex in this file only (never in a
    process argument or a log); the file is written mode 0600 in a private directory."""
    unavailable = errors.backend_unavailable()
    methods = " ".join(config.methods)
    lines = [
        "# Generated by myservice_gateway.front.config: do not edit (it is rewritten at every start).",
        "global",
        f"    stats socket {config.runtime_socket} mode 600 level admin",
        f"    nbthread {config.threads}",
        f"    maxconn {config.max_connections}",
        f"    tune.h2.fe.max-concurrent-streams {MAX_STREAMS_PER_CONNECTION}",
        f"    hard-stop-after {SOFT_STOP_SECONDS}s",
        # The signing key as a process variable: jwt_verify reads it by name, binary-safe
        # but for NUL (the front refuses such a key: front.py).
        f"    set-var {KEY_VARIABLE} bin({config.jwt_key.hex()})",
        # The TLS files are the front's own (no .key/.ocsp/.issuer beside them to look for).
        *(["    ssl-load-extra-files none"] if config.tls_cert_file else []),
        "",
        "defaults",
        "    mode http",
        f"    timeout connect {CONNECT_TIMEOUT}",
        f"    timeout client {LONG_TIMEOUT}",
        f"    timeout server {LONG_TIMEOUT}",
        f"    timeout http-request {HEADERS_TIMEOUT}",
        "",
        f"frontend {FRONTEND}",
        bind_line(config),
        *forwarded_for(config),
        f"    acl fwd path -m str {methods}",
        "    acl failed var(txn.err) -m found",
        check(errors.repeated_credentials, "{ req.fhdr_cnt(authorization) gt 1 }", "{ req.fhdr_cnt(session-id) gt 1 }"),
        check(errors.missing_token, "!{ req.fhdr(authorization) -m len 1: }"),
        check(errors.missing_session_id, "!{ req.fhdr(session-id) -m len 1: }"),
        # tokens.strip_bearer: "Bearer " (any case, any spaces after it) is optional.
        rf"    http-request set-var(txn.tok) req.fhdr(authorization),regsub(^bearer\ +,,i) if {_NO_ERROR_YET}",
        f"    http-request set-var(txn.hsid) req.fhdr(session-id) if {_NO_ERROR_YET}",
        f"    http-request set-var(txn.now) date if {_NO_ERROR_YET}",
        # tokens.ALGORITHM pinned: the header must say HS256, and the HS256 signature must hold.
        check(errors.invalid_token, "!{ var(txn.tok),jwt_header_query('$.alg') -m str HS256 }"),
        check(errors.invalid_token, f'!{{ var(txn.tok),jwt_verify("HS256",{KEY_VARIABLE}) -m int 1 }}'),
        claim("sub"), claim("sid"), claim("iss"), claim("aud"), claim("role"), claim("jti"),
        claim("exp", "int"), claim("iat", "int"), claim("nbf", "int"),
        # tokens.REQUIRED_CLAIMS, each present.
        *(check(errors.invalid_token, f"!{{ var(txn.{name}) -m found }}")
          for name in ("sub", "sid", "role", "jti", "exp", "iat")),
        check(errors.invalid_token, f"!{{ var(txn.iss) -m str {quoted(config.issuer)} }}",
              f"!{{ var(txn.aud) -m str {quoted(config.audience)} }}"),
        # PyJWT: expired when exp <= now; not yet valid when iat or nbf > now.
        check(errors.invalid_token, "{ var(txn.exp),sub(txn.now) le 0 }", "{ var(txn.iat),sub(txn.now) gt 0 }",
              "{ var(txn.nbf),sub(txn.now) gt 0 }"),
        check(errors.invalid_token, "!{ var(txn.sid),strcmp(txn.hsid) eq 0 }"),
        *refusals(),
        # The map holds only users of KEY_USER_PATTERN (no '/'), so `<user>/<sid>` names one
        # session; a token of any other user is not looked up and goes to Python.
        f"    http-request set-var-fmt(txn.key) %[var(txn.sub)]/%[var(txn.sid)] "
        f"if {_NO_ERROR_YET} {{ var(txn.sub) -m reg '{mapkeeper.KEY_USER_PATTERN}' }}",
        f"    http-request set-var(txn.addr) var(txn.key),map_str({config.map_file}) if fwd {{ var(txn.key) -m found }}",
        "    http-request set-dst var(txn.addr),regsub(:[0-9]+$,) if { var(txn.addr) -m found }",
        "    http-request set-dst-port var(txn.addr),regsub(^.*:,) if { var(txn.addr) -m found }",
        # As the Python proxy (forwarded_metadata): the token stays at the front; the instance gets
        # the verified session-id and user (the map's users need no percent-encoding), never a client's.
        "    http-request del-header authorization if { var(txn.addr) -m found }",
        f"    http-request set-header {contract.SESSION_ID} %[var(txn.sid)] if {{ var(txn.addr) -m found }}",
        f"    http-request set-header {contract.USER} %[var(txn.sub)] if {{ var(txn.addr) -m found }}",
        f"    use_backend {INSTANCES_BACKEND} if {{ var(txn.addr) -m found }}",
        # HAProxy's own answers (the refusals above, the 502/503/504 below) have no body, and
        # `return` drops a content-type without one; gRPC clients other than Python's (grpc-go,
        # grpcurl) refuse a response without it.
        "    http-after-response set-header content-type application/grpc if { res.hdr(grpc-status) -m found } "
        "!{ res.hdr(content-type) -m found }",
        f"    default_backend {GATEWAY_BACKEND}",
        "",
        f"backend {INSTANCES_BACKEND}",
        # A refused connection is a gone instance: no turn-around second, no retry.
        "    retries 0",
        "    server instance 0.0.0.0:0 proto h2",
        # HAProxy's own errors here (an instance gone, a broken connection): the contract's UNAVAILABLE.
        *_unavailable_errors(unavailable),
        *_instance_unavailable(unavailable),
        "",
        f"backend {GATEWAY_BACKEND}",
        # Checked (a connect each second): /ready on the metrics bind answers from it.
        f"    server gateway unix@{config.gateway_socket} proto h2 check inter {GATEWAY_CHECK_INTERVAL} fall 2 rise 1",
        # The Python gateway away (restarting): calls fail fast, as the contract says it.
        *_unavailable_errors(unavailable),
        "",
        *metrics_frontend(config),
    ]
    return "\n".join(lines)


def metrics_frontend(config: FrontConfig) -> list[str]:
    """HAProxy's Prometheus exporter (built in: USE_PROMEX) on its own plain HTTP bind:
    /metrics only, never on the public port. Its figures are HAProxy's (docs/metrics.md).
    Beside it /ready: 200 while HAProxy runs and the Python gateway's socket accepts
    (its check), 503 otherwise; the probe of both processes where the public port cannot
    be probed with plain gRPC (TLS, PROXY protocol: the chart's readinessProbe)."""
    if not config.metrics_bind:
        return []
    return [f"frontend {METRICS_FRONTEND}",
            f"    bind {config.metrics_bind}",
            f"    timeout client {METRICS_TIMEOUT}",
            "    http-request use-service prometheus-exporter if { path /metrics }",
            f"    http-request return status 200 content-type text/plain string ready "
            f"if {{ path {READY_PATH} }} {{ nbsrv({GATEWAY_BACKEND}) gt 0 }}",
            f"    http-request return status 503 content-type text/plain string \"the gateway is not answering\" "
            f"if {{ path {READY_PATH} }}",
            "    http-request return status 404",
            ""]
