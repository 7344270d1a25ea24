"""The wheelhouse step of build.sh: what it asks of the host Python, the project wheel
and the dependency wheels. Run by build.sh with the host Python ($MYSERVICE_PYTHON),
so it imports nothing outside the standard library.

    wheelhouse.py check-python               exit 1 unless this is Python 3.11 with pip
    wheelhouse.py build-requires PYPROJECT   the build requirements, one a line
    wheelhouse.py stubs WHEEL                fail unless the wheel holds the gRPC stubs
    wheelhouse.py requirements WHEEL EXCLUDE OUT
                                             OUT/req-gateway.txt: the wheel's requirements;
                                             OUT/req-service.txt: the same without EXCLUDE
    wheelhouse.py fit DIR                    fail unless every wheel in DIR fits the image
"""
from __future__ import annotations

import os
import re
import sys
import zipfile
from email.parser import Parser

IMAGE_PYTHON = (3, 11)
IMAGE_GLIBC_MINOR = 36  # Debian bookworm's glibc 2.36
# Platform tags older than PEP 600 that bookworm's glibc runs.
LEGACY_PLATFORMS = {"any", "linux_x86_64", "manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"}


def check_python() -> int:
    try:
        import pip  # noqa: F401
    except ImportError:
        return 1
    return 0 if sys.version_info[:2] == IMAGE_PYTHON else 1


def build_requires(pyproject: str) -> list[str]:
    import tomllib  # after check_python: 3.11

    with open(pyproject, "rb") as f:
        return tomllib.load(f)["build-system"]["requires"]


def stubs(wheel: str) -> list[str]:
    return [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(("_pb2.py", "_pb2_grpc.py"))]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(wheel: str) -> list[str]:
    """The wheel's Requires-Dist lines, extras left out."""
    z = zipfile.ZipFile(wheel)
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    lines = Parser().parsestr(z.read(meta).decode()).get_all("Requires-Dist") or []
    return [r for r in lines if "extra ==" not in r]


def without(reqs: list[str], exclude: list[str]) -> list[str]:
    left_out = {normalized(e) for e in exclude}
    return [r for r in reqs if normalized(re.match(r"[A-Za-z0-9._-]+", r).group()) not in left_out]


def fits(wheel_name: str) -> bool:
    """A pure or CPython 3.11 (or older abi3) wheel for a glibc the image has."""
    py, abi, plats = wheel_name[:-len(".whl")].split("-")[-3:]
    cp = f"cp{IMAGE_PYTHON[0]}{IMAGE_PYTHON[1]}"
    ok_py = any(t in ("py3", cp) or (abi == "abi3" and re.fullmatch(r"cp3\d+", t) and int(t[3:]) <= IMAGE_PYTHON[1])
                for t in py.split("."))
    ok_plat = any(p in LEGACY_PLATFORMS
                  or (m := re.fullmatch(r"manylinux_2_(\d+)_x86_64", p)) and int(m.group(1)) <= IMAGE_GLIBC_MINOR
                  for p in plats.split("."))
    return bool(ok_py and ok_plat)


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "check-python":
        return check_python()
    if command == "build-requires":
        print("\n".join(build_requires(args[0])))
    elif command == "stubs":
        found = stubs(args[0])
        if not found:
            sys.exit("the project wheel holds no generated gRPC stubs")
        print("   stubs:", ", ".join(found), file=sys.stderr)
    elif command == "requirements":
        wheel, exclude, out = args
        reqs = requirements(wheel)
        with open(os.path.join(out, "req-gateway.txt"), "w") as f:
            f.write("\n".join(reqs) + "\n")
        with open(os.path.join(out, "req-service.txt"), "w") as f:
            f.write("\n".join(without(reqs, exclude.split())) + "\n")
    elif command == "fit":
        bad = [w for w in sorted(os.listdir(args[0])) if not fits(w)]
        if bad:
            sys.exit(f"wheels that do not fit the image (CPython 3.11, glibc 2.{IMAGE_GLIBC_MINOR}): " + " ".join(bad))
    else:
        sys.exit(f"unknown command {command!r}: {__doc__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
