"""The gateway's /metrics: series move with real calls through a real gateway, and no
label names a session, user or pod. Beside it /livez, the gateway's event loop alive."""
import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from myservice.v1 import myservice_pb2 as pb
from myservice_gateway.liveness import LIVENESS_PATH, LIVENESS_WAIT, LoopLiveness

from ..conftest import md


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    status, text = get(port, "/metrics")
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_series_move_with_calls_and_carry_no_session_labels(make_gateway):
    port = free_port()
    gw = await make_gateway(metrics_port=port)
    # Behind the HAProxy front the Python series count only the calls that reach Python
    # (docs/metrics.md): a session's first call (it starts the instance), not the later
    # ones (straight to the instance) nor HAProxy's own refusals (the bad token).
    front = gw.gateway.front
    metadata = await gw.session("metrics-1")
    with pytest.raises(grpc.aio.AioRpcError):
        await gw.login("metrics-2", password="wrong")
    for i in range(3):
        await gw.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=metadata)
        if front and i == 0:
            await front.map.settled()  # the session is in HAProxy's map: the next calls bypass Python
    with pytest.raises(grpc.aio.AioRpcError):
        await gw.stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=md("bad-token", "metrics-1"))
    with pytest.raises(grpc.aio.AioRpcError):  # made-up method names do not make new series
        await gw.channel.unary_unary("/myservice.v1.MyService/Nope")(b"", metadata=metadata)
    # a call is counted when its handler ends, which may be just after the client has its answer
    unimplemented = ("myservice_gateway_calls_total", (("code", "UNIMPLEMENTED"), ("method", "other")))
    for _ in range(50):
        samples = scrape(port)
        if unimplemented in samples:
            break
        await asyncio.sleep(0.1)

    echoes, refused = (1, 0) if front else (3, 1)
    assert samples[("myservice_gateway_calls_total", (("code", "OK"), ("method", "MyServiceEcho")))] == echoes
    assert samples.get(("myservice_gateway_calls_total",
                        (("code", "UNAUTHENTICATED"), ("method", "MyServiceEcho"))), 0) == refused
    assert samples[("myservice_gateway_calls_total", (("code", "UNIMPLEMENTED"), ("method", "other")))] == 1
    assert samples[("myservice_gateway_logins_total", (("outcome", "OK"),))] == 1
    assert samples[("myservice_gateway_logins_total", (("outcome", "PERMISSION_DENIED"),))] == 1
    assert samples[("myservice_gateway_call_duration_seconds_count", (("method", "MyServiceEcho"),))] == \
        echoes + refused
    assert samples[("myservice_gateway_session_start_seconds_count", (("pod", "cold"),))] == 1  # one first call waited
    assert samples[("myservice_gateway_session_start_seconds_count", (("pod", "warm"),))] == 0  # no warm pool
    assert samples[("myservice_gateway_live_sessions", ())] == 1
    label_values = {v for (_, labels) in samples for _, v in labels}
    assert not label_values & {"metrics-1", "metrics-2", "TestUser", "myservice-local-1"}

    await gw.stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=metadata)
    shutdowns = scrape(port).get(("myservice_gateway_calls_total", (("code", "OK"), ("method", "MyServiceShutdown"))), 0)
    if not front:
        assert shutdowns == 1
        return
    # The fast path: HAProxy's own counter has the two later Echoes and the Shutdown, Python's none.
    assert shutdowns == 0
    stats = await front.haproxy.client.stats()
    assert int(stats[("instances", "BACKEND")]["stot"]) == 3


async def test_metrics_port_in_use_is_a_clear_error(make_gateway):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match=r"cannot serve metrics on 127.0.0.1:\d+"):
            await make_gateway(metrics_port=taken.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_livez_answers_while_the_event_loop_runs_and_503_when_it_is_wedged(make_gateway):
    """/livez (the chart's liveness of the gateway container behind the front) asks the
    gateway's event loop; /metrics answers on its own thread either way."""
    port = free_port()
    await make_gateway(metrics_port=port)
    assert await asyncio.to_thread(get, port, LIVENESS_PATH) == (200, "live\n")
    # The loop wedged (a blocking call on it) for longer than /livez waits.
    answers = []
    asked = threading.Thread(target=lambda: answers.extend([get(port, LIVENESS_PATH), get(port, "/metrics")[0]]))
    asked.start()
    time.sleep(LIVENESS_WAIT + 1.5)  # on the loop, on purpose
    asked.join(10)
    assert answers == [(503, f"the gateway's event loop did not run within {LIVENESS_WAIT:g} s\n"), 200]
    assert await asyncio.to_thread(get, port, LIVENESS_PATH) == (200, "live\n")


def test_loop_liveness_of_a_closed_loop():
    loop = asyncio.new_event_loop()
    loop.close()
    assert LoopLiveness(loop)() == (False, "the gateway's event loop is closed")
