"""myservice_instance: host your own gRPC service, one instance per session.

The platform (gateway, operator) runs one process of your service per client
session and sends it that session's calls only. docs/instances.md is the
contract any image must follow; this SDK follows it for a Python service, so
that you write only your servicer::

    import sys

    import myservice_instance
    from counter.v1 import counter_pb2, counter_pb2_grpc   # your own proto


    class Counter(counter_pb2_grpc.CounterServicer):
        def __init__(self) -> None:
            self.total = 0          # the session's state: this process is the session's alone

        async def Add(self, request, context):
            self.total += request.n
            user = myservice_instance.session_of(context).user   # verified by the gateway
            return counter_pb2.AddReply(total=self.total, user=user)

        @myservice_instance.ends_session                         # answer, then exit 0
        async def Close(self, request, context):
            return counter_pb2.CloseReply(total=self.total)


    if __name__ == "__main__":
        instance = myservice_instance.Instance()
        instance.add_servicer(counter_pb2_grpc.add_CounterServicer_to_server, Counter())
        sys.exit(instance.run())

What the SDK adds to your servicer:

- listens on $MYSERVICE_INSTANCE_HOST:$MYSERVICE_INSTANCE_PORT (or the flags
  --host/--port; `instance.run()` takes the same flags as `myservice instance`);
- serves grpc.health.v1.Health, SERVING under "" and each of your services, from the
  moment it listens (NOT_SERVING while it stops), and server reflection;
- the session rules (Instance(bind_sessions=False) to do without): the first call
  binds the instance to its session; another session's call gets INTERNAL
  "Session conflict: was=…, now=…"; an ends_session method only for the bound
  session ("Server session is not set" / "Client session mismatch: …");
- idle timeout and maximum lifetime (MYSERVICE_SESSION_IDLE_TIMEOUT_SECONDS,
  MYSERVICE_SESSION_MAX_LIFETIME_SECONDS), ended with exit 0 and the reason
  ("IdleTimeout: no call for 900s") in the termination log; every call of your
  services counts (an open stream is a call), health checks do not;
- the warm pool's claim wait (MYSERVICE_INSTANCE_WAIT_FOR_CLAIM=1: the clocks start
  at the claim signal SIGUSR1 or the session's first call);
- graceful ends: after ends_session, Instance.shutdown_after(context), Instance.stop(),
  SIGTERM/SIGINT or a limit, health NOT_SERVING, every new call answered
  FAILED_PRECONDITION "session … has ended" at once, up to 5 s for those in flight,
  then the server stops and the process exits 0;
- bytes that do not decode get INVALID_ARGUMENT "malformed request"; a client's
  cancel is one INFO log line, no traceback.

Handlers are async (grpc.aio): `async def` returning the answer, or an async
generator for a streaming answer.
"""
from .app import CLAIM_SIGNAL, STOP_GRACE_SECONDS, Instance, Running
from .calls import ends_session
from .limits import Ending, Limits
from .metadata import Session, session_of
from .settings import InstanceSettings

__all__ = ["CLAIM_SIGNAL", "STOP_GRACE_SECONDS", "Ending", "Instance", "InstanceSettings", "Limits", "Running",
           "Session", "ends_session", "session_of"]
