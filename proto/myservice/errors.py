"""The error table: every status the platform answers with, its code and its text
together, each made by one constructor. Gateway and instance raise these; nothing
else pairs a `grpc.StatusCode` with a text. The texts themselves are in
contract.py (clients compare with them); README's error list is generated from
`ROWS` (`python -m myservice.errors`) and a test keeps the two equal."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import grpc

from . import contract


@dataclasses.dataclass(frozen=True)
class ContractError(Exception):
    """A status answered instead of (or by) an instance: code and text for the client."""
    code: grpc.StatusCode
    message: str

    async def abort(self, context: grpc.aio.ServicerContext, trailing: tuple = ()) -> None:
        """End the call with this status (raises, as context.abort does)."""
        await context.abort(self.code, self.message, trailing)


def _error(code: grpc.StatusCode, message: str) -> ContractError:
    return ContractError(code, message)


# ---------------------------------------------------------------- the seed's table

def username_required() -> ContractError:
    return _error(grpc.StatusCode.INVALID_ARGUMENT, contract.USERNAME_REQUIRED)


def session_id_required() -> ContractError:
    return _error(grpc.StatusCode.INVALID_ARGUMENT, contract.SESSION_ID_REQUIRED)


def invalid_credentials() -> ContractError:
    """Wrong password and unknown user alike."""
    return _error(grpc.StatusCode.PERMISSION_DENIED, contract.INVALID_CREDENTIALS)


def failed_to_get_user() -> ContractError:
    return _error(grpc.StatusCode.INTERNAL, contract.FAILED_TO_GET_USER)


def failed_to_create_token() -> ContractError:
    return _error(grpc.StatusCode.INTERNAL, contract.FAILED_TO_CREATE_TOKEN)


def server_session_not_set() -> ContractError:
    return _error(grpc.StatusCode.PERMISSION_DENIED, contract.SERVER_SESSION_NOT_SET)


def client_session_mismatch(client: str, server: str) -> ContractError:
    return _error(grpc.StatusCode.PERMISSION_DENIED, contract.client_session_mismatch(client, server))


def session_conflict(was: str, now: str) -> ContractError:
    return _error(grpc.StatusCode.INTERNAL, contract.session_conflict(was, now))


def no_available_instances() -> ContractError:
    """No instance can be had at all: limit 0, or the instance failed to start."""
    return _error(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.NO_AVAILABLE_INSTANCES)


def all_instances_busy() -> ContractError:
    """The limit of live instances is reached."""
    return _error(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.ALL_INSTANCES_BUSY)


def backend_unavailable() -> ContractError:
    """The instance cannot be reached (or, at Login, the backend cannot prepare the session)."""
    return _error(grpc.StatusCode.UNAVAILABLE, contract.BACKEND_UNAVAILABLE)


def missing_token() -> ContractError:
    return _error(grpc.StatusCode.UNAUTHENTICATED, contract.MISSING_TOKEN)


def missing_session_id() -> ContractError:
    return _error(grpc.StatusCode.UNAUTHENTICATED, contract.MISSING_SESSION_ID)


def invalid_token() -> ContractError:
    """Malformed, expired, wrongly signed, alg=none, or issued for another session or audience."""
    return _error(grpc.StatusCode.UNAUTHENTICATED, contract.INVALID_TOKEN)


# ---------------------------------------------------------------- beyond the seed

def session_ended(session_id: str) -> ContractError:
    """A call on a session whose instance has exited (Shutdown, idle, lifetime, crash)."""
    return _error(grpc.StatusCode.FAILED_PRECONDITION, contract.session_ended(session_id))


def repeated_credentials() -> ContractError:
    return _error(grpc.StatusCode.UNAUTHENTICATED, contract.REPEATED_METADATA)


def per_user_limit(limit: int) -> ContractError:
    return _error(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.per_user_limit(limit))


def session_of_another_user() -> ContractError:
    return _error(grpc.StatusCode.PERMISSION_DENIED, contract.SESSION_OF_ANOTHER_USER)


def malformed_request() -> ContractError:
    """Request bytes that do not decode (any method, gateway or instance)."""
    return _error(grpc.StatusCode.INVALID_ARGUMENT, contract.MALFORMED_REQUEST)


def session_id_invalid() -> ContractError:
    """A non-empty session_id that could not travel back as a metadata value."""
    return _error(grpc.StatusCode.INVALID_ARGUMENT, contract.SESSION_ID_RULE)


def login_throttled() -> ContractError:
    """Sent with a google.rpc.RetryInfo (login.retry_status)."""
    return _error(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.LOGIN_THROTTLED)


def login_busy() -> ContractError:
    """Sent with a google.rpc.RetryInfo (login.retry_status)."""
    return _error(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.LOGIN_BUSY)


def not_ready_in_time(seconds: float) -> ContractError:
    """The session's instance did not turn ready within the call's deadline (or the
    backend's start timeout, if shorter): both backends answer this."""
    return _error(grpc.StatusCode.DEADLINE_EXCEEDED, contract.not_ready_within(seconds))


def negative_count() -> ContractError:
    """MyServiceEchoStream with count < 0 (the instance)."""
    return _error(grpc.StatusCode.INVALID_ARGUMENT, contract.NEGATIVE_COUNT)


def method_not_found() -> ContractError:
    """A method the gateway never forwards: not under a configured service, malformed, or
    not in the descriptor of a service the gateway knows (gRPC's own code and text)."""
    return _error(grpc.StatusCode.UNIMPLEMENTED, contract.METHOD_NOT_FOUND)


def answer_too_large() -> ContractError:
    """An instance's answer (one message) over the gateway's limit: refused by the
    gateway's channel to the instance, which never takes in more."""
    return _error(grpc.StatusCode.RESOURCE_EXHAUSTED, contract.ANSWER_TOO_LARGE)


def login_problem(username: str, session_id: str) -> ContractError | None:
    """The seed's Login argument checks, in its order, then the session_id rule."""
    if not username:
        return username_required()
    if not session_id:
        return session_id_required()
    if contract.session_id_problem(session_id):
        return session_id_invalid()
    return None


# ---------------------------------------------------------------- the table

@dataclasses.dataclass(frozen=True)
class Row:
    """One line of README's error list: which constructor, with example arguments, when."""
    make: Callable[..., ContractError]
    example: tuple
    when: str
    seed: str  # in the seed's own error table: "yes", "code" (code only: its text is "-"), or ""


ROWS: tuple[Row, ...] = (
    Row(username_required, (), "Login with an empty username", "yes"),
    Row(session_id_required, (), "Login with an empty session_id", "yes"),
    Row(invalid_credentials, (), "Login: wrong password or unknown user (alike)", "yes"),
    Row(failed_to_get_user, (), "Login: the users file cannot be read", "yes"),
    Row(failed_to_create_token, (), "Login: the token cannot be signed", "yes"),
    Row(missing_token, (), "a call without `authorization`", "code"),
    Row(missing_session_id, (), "a call without `session-id`", "code"),
    Row(invalid_token, (), "a malformed, expired, wrongly signed or `alg=none` token, "
                           "or one issued for another session", "code"),
    Row(server_session_not_set, (), "the instance: a call before its session is set", "yes"),
    Row(client_session_mismatch, ("s2", "s1"), "the instance: a call of another session", "yes"),
    Row(session_conflict, ("s1", "s2"), "the instance: bound to another session", "yes"),
    Row(no_available_instances, (), "no instance can be had at all (limit 0, or it failed to start)", "yes"),
    Row(all_instances_busy, (), "the limit of live instances is reached", "yes"),
    Row(backend_unavailable, (), "the instance cannot be reached; at Login: the backend cannot "
                                 "prepare the session (e.g. the Kubernetes API is unreachable)", "yes"),
    Row(session_ended, ("s1",), "a call on a session that has ended (Shutdown, idle timeout, "
                                "lifetime, crash): a session never gets a second instance", ""),
    Row(repeated_credentials, (), "a second `authorization` or `session-id` value", ""),
    Row(per_user_limit, (10,), "the user already has N live sessions (at the call that would start "
                               "an instance: locally the first call, on Kubernetes Login)", ""),
    Row(session_of_another_user, (), "Kubernetes: a resource whose `spec.user` is not the token's user "
                                     "(only a resource made by hand can do that)", ""),
    Row(malformed_request, (), "request bytes that do not decode (any method)", ""),
    Row(session_id_invalid, (), "Login: a session_id that could not travel back as metadata", ""),
    Row(login_throttled, (), "Login: repeated failures for that username or from that client "
                             "address, or too many of its Logins at once; with RetryInfo", ""),
    Row(login_busy, (), "Login: the password-hashing queue is full; with RetryInfo", ""),
    Row(not_ready_in_time, (120,), "the session's instance was not ready within the call's deadline "
                                   "(at most the ready timeout)", ""),
    Row(negative_count, (), "the instance: MyServiceEchoStream with count < 0", ""),
    Row(method_not_found, (), "a method that is not forwarded: outside the configured services "
                              "(`MYSERVICE_SERVICES`), malformed, or not in the descriptor of ours; "
                              "before authentication, and no instance is started", ""),
    Row(answer_too_large, (), "an instance's answer (one message) larger than 4 MiB, gRPC's default "
                              "limit for clients", ""),
)


def markdown_table() -> str:
    """README's error list, made from ROWS."""
    lines = ["| code | message | when | seed |", "| --- | --- | --- | --- |"]
    for row in ROWS:
        error = row.make(*row.example)
        lines.append(f"| `{error.code.name}` | \"{error.message}\" | {row.when} | {row.seed} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
