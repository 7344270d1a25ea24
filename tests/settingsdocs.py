"""Holding a Markdown settings table to the declarations (myservice_api.settings).

A table documents a setting when its variable is named in it; the row whose first
cell names the variable must also name its flag and show its default.
"""
from __future__ import annotations

import re
from pathlib import Path

from myservice_api import settings

ROOT = Path(__file__).resolve().parents[1]


def table_under(path: Path, heading: str) -> list[list[str]]:
    """The cells of the first table after `heading` (a whole line), header rows left out."""
    lines = path.read_text().splitlines()
    start = lines.index(heading)
    rows, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen = True
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows.append(cells)
        elif seen:
            break
    return rows[2:]


def problems(cls: type, rows: list[list[str]]) -> list[str]:
    """What the table gets wrong about the settings of `cls` (empty: nothing)."""
    found = []
    for setting in settings.declared(cls):
        named = [row for row in rows if re.search(rf"`{setting.env}[`=]", row[0])]
        if not named:
            if not any(setting.env in " ".join(row) for row in rows):
                found.append(f"{setting.env}: not in the table")
            continue
        first, default = named[0][0], named[0][1]
        if setting.flag and not re.search(rf"`{setting.flag}[` ]", first):
            found.append(f"{setting.env}: its flag {setting.flag} is not in its row")
        shown = setting.shown_default()
        if shown != "unset" and shown not in default:
            found.append(f"{setting.env}: default {shown} is not in {default!r}")
    return found
