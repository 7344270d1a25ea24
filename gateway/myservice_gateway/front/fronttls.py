"""TLS at the front: HAProxy terminates TLS (and checks client certificates) on the
public bind; the Python gateway behind it listens plain on its private socket.

- HAProxy reads the certificate chain and its key from one combined PEM file,
  written here mode 0600 in the front's private (0700) directory: never in a
  process argument, the environment or a log. The client CA, when set, is copied
  beside it (HAProxy names a CA by its file).
- Rotation as on the Python path (tls.py): the same CertificateReloader decides,
  from the files' stat signatures, whether they changed and check out, and logs
  the same lines. Python's gRPC asks it before each handshake; HAProxy cannot, so
  the front asks it once a period. New material is written to the files first (a
  restarted HAProxy loads them), then given to the running HAProxy over its
  runtime API (`set ssl cert <file> <<` + `commit ssl cert <file>`, and the same
  for `ssl ca-file`): new handshakes get it, established connections and their
  calls keep theirs. Nothing is restarted, no call is dropped.
"""
from __future__ import annotations

import asyncio
import logging
import os

from .. import tls
from .runtime import PayloadTooLarge, RuntimeApiError, RuntimeClient

log = logging.getLogger("myservice.gateway.front")

PERIOD_SECONDS = 1.0
CERT_FILE = "front.pem"  # the chain and its key, as HAProxy's `crt` takes them
CLIENT_CA_FILE = "client-ca.pem"


def pem_text(data: bytes) -> str:
    """PEM as the runtime API can carry it: the payload of `set ssl ... <<` ends at the
    first empty line, so there is none (PEM parsers skip blank lines anyway); LF only."""
    lines = data.decode("ascii", errors="replace").replace("\r", "").split("\n")
    return "\n".join(line for line in lines if line.strip()) + "\n"


def combined_pem(material: tls.TlsMaterial) -> str:
    """HAProxy's `crt` file: the certificate chain, then its key."""
    return pem_text(material.cert_chain) + pem_text(material.private_key)


class FrontTls:
    """The TLS files of one front: written at start, followed while it runs."""

    def __init__(self, files: tls.TlsFiles, material: tls.TlsMaterial, directory: str, *,
                 period: float = PERIOD_SECONDS) -> None:
        self.files = files
        self.cert_file = os.path.join(directory, CERT_FILE)
        self.client_ca_file = os.path.join(directory, CLIENT_CA_FILE) if files.client_ca_file else None
        self.reloader = tls.CertificateReloader(files, material)
        self.period = period
        self.commits = 0  # new material HAProxy took through its runtime API
        self._material = material  # the files' content as last checked out (and written)
        self._served = self._wanted()  # what the running HAProxy has, by kind ("cert", "ca-file")
        self._last_problem = ""
        self._task: asyncio.Task | None = None

    @classmethod
    def load(cls, files: tls.TlsFiles, directory: str, **kwargs) -> FrontTls:
        """Raises tls.TlsConfigError (naming the setting) if the files do not check out."""
        return cls(files, tls.load(files), directory, **kwargs)

    def write_files(self) -> None:
        write_private(self.cert_file, combined_pem(self._material))
        if self.client_ca_file and self._material.client_ca is not None:
            write_private(self.client_ca_file, pem_text(self._material.client_ca))

    def start(self, client: RuntimeClient) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(client), name="front-tls-watch")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self, client: RuntimeClient) -> None:
        while True:
            await asyncio.sleep(self.period)
            await self.check(client)

    async def check(self, client: RuntimeClient) -> bool:
        """Give HAProxy the files' new content if they changed and check out; True when it
        took new material now. What HAProxy could not take (it was restarting) is given
        again at the next check."""
        material = await asyncio.to_thread(self.reloader.check)  # stat; reads only on a change
        if material is not None:
            self._material = material
            self.write_files()  # first: an HAProxy (re)starting now loads these
        wanted = self._wanted()
        took = False
        for kind, name in (("cert", self.cert_file), ("ca-file", self.client_ca_file)):
            if name is None or wanted[kind] == self._served[kind]:
                continue
            try:
                await client.set_ssl(kind, name, wanted[kind])
            except PayloadTooLarge as e:
                self._served[kind] = wanted[kind]  # never fits: loaded from the file when HAProxy next starts
                log.error("HAProxy keeps its TLS %s in use until it restarts: %s", kind, e)
                continue
            except RuntimeApiError as e:
                if str(e) != self._last_problem:
                    self._last_problem = str(e)
                    log.warning("HAProxy did not take the new TLS files yet (tried again every %gs): %s",
                                self.period, e)
                return took
            self._served[kind] = wanted[kind]
            self._last_problem = ""
            took = True
        if took:
            self.commits += 1
            log.info("HAProxy serves the new TLS files to new connections (established ones keep theirs)")
        return took

    def _wanted(self) -> dict[str, str]:
        """What HAProxy should have, as the runtime API takes it: kind -> PEM."""
        return {"cert": combined_pem(self._material), "ca-file": pem_text(self._material.client_ca or b"")}


def write_private(path: str, text: str) -> None:
    """`text` as `path`'s whole content, mode 0600 from its creation (never readable by
    others, not even briefly), replaced in one rename (HAProxy never reads half of it)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
