"""The interpreter's own settings, each declared once (myservice_api.settings):
its environment variable, flag, default, rule and help. The chart sets them in the
instance pods' env through instance.podTemplate (examples/interpreter/values.yaml)."""
from __future__ import annotations

import dataclasses

from myservice_api.settings import declare

from .engine import Limits

MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class InterpreterSettings:
    """What bounds one Run call."""
    time_limit: float = declare(
        10.0, env="MYSERVICE_INTERPRETER_TIME_LIMIT_SECONDS", flag="--time-limit", positive=True, unit="seconds",
        help="a Run is stopped after this long (TimeLimitExceeded; code that does not stop is killed "
             "2 s later, and the session's variables with it)")
    max_output: int = declare(
        65536, env="MYSERVICE_INTERPRETER_MAX_OUTPUT_CHARS", flag="--max-output", positive=True,
        metavar="CHARS",
        help="characters kept of a Run's stdout, of its stderr and of its error, each: the output's first "
             "ones, then a line '[output truncated: N more characters]'; the error's last ones (its exception)")
    memory_limit_mib: int = declare(
        256, env="MYSERVICE_INTERPRETER_MEMORY_LIMIT_MIB", flag="--memory-limit", minimum=0, zero="no limit",
        metavar="MIB",
        help="address space of the process that runs the code (RLIMIT_AS), in MiB: beyond it the code "
             "gets MemoryError, and the pod's memory limit is not reached (keep it below that limit)")

    @property
    def limits(self) -> Limits:
        return Limits(time_limit=self.time_limit, max_output=self.max_output,
                      memory_limit_bytes=self.memory_limit_mib * MIB)
