"""Two changes to kopf for many objects: its start in O(N), and no diff-base per event.

**Index pre-population in O(N), not O(N²).**

On start (and on a standby's takeover) kopf indexes every listed object before any
handler runs. Each object's worker makes a toggle in one shared ToggleSet, drops it
once the object is indexed, then waits until the set is "on" (all dropped). kopf
1.45 notifies every waiting worker at each drop, so N objects cost ~N²/2 wake-ups:
a restart with 2,000 sessions and their pods stalled ~70 s here, and 10,000 would
take hours.

A waiter's condition depends only on the set's overall state, so waking waiters is
needed only when that state flips. `FlipNotifyingToggleSet` notifies then and only
then on make/drop; a child toggle's own turn_to() still notifies as before.
`install()` makes kopf use it (kopf creates its sets from `aiotoggles.ToggleSet` when
it starts, so this must run before kopf.run).

**Only on a tested kopf.** The toggle set replaces a private class of kopf, which any
release may change: `install()` refuses a kopf version not in `TESTED_KOPF_VERSIONS` (the
pin is in constraints.txt; README, "Upgrading a pinned dependency").

**No diff-base.** For every event kopf builds the object's "essence" for its change
handlers' diffs: a deep copy of the body, plus a JSON read of the last one from an
annotation. Our handlers are event handlers and indexes only (handlers.py): no
change handler reads a diff, so `NoDiffBase` keeps none (seen in a profile of the
scale run: deepcopy under DiffBaseStorage.build on the event loop).
"""
from __future__ import annotations

from collections.abc import Iterable

import kopf
from kopf._cogs.aiokits import aiotoggles

from myservice_api import pins

# The kopf releases tests/operator/test_kopffixes.py passed with; constraints.txt pins one.
TESTED_KOPF_VERSIONS = frozenset({"1.45.2"})


class FlipNotifyingToggleSet(aiotoggles.ToggleSet):
    async def make_toggle(self, __val: bool = False, *, name: str | None = None) -> aiotoggles.Toggle:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            was_on = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != was_on:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self.drop_toggles([toggle])

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._condition:
            was_on = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != was_on:
                self._condition.notify_all()


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff-base storage that builds, reads and writes nothing (no change handlers)."""

    def build(self, *, body, extra_fields=None):
        return None

    def fetch(self, *, body):
        return None

    def store(self, *, body, patch, essence) -> None:
        return None


def require_tested_kopf() -> None:
    pins.require_tested("kopf", TESTED_KOPF_VERSIONS, module="myservice_operator/kopffixes.py",
                        canaries="tests/operator/test_kopffixes.py")


def install() -> None:
    """Make kopf build its toggle sets (index pre-population, peering pauses) from ours."""
    require_tested_kopf()
    current = aiotoggles.ToggleSet
    if current is FlipNotifyingToggleSet:
        return
    probe = current(all) if current is FlipNotifyingToggleSet.__base__ else None
    if probe is None or not all(hasattr(probe, attribute) for attribute in ("_toggles", "_condition")):
        raise RuntimeError("kopf's ToggleSet changed: review myservice_operator/kopffixes.py")
    aiotoggles.ToggleSet = FlipNotifyingToggleSet
