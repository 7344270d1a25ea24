"""Code that relies on a library's private internals runs only on a version it was
tested with (the pins are in constraints.txt): one check, used by the gateway's
finalstatus.py (grpc.aio) and the operator's kopffixes.py (kopf)."""
from __future__ import annotations

from importlib import metadata


def require_tested(distribution: str, tested: frozenset[str], *, module: str, canaries: str) -> None:
    """Raise RuntimeError, saying what to do, unless the installed `distribution`
    is one of the `tested` versions of `module` (whose `canaries` test file tells
    whether it still works with a new one, and whether it is still needed)."""
    version = metadata.version(distribution)
    if version not in tested:
        raise RuntimeError(
            f"{distribution} {version} is not a version {module} was tested with "
            f"({', '.join(sorted(tested))}): install the one pinned in constraints.txt, or review "
            f"{module} with {canaries} (its canaries tell whether it still works and is still needed) "
            f"and add the version to its tested set")
