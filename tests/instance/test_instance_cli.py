"""`myservice instance`, the instance image's command: it dispatches before the gateway's
parsers are built and imports none of the gateway's modules (issue 17, item 4: every
cold start pays its imports); the other subcommands still work. Real processes."""
import importlib.util
import re
import signal
import subprocess
import sys
from pathlib import Path

from ..conftest import BIN

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def test_instance_help_is_the_subcommands_help():
    own = run(str(BIN / "myservice"), "instance", "--help")
    assert own.returncode == 0, own.stderr
    assert own.stdout.startswith("usage: myservice instance [-h] [--host HOST] [--port PORT]")
    # The same text as the subcommand of the full parser (myservice up/gateway/... --help lists it).
    full = run(sys.executable, "-c", "from myservice_gateway.cli import build_parser; "
                                     "build_parser().parse_args(['instance', '--help'])")
    assert full.returncode == 0, full.stderr
    assert own.stdout == full.stdout


def test_instance_start_imports_nothing_of_the_gateway():
    """Up to serving: no gateway module but the console script's own (cli), no Kubernetes
    client, no ctypes (only --exit-with-parent needs it)."""
    proc = subprocess.Popen([sys.executable, "-X", "importtime", str(BIN / "myservice"), "instance",
                             "--host", "127.0.0.1", "--port", "0", "--announce-port"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("LISTENING ")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    imported = set(re.findall(r"^import time:.*\| +(\S+)$", stderr, re.M))
    assert "myservice_instance.app" in imported and "grpc_health.v1.health" in imported
    assert {m for m in imported if m.startswith("myservice_gateway")} == {"myservice_gateway", "myservice_gateway.cli"}
    assert not {m for m in imported if m.split(".")[0] in ("kubernetes", "kopf", "ctypes", "myservice_operator")}


def test_other_subcommands_still_parse():
    for argv in (["--help"], ["up", "--help"], ["gateway", "--help"], ["hash-password", "--help"]):
        done = run(str(BIN / "myservice"), *argv)
        assert done.returncode == 0 and done.stdout.startswith("usage: myservice"), (argv, done.stderr)
    bad = run(str(BIN / "myservice"), "nope")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def _bench():
    spec = importlib.util.spec_from_file_location("instance_start", REPO / "bench" / "instance_start.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    sys.path.insert(0, str(REPO / "bench"))  # its helpers (echo_latency)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "bench"))
    return module


def test_bench_reads_the_images_command_from_dockerfile_service():
    bench = _bench()
    argv, env = bench.image_command((REPO / "Dockerfile.service").read_text())
    assert argv == ["/opt/myservice/bin/myservice", "instance"]
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # ENTRYPOINT resets CMD, the last stage counts, continuation lines and comments.
    text = ('FROM a\nENTRYPOINT ["x"]\nFROM b\nENV A=1 \\\n    PYTHONFOO=2 \\\n# note\n    PYTHONBAR="3 4"\n'
            'CMD ["old"]\nENTRYPOINT ["/usr/bin/tini", "--", "/opt/v/bin/python3", "-m", "m"]\n')
    assert bench.image_command(text) == (["/opt/v/bin/python3", "-m", "m"], {"PYTHONFOO": "2", "PYTHONBAR": "3 4"})
    assert bench.local_argv(["/opt/v/bin/python3", "-m", "m"], {}) == [sys.executable, "-m", "m"]
    assert bench.local_argv(["/opt/v/bin/tool", "a"], {"tool": "pkg.mod:main"}) == [
        sys.executable, "-c", "import sys; from pkg.mod import main; sys.exit(main())", "a"]
