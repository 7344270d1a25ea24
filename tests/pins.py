"""The versions constraints.txt pins (the ones the tests run with)."""
from __future__ import annotations

import pathlib
import re

CONSTRAINTS = pathlib.Path(__file__).resolve().parent.parent / "constraints.txt"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """{normalized distribution name: pinned version}"""
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[normalized(name)] = version
    return found


def pinned(name: str) -> str:
    return pins()[normalized(name)]
