"""The haproxy child process of the local front: started with its files in a
private directory, watched, restarted if it dies, stopped with the gateway.

- It dies with the gateway: `setpriv --pdeathsig KILL` sets the kernel's
  parent-death signal between fork and exec without any Python running in the
  child (unsafe next to gRPC's threads), as for etcd in tests/kube.
- The public socket is the gateway's: bound here and handed to HAProxy as an
  inherited fd (`bind fd@N`). A port 0 gets its number at once, and while HAProxy
  restarts new connections wait in the socket's backlog instead of being refused.
- The signing key is in haproxy.cfg only (mode 0600, in a 0700 directory): never
  in an argument, the environment or a log.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable

from .files import HaproxyFiles
from .fronttls import FrontTls
from .runtime import RuntimeApiError, RuntimeClient

log = logging.getLogger("myservice.gateway.front")

START_TIMEOUT_SECONDS = 10.0
RESTART_DELAY_SECONDS = 0.5


def listening_socket(host: str, port: int) -> socket.socket:
    """The public socket (IPv4 or IPv6 by the host's form; `[::]` as gRPC writes it, or
    `::`), listening, inheritable."""
    address = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} (address in use or not available)") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def haproxy_command(haproxy: str, config_file: str, setpriv: str | None) -> list[str]:
    # -db: stay in the foreground (no daemon), so that this process is its parent; -q: no
    # notices at start (errors are still printed).
    command = [haproxy, "-db", "-q", "-f", config_file]
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


class HaproxySupervisor:
    """One haproxy process for one gateway; `on_start` runs after every (re)start
    (the map is rebuilt there)."""

    def __init__(self, *, haproxy: str, listener: socket.socket, gateway_socket: str, jwt_key: bytes,
                 issuer: str, audience: str, methods: tuple[str, ...], directory: str | None = None,
                 on_start: Callable[[], Awaitable[None] | None] = lambda: None,
                 tls: FrontTls | None = None, trusted_proxies: tuple[str, ...] = (),
                 proxy_protocol: bool = False, metrics_listener: socket.socket | None = None) -> None:
        self.haproxy = haproxy
        self.listener = listener
        self.directory = directory or tempfile.mkdtemp(prefix="myservice-front-")  # mode 0700
        self.files = HaproxyFiles(
            self.directory, bind=f"fd@{listener.fileno()}", gateway_socket=gateway_socket,
            metrics_bind=f"fd@{metrics_listener.fileno()}" if metrics_listener else None, tls=tls,
            jwt_key=jwt_key, issuer=issuer, audience=audience, methods=methods, trusted_proxies=trusted_proxies,
            proxy_protocol=proxy_protocol)
        self.config, self.config_file, self.map_file = self.files.config, self.files.config_file, self.files.map_file
        self.client = RuntimeClient(self.files.runtime_socket)
        self.metrics_listener = metrics_listener
        self.tls = tls
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._on_start = on_start
        self._watch: asyncio.Task | None = None
        self._stopping = False

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_listener.getsockname()[1] if self.metrics_listener else None

    async def start(self) -> None:
        self.files.write()
        await self._spawn()
        self._watch = asyncio.get_running_loop().create_task(self._watch_exits())

    async def _spawn(self) -> None:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            log.warning("setpriv not found: haproxy (pid below) will outlive a killed gateway")
        self.process = await asyncio.create_subprocess_exec(
            *haproxy_command(self.haproxy, self.config_file, setpriv),
            stdin=asyncio.subprocess.DEVNULL, pass_fds=self._inherited(), start_new_session=True)
        await self._wait_answering()
        self.starts += 1
        log.info("haproxy %s (pid %d) serving the front on port %d", "started" if self.starts == 1 else "restarted",
                 self.process.pid, self.port)
        done = self._on_start()
        if done is not None:
            await done

    def _inherited(self) -> tuple[int, ...]:
        """The sockets HAProxy binds as fd@N: the public one, and the metrics one if any."""
        return (self.listener.fileno(),) + ((self.metrics_listener.fileno(),) if self.metrics_listener else ())

    async def _wait_answering(self) -> None:
        """Until the runtime API answers (HAProxy has parsed its configuration and bound)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_SECONDS
        while True:
            if self.process.returncode is not None:
                raise OSError(f"haproxy exited with {self.process.returncode} at start (config {self.config_file})")
            try:
                await self.client.run("show info")
                return
            except RuntimeApiError:
                if loop.time() > deadline:
                    self.process.kill()
                    raise OSError(f"haproxy did not answer within {START_TIMEOUT_SECONDS:g}s") from None
                await asyncio.sleep(0.02)

    async def _watch_exits(self) -> None:
        while True:
            returncode = await self.process.wait()
            if self._stopping:
                return
            log.error("haproxy (pid %d) exited with %s; restarting it", self.process.pid, returncode)
            await asyncio.sleep(RESTART_DELAY_SECONDS)
            try:
                await self._spawn()
            except OSError as e:
                log.error("haproxy restart failed: %s", e)
                await asyncio.sleep(RESTART_DELAY_SECONDS)

    async def stop(self, grace: float = 5.0) -> None:
        """Soft-stop (SIGUSR1: open calls finish), SIGKILL after `grace` seconds."""
        self._stopping = True
        if self._watch:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        process = self.process
        if process and process.returncode is None:
            process.send_signal(signal.SIGUSR1)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        self.listener.close()
        if self.metrics_listener:
            self.metrics_listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)

