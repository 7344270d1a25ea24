"""Tiny assertion helpers for scenarios: each failure names the check."""
from __future__ import annotations

import grpc


class CheckFailed(AssertionError):
    pass


def check(condition: bool, name: str) -> None:
    if not condition:
        raise CheckFailed(name)


def expect_error(call, code: grpc.StatusCode, message: str | None, name: str) -> grpc.RpcError:
    """Run `call()`, which must fail with `code` (and exactly `message` unless None)."""
    try:
        call()
    except grpc.RpcError as e:
        if e.code() != code or (message is not None and e.details() != message):
            raise CheckFailed(f"{name}: expected {code.name} {message!r}, got {e.code().name} {e.details()!r}") from None
        return e
    raise CheckFailed(f"{name}: expected {code.name} {message!r}, but the call succeeded")
