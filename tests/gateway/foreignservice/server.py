"""A gRPC service that is not ours: `python server.py GEN_DIR` serves
foreignkv.v1.KeyValue (stubs generated into GEN_DIR from kv.proto) and the
standard grpc.health.v1, on $MYSERVICE_INSTANCE_HOST:$MYSERVICE_INSTANCE_PORT,
as the instance contract asks (docs/instances.md) and with nothing else of it:
no session rules, no limits. Written as a service author in another stack would,
with plain grpcio (sync server, threads)."""
import os
import sys
import threading
from concurrent import futures

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import kv_pb2  # noqa: E402
import kv_pb2_grpc  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402

QUIT = threading.Event()


class KeyValue(kv_pb2_grpc.KeyValueServicer):
    def __init__(self):
        self.values = {}

    def Set(self, request, context):
        self.values[request.key] = request.value
        return kv_pb2.SetReply(size=len(self.values))

    def Get(self, request, context):
        return kv_pb2.GetReply(value=self.values.get(request.key, ""), found=request.key in self.values)

    def Whoami(self, request, context):
        metadata = context.invocation_metadata()
        return kv_pb2.WhoamiReply(
            session_ids=[v for k, v in metadata if k == "session-id"],
            users=[v for k, v in metadata if k == "myservice-user"],
            keys=[k for k, _ in metadata], pod_name=os.environ.get("POD_NAME", ""),
            env_session_id=os.environ.get("MYSERVICE_SESSION_ID", ""), pid=os.getpid(),
            env_names=sorted(k for k in os.environ if k.startswith("MYSERVICE_")))

    def Quit(self, request, context):
        context.add_callback(QUIT.set)  # once the answer is sent
        return kv_pb2.QuitReply()


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    kv_pb2_grpc.add_KeyValueServicer_to_server(KeyValue(), server)
    status = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(status, server)
    server.add_insecure_port(f"{os.environ['MYSERVICE_INSTANCE_HOST']}:{os.environ['MYSERVICE_INSTANCE_PORT']}")
    server.start()
    status.set("", health_pb2.HealthCheckResponse.SERVING)
    QUIT.wait()
    with open(os.environ["MYSERVICE_TERMINATION_LOG"], "w") as f:
        f.write("Quit: asked by its client")
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
