"""The SDK (myservice_instance.Instance) with a service that is not ours: a made-up
`sdktest.v1.Notes` of protobuf's wrapper messages, served by a real grpc.aio server
and called over loopback."""
from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from google.protobuf import empty_pb2, wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

import myservice_instance
from myservice_instance import InstanceSettings

SERVICE = "sdktest.v1.Notes"
S = wrappers_pb2.StringValue


class Notes:
    """Per-session state: the notes of the one session this process serves."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    async def Add(self, request, context):
        self.notes.append(request.value)
        return S(value=",".join(self.notes))

    async def Who(self, request, context):
        session = myservice_instance.session_of(context)
        return S(value=f"{session.user}@{session.session_id}")

    async def Replay(self, request, context):
        for note in self.notes:
            yield S(value=note)

    async def Wait(self, request, context):  # a call that stays in flight until cancelled
        await asyncio.sleep(60)
        return S()

    @myservice_instance.ends_session
    async def End(self, request, context):
        return S(value=f"{len(self.notes)} notes")


def add_generic(servicer, server) -> None:
    """As a hand-made service registers itself: one generic handler."""
    unary = {name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name), request_deserializer=S.FromString,
                                                       response_serializer=S.SerializeToString)
             for name in ("Add", "Who", "Wait")}
    unary["End"] = grpc.unary_unary_rpc_method_handler(servicer.End, request_deserializer=empty_pb2.Empty.FromString,
                                                       response_serializer=S.SerializeToString)
    unary["Replay"] = grpc.unary_stream_rpc_method_handler(servicer.Replay, request_deserializer=S.FromString,
                                                           response_serializer=S.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, unary),))


def add_registered(servicer, server) -> None:
    """As protoc's generated add_*Servicer_to_server does (grpcio >= 1.63): both ways."""
    handlers = {
        "Add": grpc.unary_unary_rpc_method_handler(servicer.Add, request_deserializer=S.FromString,
                                                   response_serializer=S.SerializeToString),
        "End": grpc.unary_unary_rpc_method_handler(servicer.End, request_deserializer=empty_pb2.Empty.FromString,
                                                   response_serializer=S.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


def settings(**changes) -> InstanceSettings:
    values = dict(host="127.0.0.1", port=0, pod_name="sdk-pod", idle_timeout=0, max_lifetime=0, termination_log="")
    values.update(changes)
    return InstanceSettings(**values)


def md(session_id: str, user: str | None = None):
    return (("session-id", session_id),) + ((("myservice-user", user),) if user is not None else ())


class Client:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel

    def unary(self, name: str, request, metadata):
        return self.channel.unary_unary(f"/{SERVICE}/{name}", request_serializer=type(request).SerializeToString,
                                        response_deserializer=S.FromString)(request, metadata=metadata, timeout=5)

    async def replay(self, metadata) -> list[str]:
        call = self.channel.unary_stream(f"/{SERVICE}/Replay", request_serializer=S.SerializeToString,
                                         response_deserializer=S.FromString)(S(), metadata=metadata, timeout=5)
        return [r.value async for r in call]


@pytest.fixture
async def serving():
    """serving(instance, **settings) -> (Client, task of instance.serve(), Running)."""
    started = []

    async def start(instance, **changes):
        task = asyncio.create_task(instance.serve(settings(**changes)))
        while instance._running is None:  # noqa: SLF001 - until it listens (start() returned)
            if task.done():
                task.result()  # raises what serve() failed with
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # serve() sets its timer and signals right after start()
        running = instance._running  # noqa: SLF001
        channel = grpc.aio.insecure_channel(running.address)
        started.append((task, channel, instance))
        return Client(channel), task, running

    yield start
    for task, channel, instance in started:
        await channel.close()
        instance.stop()
        await asyncio.wait_for(task, 10)


def notes_instance(add=add_generic, **kwargs) -> tuple[myservice_instance.Instance, Notes]:
    instance = myservice_instance.Instance(**kwargs)
    notes = Notes()
    instance.add_servicer(add, notes)
    return instance, notes


async def error_of(awaitable):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await awaitable
    return e.value.code(), e.value.details()


@pytest.mark.parametrize("add", [add_generic, add_registered])
async def test_state_is_kept_and_the_first_call_binds(serving, add):
    instance, _ = notes_instance(add)
    client, _, _ = await serving(instance)
    assert (await client.unary("Add", S(value="a"), md("s1"))).value == "a"
    assert (await client.unary("Add", S(value="b"), md("s1"))).value == "a,b"
    assert instance.session_id == "s1"
    assert await error_of(client.unary("Add", S(value="x"), md("s2"))) == (
        grpc.StatusCode.INTERNAL, "Session conflict: was=s1, now=s2")


async def test_ending_rules_and_the_end(serving):
    instance, _ = notes_instance()
    client, task, _ = await serving(instance)
    assert await error_of(client.unary("End", empty_pb2.Empty(), md("s1"))) == (
        grpc.StatusCode.PERMISSION_DENIED, "Server session is not set")
    await client.unary("Add", S(value="a"), md("s1"))
    assert await error_of(client.unary("End", empty_pb2.Empty(), md("s2"))) == (
        grpc.StatusCode.PERMISSION_DENIED, "Client session mismatch: client=s2, server=s1")
    assert not task.done()  # refused calls end nothing
    assert (await client.unary("End", empty_pb2.Empty(), md("s1"))).value == "1 notes"
    assert await asyncio.wait_for(task, 10) == 0  # answered, then ended


async def test_after_the_end_a_call_is_told_the_session_has_ended(serving):
    instance, _ = notes_instance()
    client, task, running = await serving(instance)
    await client.unary("Add", S(value="a"), md("s1"))
    waiting = asyncio.ensure_future(client.unary("Wait", S(), md("s1")))  # holds the grace open
    await asyncio.sleep(0.1)
    await client.unary("End", empty_pb2.Empty(), md("s1"))
    assert instance.binding.ended
    waiting.cancel()
    assert await asyncio.wait_for(task, 10) == 0


async def test_without_session_rules_any_session_is_served(serving):
    instance, notes = notes_instance(bind_sessions=False)
    client, task, _ = await serving(instance)
    await client.unary("Add", S(value="a"), md("s1"))
    assert (await client.unary("Add", S(value="b"), md("s2"))).value == "a,b"
    assert instance.session_id is None
    await client.unary("End", empty_pb2.Empty(), md("s3"))
    assert await asyncio.wait_for(task, 10) == 0


@pytest.mark.parametrize("bind_sessions", [True, False])
async def test_while_it_ends_a_new_call_is_told_has_ended_at_once(serving, bind_sessions):
    instance, _ = notes_instance(bind_sessions=bind_sessions)
    client, task, _ = await serving(instance)
    await client.unary("Add", S(value="a"), md("s1"))
    waiting = asyncio.ensure_future(client.unary("Wait", S(), md("s1")))  # in flight: the server drains
    await asyncio.sleep(0.1)
    instance.stop()  # as a limit or SIGTERM does
    await asyncio.sleep(0.1)
    ended = (grpc.StatusCode.FAILED_PRECONDITION, "session s1 has ended; log in with a new session_id")
    loop = asyncio.get_running_loop()
    began = loop.time()
    for call in (client.unary("Add", S(value="b"), md("s1")), client.unary("End", empty_pb2.Empty(), md("s1")),
                 client.replay(md("s1"))):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert (e.value.code(), e.value.details()) == ended
    with pytest.raises(grpc.aio.AioRpcError) as e:  # another session's call: the rules still say so
        await client.unary("Add", S(value="c"), md("s2"))
    assert (e.value.code(), e.value.details()) == (
        (grpc.StatusCode.INTERNAL, "Session conflict: was=s1, now=s2") if bind_sessions else
        (grpc.StatusCode.FAILED_PRECONDITION, "session s2 has ended; log in with a new session_id"))
    assert loop.time() - began < 1.0
    assert not task.done()  # still serving: the call in flight has its grace
    waiting.cancel()
    await asyncio.wait_for(task, 2)  # then it stops at once
    assert task.result() == 0


async def test_session_of_gives_the_gateways_user_decoded(serving):
    instance, _ = notes_instance(bind_sessions=False)
    client, _, _ = await serving(instance)
    assert (await client.unary("Who", S(), md("s1", "Zo%C3%AB%20K"))).value == "Zoë K@s1"
    assert (await client.unary("Who", S(), (("x", "y"),))).value == "@"  # not through a gateway


async def test_health_serves_every_service_and_turns_not_serving_at_the_end(serving):
    instance, _ = notes_instance()
    client, task, _ = await serving(instance)
    health = health_pb2_grpc.HealthStub(client.channel)
    for name in ("", SERVICE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    instance.stop()
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert await asyncio.wait_for(task, 10) == 0


async def test_undecodable_bytes_are_a_malformed_request(serving):
    instance, _ = notes_instance()
    client, _, _ = await serving(instance)
    raw = client.channel.unary_unary(f"/{SERVICE}/Add")
    assert await error_of(raw(b"\xff\xff\xff", metadata=md("s1"), timeout=5)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "malformed request")
    assert instance.session_id is None  # refused before the rules: it bound nothing


async def test_idle_timeout_ends_with_its_reason_and_health_checks_do_not_count(serving, tmp_path):
    log = tmp_path / "termination-log"
    instance, _ = notes_instance()
    client, task, _ = await serving(instance, idle_timeout=0.5, termination_log=str(log))
    health = health_pb2_grpc.HealthStub(client.channel)
    loop = asyncio.get_running_loop()
    begun = loop.time()
    for _ in range(4):  # health checks until 0.4 s: no call of the session, so no later end
        await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        await asyncio.sleep(0.1)
    assert await asyncio.wait_for(task, 10) == 0
    assert 0.35 < loop.time() - begun < 0.85  # 0.5 s from its start; a counted check would push it past 0.9 s
    assert log.read_text() == "IdleTimeout: no call for 0.5s"


async def test_an_open_call_keeps_it_alive_and_a_cancel_is_one_info_line(serving, caplog):
    instance, _ = notes_instance()
    client, task, running = await serving(instance, idle_timeout=0.3)
    caplog.set_level(logging.INFO, logger="myservice.instance")
    waiting = client.unary("Wait", S(), md("s1"))
    await asyncio.sleep(0.8)  # longer than the idle timeout, with a call in flight
    assert not task.done() and running.activity.in_flight == 1
    waiting.cancel()
    await asyncio.sleep(0.2)
    assert running.activity.in_flight == 0
    lines = [r for r in caplog.records if "cancelled" in r.getMessage()]
    assert [(r.levelno, r.getMessage(), r.exc_info) for r in lines] == [
        (logging.INFO, f"/{SERVICE}/Wait: cancelled by the client", None)]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert await asyncio.wait_for(task, 10) == 0  # then idles out


async def test_a_pool_member_starts_its_clocks_at_its_first_call(serving, tmp_path):
    log = tmp_path / "termination-log"
    instance, _ = notes_instance()
    client, task, _ = await serving(instance, idle_timeout=0.3, wait_for_claim=True, termination_log=str(log))
    await asyncio.sleep(0.8)  # unclaimed: no clock runs
    assert not task.done()
    await client.unary("Add", S(value="a"), md("s1"))
    assert await asyncio.wait_for(task, 10) == 0
    assert log.read_text() == "IdleTimeout: no call for 0.3s"


async def test_shutdown_after_ends_once_the_answer_is_out(serving):
    instance = myservice_instance.Instance()

    class Quitter:
        async def Add(self, request, context):
            if request.value == "quit":
                instance.shutdown_after(context)
            return S(value="bye" if request.value == "quit" else "ok")

    instance.add_servicer(lambda servicer, server: server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler(SERVICE, {"Add": grpc.unary_unary_rpc_method_handler(
            servicer.Add, request_deserializer=S.FromString, response_serializer=S.SerializeToString)}),)), Quitter())
    client, task, _ = await serving(instance)
    assert (await client.unary("Add", S(value="x"), md("s1"))).value == "ok"
    assert not task.done()
    assert (await client.unary("Add", S(value="quit"), md("s1"))).value == "bye"
    assert await asyncio.wait_for(task, 10) == 0


async def test_streams_and_reflection_list_the_service(serving):
    from grpc_reflection.v1alpha import reflection_pb2

    instance, _ = notes_instance()
    client, _, _ = await serving(instance)
    await client.unary("Add", S(value="a"), md("s1"))
    await client.unary("Add", S(value="b"), md("s1"))
    assert await client.replay(md("s1")) == ["a", "b"]
    call = client.channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)

    async def one():
        yield reflection_pb2.ServerReflectionRequest(list_services="")
    replies = [r async for r in call(one())]
    assert {s.name for s in replies[0].list_services_response.service} == {
        SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection"}
