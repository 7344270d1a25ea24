"""Build hook: generate the gRPC stubs of proto/interpreter/v1/interpreter.proto into
the wheel (never committed; myservice_interpreter/stubs.py)."""
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from myservice_interpreter import stubs  # noqa: E402 - standard library only


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        stubs.generate()
        super().run()


setup(cmdclass={"build_py": BuildPyWithStubs})
