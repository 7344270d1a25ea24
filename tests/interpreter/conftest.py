"""The interpreter example (examples/interpreter/) from the checkout: its package on
sys.path and its stubs generated (myservice_interpreter.stubs.ensure)."""
from __future__ import annotations

import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "interpreter"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from myservice_interpreter import stubs  # noqa: E402 - after the path

stubs.ensure()
