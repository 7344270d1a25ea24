"""What a real instance process writes to its stderr when a client goes away."""
import asyncio
import signal

import grpc

from myservice.v1 import myservice_pb2 as pb
from myservice.v1 import myservice_pb2_grpc as pb_grpc

from ..conftest import BIN


async def test_a_cancelled_blocked_stream_logs_one_info_line_and_no_traceback(tmp_path):
    stderr_path = tmp_path / "stderr"
    with open(stderr_path, "wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "myservice"), "instance", "--host", "127.0.0.1", "--port", "0", "--announce-port",
            stdout=asyncio.subprocess.PIPE, stderr=stderr)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith("LISTENING "), line
        metadata = (("session-id", "quiet-cancel"),)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{line.split()[1]}") as channel:
            stub = pb_grpc.MyServiceStub(channel)
            # We read one answer and no more: the instance's sends block on flow control. After
            # a short wait grpc cancels its handler; after a longer one its pending send fails
            # (grpc.aio's "ExecuteBatchError raised in core by servicer method" ERROR).
            for wait in (0.1, 1.0, 1.5):
                before = stderr_path.read_text()
                call = stub.MyServiceEchoStream(pb.EchoStreamRequest(value="x" * 1000, count=10**7),
                                                metadata=metadata)
                await call.read()
                await asyncio.sleep(wait)
                call.cancel()
                await asyncio.sleep(0.5)
                written = stderr_path.read_text()[len(before):]
                assert "Traceback" not in written, written
                # One line, the instance's own (grpc's ERROR for the failed send is dropped).
                assert [x.split(" ", 2)[2] for x in written.splitlines()] == [
                    "myservice.instance INFO /myservice.v1.MyService/MyServiceEchoStream: cancelled by the client"], written
            # The instance still serves.
            reply = await stub.MyServiceEcho(pb.EchoRequest(value="v"), metadata=metadata, timeout=5)
            assert reply.client_session_id == "quiet-cancel"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
    assert "Traceback" not in stderr_path.read_text()
