"""The instance image's cold start, checked inside it by hack/images/build.sh's smoke
tests (issue 17, item 4): `myservice instance`, started as the image starts it
(PYTHONDONTWRITEBYTECODE=1: nothing is compiled and kept at run time), loads every
module from valid byte code until it listens (a missing or stale .pyc would be
compiled again at every start), and the Kubernetes client is not in the image."""
import importlib.util
import subprocess
import sys
import tempfile

present = [name for name in ("kubernetes", "kopf") if importlib.util.find_spec(name)]
assert not present, f"in the instance image: {present}"

with tempfile.TemporaryFile("w+") as log:  # a file: -v writes more than a pipe holds before LISTENING
    proc = subprocess.Popen([sys.executable, "-v", "/opt/myservice/bin/myservice", "instance", "--host", "127.0.0.1",
                             "--port", "0", "--announce-port"], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    log.seek(0)
    verbose = log.read()
assert line.startswith("LISTENING "), (line, verbose[-2000:])
loaded = [l for l in verbose.splitlines() if l.startswith("# code object from ")]
from_source = [l for l in loaded if not l.rstrip("'").endswith(".pyc")]
assert loaded and not from_source, f"compiled at start: {from_source}"
print(f"ok: {len(loaded)} modules from byte code")
