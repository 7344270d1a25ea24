"""HAProxy's runtime API over its Unix socket (management.txt, "Unix Socket
commands"), asyncio. Non-interactive: one connection per batch; HAProxy runs
the batch's commands (separated by ';') and closes the connection after the
answers. A batch is kept well under HAProxy's buffer (tune.bufsize, 16 KiB)."""
from __future__ import annotations

import asyncio
import re

BATCH_BYTES = 8192
TIMEOUT_SECONDS = 5.0
# HAProxy 2.6 holds a command and its payload in one buffer (tune.bufsize, 16 KiB): a
# larger one is never answered. The TLS files bigger than this (a long chain and a big
# RSA key) are loaded from the file at HAProxy's next start instead.
PAYLOAD_BYTES = 15 * 1024


class RuntimeApiError(Exception):
    """HAProxy refused a command or could not be reached."""


class PayloadTooLarge(RuntimeApiError):
    """A payload HAProxy's runtime API cannot take at once (PAYLOAD_BYTES)."""


class RuntimeClient:
    def __init__(self, socket_path: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    async def run(self, command: str) -> str:
        """One command (or several joined by ';'): HAProxy's answer as text."""
        async def exchange() -> bytes:
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
            try:
                writer.write(command.encode() + b"\n")
                await writer.drain()
                return await reader.read()
            finally:
                writer.close()
        try:
            return (await asyncio.wait_for(exchange(), self.timeout)).decode(errors="replace")
        except (OSError, asyncio.TimeoutError) as e:
            raise RuntimeApiError(f"HAProxy runtime API at {self.socket_path}: {e or 'timed out'}") from None

    async def run_all(self, commands: list[str]) -> list[str]:
        """Every command, in order, in as few connections as fit: the problems HAProxy
        reported (an answer that is not empty), if any."""
        problems = []
        for batch in batches(commands):
            answer = await self.run(";".join(batch))
            problems.extend(line for line in answer.splitlines() if line.strip())
        return problems

    async def prepare_map(self, map_name: str) -> str:
        """A new, empty version of the map: its number (for add map @N / commit map @N)."""
        answer = await self.run(f"prepare map {map_name}")
        found = re.search(r"New version created: (\d+)", answer)
        if not found:
            raise RuntimeApiError(f"prepare map {map_name}: {answer.strip()}")
        return found.group(1)

    async def commit_map(self, map_name: str, version: str) -> None:
        answer = await self.run(f"commit map @{version} {map_name}")
        if answer.strip():
            raise RuntimeApiError(f"commit map @{version} {map_name}: {answer.strip()}")

    async def set_ssl(self, kind: str, name: str, pem: str) -> None:
        """Replace the TLS file `name` (kind "cert": a `crt` file, chain and key; "ca-file":
        a CA file) HAProxy loaded at start with `pem`, in one transaction: `set ssl <kind>
        <name> <<` then `commit ssl <kind> <name>`. New handshakes use it; established
        connections keep theirs. `pem` holds no empty line (it would end the payload).
        Errors never quote the payload (it holds a private key)."""
        command = f"set ssl {kind} {name} <<\n{pem.rstrip()}\n"
        if len(command) > PAYLOAD_BYTES:
            raise PayloadTooLarge(f"set ssl {kind} {name}: {len(pem)} bytes of PEM, more than HAProxy's "
                                  f"runtime API takes at once ({PAYLOAD_BYTES})")
        answer = await self.run(command)
        if "transaction created" not in answer.lower() and "transaction updated" not in answer.lower():
            await self.run(f"abort ssl {kind} {name}")
            raise RuntimeApiError(f"set ssl {kind} {name}: {_first_lines(answer)}")
        answer = await self.run(f"commit ssl {kind} {name}")
        if "Success!" not in answer:
            await self.run(f"abort ssl {kind} {name}")
            raise RuntimeApiError(f"commit ssl {kind} {name}: {_first_lines(answer)}")

    async def set_binary_variable(self, name: str, value: bytes) -> None:
        """Set the process variable `name` (proc.*) to `value`, as `set-var name bin(hex)` in
        the configuration does. `set var` is an experimental command of HAProxy's CLI (3.0:
        tests/gateway/test_front_sidecar.py holds it to that). Errors never quote the value
        (the signing key travels so)."""
        answer = await self.run(f"experimental-mode on; set var {name} bin({value.hex()})")
        if answer.strip():
            raise RuntimeApiError(f"set var {name}: refused by HAProxy")

    async def show_map(self, map_name: str) -> dict[str, str]:
        """The map's current entries (key -> value)."""
        entries = {}
        for line in (await self.run(f"show map {map_name}")).splitlines():
            parts = line.split()
            if len(parts) == 3:  # "<ref> <key> <value>"
                entries[parts[1]] = parts[2]
        return entries

    async def stats(self) -> dict[tuple[str, str], dict[str, str]]:
        """`show stat` as {(proxy, server or FRONTEND/BACKEND): {column: value}}."""
        lines = (await self.run("show stat")).splitlines()
        if not lines or not lines[0].startswith("# "):
            raise RuntimeApiError(f"show stat: {lines[:1]}")
        columns = lines[0][2:].split(",")
        table = {}
        for line in lines[1:]:
            if line.strip():
                row = dict(zip(columns, line.split(",")))
                table[(row["pxname"], row["svname"])] = row
        return table


def _first_lines(answer: str, count: int = 3) -> str:
    """HAProxy's own words (never a PEM line, should one come back)."""
    lines = [line.strip() for line in answer.splitlines() if line.strip() and "-----" not in line]
    return " / ".join(lines[:count]) or "no answer"


def batches(commands: list[str], limit: int = BATCH_BYTES) -> list[list[str]]:
    """`commands` cut into runs of at most `limit` bytes joined (one command alone may exceed it)."""
    out: list[list[str]] = []
    size = 0
    for command in commands:
        if out and size + len(command) + 1 <= limit:
            out[-1].append(command)
            size += len(command) + 1
        else:
            out.append([command])
            size = len(command)
    return out
