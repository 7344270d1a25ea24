"""`integrationtests SCENARIO [--gateway host:port]`: run a scenario against a gateway."""
from __future__ import annotations

import argparse
import os
import sys

import grpc

from . import tls
from .checks import CheckFailed
from .scenarios import SCENARIOS, Options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="integrationtests",
        description="Run a client scenario against a MyService gateway; exits 0 on pass, 1 naming the failed check.",
        epilog="scenarios: " + ", ".join(SCENARIOS))
    parser.add_argument("scenario", nargs="*", help="scenario(s) to run, in order")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--gateway", default=os.environ.get("MYSERVICE_GATEWAY", "localhost:10000"),
                        help="gateway address (env MYSERVICE_GATEWAY, default %(default)s)")
    parser.add_argument("--username", default=os.environ.get("MYSERVICE_TEST_USERNAME", "TestUser"),
                        help="user to log in as (env MYSERVICE_TEST_USERNAME, default %(default)s)")
    parser.add_argument("--password", default=os.environ.get("MYSERVICE_TEST_PASSWORD", "TestPassword"),
                        help="password (env MYSERVICE_TEST_PASSWORD, default TestPassword)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-call deadline in seconds (default %(default)s)")
    group = parser.add_argument_group("TLS (plaintext unless one of these is given)")
    group.add_argument("--tls-ca", metavar="FILE", help="verify the gateway against these PEM CA certificates "
                       "(default with the other TLS options: the system's trusted roots)")
    group.add_argument("--tls-cert", metavar="FILE", help="client certificate (PEM) for a gateway that requires one")
    group.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    group.add_argument("--tls-server-name", metavar="NAME",
                       help="the name to check in the gateway's certificate instead of the host of --gateway "
                            "(e.g. the Service's DNS name through a port-forward)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, fn in SCENARIOS.items():
            print(f"{name:16} {(fn.__doc__ or '').strip().splitlines()[0] if fn.__doc__ else ''}".rstrip())
        return 0
    if not args.scenario:
        parser.error("name a scenario (see --list)")
    unknown = [s for s in args.scenario if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)} (see --list)")
    try:
        client_tls = tls.from_options(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    except tls.ClientTlsError as e:
        parser.error(str(e))
    opts = Options(gateway=args.gateway, username=args.username, password=args.password, timeout=args.timeout)
    with tls.open_channel(args.gateway, client_tls) as channel:
        for name in args.scenario:
            print(f"== {name}")
            try:
                SCENARIOS[name](channel, opts)
            except CheckFailed as e:
                print(f"FAIL {name}: {e}")
                return 1
            except grpc.RpcError as e:
                print(f"FAIL {name}: unexpected {e.code().name}: {e.details()}")
                return 1
            print(f"PASS {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
