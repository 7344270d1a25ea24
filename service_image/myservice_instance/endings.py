"""How an instance says why it ended on its own: in its log, in its termination
message file (on Kubernetes the operator makes it the session's status.reason;
locally the gateway logs it), and, for the local backend's own instances, on
stdout ("ENDED <Reason> <message>")."""
from __future__ import annotations

import logging
import sys

from .limits import Ending

log = logging.getLogger("myservice.instance")


def report_ending(ending: Ending, *, announce: bool, termination_log: str | None) -> None:
    log.info("instance ending: %s", ending.line())
    if termination_log:
        try:
            with open(termination_log, "w", encoding="utf-8") as f:
                f.write(ending.line())
        except OSError as e:
            log.warning("cannot write the termination message to %s: %s", termination_log, e)
    if announce:
        sys.stdout.write(f"ENDED {ending.reason} {ending.message}\n")
        sys.stdout.flush()
