"""The gRPC stubs of proto/interpreter/v1/interpreter.proto: generated, never committed.

The example's build (setup.py) generates them into its wheel; a checkout (the
tests, client.py, the e2e check) generates them in place with ensure(), next to
the .proto (ignored by git), as `pip install -e .` does for proto/myservice.
"""
from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parents[1] / "proto"
PROTO = "interpreter/v1/interpreter.proto"
MODULES = ("interpreter.v1.interpreter_pb2", "interpreter.v1.interpreter_pb2_grpc")


def generate(out: Path = PROTO_ROOT) -> None:
    """protoc (grpcio-tools) from PROTO_ROOT into `out`, each file replaced whole
    (two test runs at once never see half a file)."""
    from grpc_tools import protoc  # a build and test dependency only
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}", str(PROTO_ROOT / PROTO)]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed for {PROTO}")
        for made in Path(tmp).rglob("*.py*"):
            target = out / made.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(made, target)


def ensure() -> None:
    """Make `interpreter.v1` importable from a checkout: PROTO_ROOT on sys.path,
    the stubs generated when missing or older than the .proto."""
    if str(PROTO_ROOT) not in sys.path:
        sys.path.insert(0, str(PROTO_ROOT))
    source = PROTO_ROOT / PROTO
    generated = [PROTO_ROOT / (m.replace(".", "/") + ".py") for m in MODULES]
    if not source.exists():  # an installed wheel: the stubs came with it
        return
    if any(not g.exists() or g.stat().st_mtime < source.stat().st_mtime for g in generated):
        generate()
        importlib.invalidate_caches()
