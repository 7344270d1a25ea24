"""The front: HAProxy as the gateway's data plane, the Python gateway as its
control plane (issue 18).

HAProxy owns the public port. Login, reflection, health and anything it cannot
route go to the Python gateway on a private Unix socket, untouched. A call of a
forwarded method is checked by HAProxy itself (the same rules, codes and texts
as auth.py), then goes straight to its session's instance when the session is in
HAProxy's map (`<user>/<session_id>` -> `host:port`), else to Python.

One concern per module:
- config.py: the HAProxy configuration, a pure function of the front's settings;
- runtime.py: the runtime API client (asyncio, Unix socket);
- mapkeeper.py: the map's wanted content and the commands that make it so (pure);
- mapsync.py: applies those commands in order and rebuilds the map when asked;
- files.py: the files HAProxy runs on (haproxy.cfg, the map, the runtime socket) in one directory;
- supervisor.py: the haproxy child process (dies with the gateway, restarted if it dies);
- sidecar.py: the haproxy run apart (the chart's front container), watched, given key and map;
- fronttls.py: TLS at the front (HAProxy's private PEM, rotations through the runtime API);
- front.py: assembles them for server.py.
"""
