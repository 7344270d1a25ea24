"""`python -m myservice_instance` / `myservice instance`: our echo instance."""
from __future__ import annotations

import argparse
import sys

from . import cli
from .servicer import echo_instance
from .settings import WAIT_FOR_CLAIM_ENV, InstanceSettings

__all__ = ["WAIT_FOR_CLAIM_ENV", "InstanceSettings", "build_parser", "main", "run"]

DESCRIPTION = "Run one MyService instance: serves exactly one session, exits 0 after MyServiceShutdown."


def build_parser(prog: str = "myservice instance") -> argparse.ArgumentParser:
    return cli.build_parser(prog, DESCRIPTION)


def run(args: argparse.Namespace) -> int:
    return cli.run(args, echo_instance(), prog="myservice instance")


def main(argv: list[str] | None = None) -> int:
    return run(build_parser("python -m myservice_instance").parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
