"""Open N sessions through a gateway and leave them Ready (bench/operator_api_requests.sh:
the operator's requests while sessions sit idle).

    python bench/open_sessions.py GATEWAY [--sessions N]
"""
from __future__ import annotations

import argparse
import uuid

import grpc

from myservice import contract
from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gateway", help="host:port of the gateway")
    parser.add_argument("--sessions", type=int, default=2, help="how many (default %(default)s)")
    parser.add_argument("--user", default="TestUser")
    parser.add_argument("--password", default="TestPassword")
    args = parser.parse_args()
    with grpc.insecure_channel(args.gateway) as channel:
        stub = pb_grpc.MyServiceStub(channel)
        for _ in range(args.sessions):
            sid = f"bench-idle-{uuid.uuid4().hex[:8]}"
            token = stub.Login(pb.LoginRequest(username=args.user, password=args.password, session_id=sid)).token
            stub.MyServiceEcho(pb.EchoRequest(value="x"), timeout=90,
                               metadata=[(contract.AUTHORIZATION, token), (contract.SESSION_ID, sid)])


if __name__ == "__main__":
    main()
