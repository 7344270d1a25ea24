"""interpreter.v1.Interpreter: a thin adapter from gRPC to the engine. The SDK
(myservice_instance) wraps every call: the session rules (the first Run binds
this instance to its session), the idle clock, Shutdown's exit."""
from __future__ import annotations

import asyncio
import concurrent.futures

import grpc

import myservice_instance
from interpreter.v1 import interpreter_pb2 as pb
from interpreter.v1 import interpreter_pb2_grpc as pb_grpc

from .engine import Interpreter


class InterpreterServicer(pb_grpc.InterpreterServicer):
    """`executor` runs the engine's blocking calls: one thread for the instance's
    whole life, because the worker process is killed (PR_SET_PDEATHSIG) when the
    thread that started it ends, and one call at a time is the engine's rule anyway."""

    def __init__(self, engine: Interpreter, *, instance: myservice_instance.Instance,
                 executor: concurrent.futures.ThreadPoolExecutor) -> None:
        self._engine = engine
        self._instance = instance
        self._executor = executor

    async def Run(self, request: pb.RunRequest, context: grpc.aio.ServicerContext) -> pb.RunResponse:
        result = await asyncio.get_running_loop().run_in_executor(self._executor, self._engine.run, request.code)
        return pb.RunResponse(stdout=result.stdout, stderr=result.stderr, error=result.error)

    @myservice_instance.ends_session
    async def Shutdown(self, request: pb.ShutdownRequest, context: grpc.aio.ServicerContext) -> pb.ShutdownResponse:
        return pb.ShutdownResponse(pod_name=self._instance.pod_name)
