"""verify.sh's gRPC client: run inside the gateway image (python - PORT < this file), so the
host needs no grpcio. Health, MyServiceEcho with a session-id, MyServiceEchoStream, then
MyServiceShutdown against the instance on 127.0.0.1:PORT."""
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from myservice import contract
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc

target = f"127.0.0.1:{sys.argv[1]}"
channel = grpc.insecure_channel(target)
grpc.channel_ready_future(channel).result(timeout=30)
health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=contract.SERVICE), timeout=5)
assert health.status == health_pb2.HealthCheckResponse.SERVING, health
print(f"ok   health {contract.SERVICE}: SERVING", file=sys.stderr)
stub = pb_grpc.MyServiceStub(channel)
md = ((contract.SESSION_ID, "verify-session"),)
r = stub.MyServiceEcho(pb.EchoRequest(value="hello"), metadata=md, timeout=5)
assert (r.client_value, r.server_value, r.pod_name, r.server_session_id) == ("hello", contract.SERVER_VALUE, "verify-pod", "verify-session"), r
print(f"ok   MyServiceEcho -> {r.client_value!r} from {r.pod_name} (session {r.server_session_id})", file=sys.stderr)
rs = list(stub.MyServiceEchoStream(pb.EchoStreamRequest(value="s", count=3), metadata=md, timeout=5))
assert [x.index for x in rs] == [0, 1, 2], rs
print("ok   MyServiceEchoStream -> 3 messages", file=sys.stderr)
r = stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=md, timeout=5)
print(f"ok   MyServiceShutdown -> {r.server_method}", file=sys.stderr)
