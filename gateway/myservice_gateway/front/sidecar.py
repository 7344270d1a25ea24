"""The HAProxy of the front run apart from the gateway: the chart's `front`
container, beside the `gateway` container in one pod (MYSERVICE_FRONT_DIRECTORY).

Why apart: a gateway that crashes or restarts leaves HAProxy, its public port and
its map in place, so the calls of Ready sessions go on (they pass HAProxy alone),
and Login and first calls fail fast with UNAVAILABLE until the gateway is back.

The two share one directory (an emptyDir in memory, mode 0700 files of one uid):
- the gateway writes haproxy.cfg there at every start (the same pure render as
  for the child: the key is in this file only), and an empty map when there is
  none; the front container waits for the file, then runs HAProxy on it;
- HAProxy's runtime socket and the gateway's own socket (gateway.sock) are there.

HAProxy binds the public port (and the metrics port) itself. The gateway asks its
runtime API once a period who it is (`show info`: Pid and Start_time_sec); a new
HAProxy (its container restarted: an empty map) or one that was away is given this
gateway's signing key (`set var`: a gateway restarted after its key was rotated must
not find HAProxy checking tokens with the old one) and the whole map again
(on_start), as the child's supervisor does after a restart. The rest of haproxy.cfg
comes from the pod's environment, which does not change in a pod's life.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable

from . import config as front_config
from .files import GATEWAY_SOCKET_NAME, HaproxyFiles
from .fronttls import FrontTls
from .runtime import RuntimeApiError, RuntimeClient

log = logging.getLogger("myservice.gateway.front")

PERIOD_SECONDS = 1.0


def identity(show_info: str) -> tuple[str, str] | None:
    """(Pid, Start_time_sec) from `show info`: a restarted HAProxy differs in one of them
    (in a container its pid is always the same)."""
    fields = dict(re.findall(r"^(Pid|Start_time_sec): *(\S+)", show_info, re.M))
    return (fields["Pid"], fields["Start_time_sec"]) if len(fields) == 2 else None


class HaproxySidecar:
    """The HAProxy another process runs on `directory`'s haproxy.cfg, watched; `on_start`
    runs when it is first seen and whenever a new one (or the same, back from away) is."""

    def __init__(self, *, directory: str, host: str, port: int, jwt_key: bytes, issuer: str, audience: str,
                 methods: tuple[str, ...], on_start: Callable[[], Awaitable[None] | None] = lambda: None,
                 tls: FrontTls | None = None, trusted_proxies: tuple[str, ...] = (),
                 proxy_protocol: bool = False, metrics_host: str = "127.0.0.1", metrics_port: int = 0,
                 period: float = PERIOD_SECONDS) -> None:
        self.port = port
        self.metrics_port = metrics_port or None
        self.files = HaproxyFiles(
            directory, bind=f"{host}:{port}", gateway_socket=os.path.join(directory, GATEWAY_SOCKET_NAME),
            metrics_bind=f"{metrics_host}:{metrics_port}" if metrics_port else None, tls=tls, jwt_key=jwt_key,
            issuer=issuer, audience=audience, methods=methods, trusted_proxies=trusted_proxies,
            proxy_protocol=proxy_protocol)
        self.config, self.config_file, self.map_file = self.files.config, self.files.config_file, self.files.map_file
        self.client = RuntimeClient(self.files.runtime_socket)
        self.period = period
        self.starts = 0  # HAProxys seen (the first, then each new one)
        self.seen: tuple[str, str] | None = None
        self._on_start = on_start
        self._watch: asyncio.Task | None = None
        self._away = False

    async def start(self) -> None:
        """Write the files and watch. HAProxy need not be there yet: the gateway serves
        behind it as soon as it comes (its container may start after this one)."""
        self.files.write()
        await self.check()
        self._watch = asyncio.get_running_loop().create_task(self._watch_haproxy(), name="front-sidecar-watch")

    async def check(self) -> bool:
        """Ask HAProxy who it is; run on_start when it is new or back. True when it answered."""
        try:
            now = identity(await self.client.run("show info"))
        except RuntimeApiError as e:
            if not self._away:
                self._away = True
                log.warning("HAProxy (the front container) does not answer: %s; its map is rebuilt once it does",
                            e)
            return False
        if now is None:
            return False
        if now != self.seen or self._away:
            try:
                # The key first: a gateway back after its key was rotated (the Secret changed, its
                # container restarted) finds HAProxy still checking tokens with the old one.
                await self.client.set_binary_variable(front_config.KEY_VARIABLE, self.config.jwt_key)
            except RuntimeApiError as e:
                if not self._away:
                    log.error("HAProxy (the front container) did not take the signing key: %s; tried again "
                              "every %gs", e, self.period)
                self._away = True
                return False
            self.starts += 1
            log.info("HAProxy (pid %s, started %s) %s", now[0], now[1],
                     "is new: giving it the whole map" if self.seen and now != self.seen else "answers")
            self.seen, self._away = now, False
            done = self._on_start()
            if done is not None:
                await done
        return True

    async def _watch_haproxy(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            await self.check()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop watching. HAProxy is not ours to stop (its container's preStop drains it);
        its map stays as it is, the calls of Ready sessions go on."""
        if self._watch:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
