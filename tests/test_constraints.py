"""constraints.txt: the exact versions the tests run with, consistent with pyproject.toml."""
from __future__ import annotations

import pathlib
import tomllib
from importlib import metadata

from packaging.requirements import Requirement

from tests import pins

PYPROJECT = tomllib.loads((pathlib.Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())


def test_every_runtime_and_test_requirement_is_pinned_within_its_range():
    project = PYPROJECT["project"]
    pinned = pins.pins()
    for line in project["dependencies"] + project["optional-dependencies"]["test"]:
        requirement = Requirement(line)
        version = pinned.get(pins.normalized(requirement.name))
        assert version is not None, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(version), f"constraints.txt's {requirement.name}=={version} is outside {line!r}"


def test_the_build_requirement_grpcio_tools_is_the_pinned_one():
    build = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    tools = next(r for r in build if r.name == "grpcio-tools")
    assert str(tools.specifier) == f"=={pins.pinned('grpcio-tools')}"


def test_the_tests_run_with_the_pinned_versions():
    installed = {pins.normalized(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differing = {name: (installed[name], version) for name, version in pins.pins().items()
                 if name in installed and installed[name] != version}
    assert not differing, f"installed differs from constraints.txt (installed, pinned): {differing}; run make"
