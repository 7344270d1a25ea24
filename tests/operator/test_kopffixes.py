"""kopf's index pre-population with many objects: O(N) wake-ups with our toggle set, only on
a kopf version these tests passed with (constraints.txt pins it)."""
from __future__ import annotations

import asyncio

import pytest
from kopf._cogs.aiokits import aiotoggles

import myservice_api.pins
from myservice_operator import kopffixes
from tests import pins


class Counting:
    """Counts the overall-state checks the waiters make (one per wake-up)."""

    def __init__(self, cls):
        self.checks = 0
        outer = self

        class Counted(cls):
            def is_on(self):
                outer.checks += 1
                return super().is_on()
        self.cls = Counted


async def prepopulate(toggle_set_class, objects: int) -> int:
    """kopf's start: a toggle per listed object, each dropped once indexed, then each
    worker waits for all (queueing.py / processing.py); the state checks it took."""
    counting = Counting(toggle_set_class)
    indexed = counting.cls(all)
    blocker = await indexed.make_toggle(name="orchestration blocker")
    toggles = [await indexed.make_toggle(name=f"object {i}") for i in range(objects)]

    async def worker(toggle):
        await indexed.drop_toggle(toggle)
        await indexed.wait_for(True)

    workers = []
    for toggle in toggles:  # objects come one by one from the listing's stream
        workers.append(asyncio.create_task(worker(toggle)))
        for _ in range(3):
            await asyncio.sleep(0)
    await indexed.drop_toggle(blocker)
    await asyncio.wait_for(asyncio.gather(*workers), 60)
    assert indexed.is_on()
    return counting.checks


async def test_kopfs_own_set_wakes_every_waiter_at_every_drop():
    # the baseline: what the fix is for (quadratic). The canary: once a kopf release fails
    # this, it fixed the problem upstream and kopffixes' toggle set can go.
    assert await prepopulate(aiotoggles.ToggleSet, 400) > 400 * 400 / 4


async def test_ours_wakes_each_waiter_once():
    checks = await prepopulate(kopffixes.FlipNotifyingToggleSet, 5000)
    assert checks <= 8 * 5000  # a few per object: made, dropped, waited, woken once


async def test_waiters_see_every_flip_either_way():
    toggles = kopffixes.FlipNotifyingToggleSet(all)
    first = await toggles.make_toggle()
    off = asyncio.create_task(toggles.wait_for(False))
    await asyncio.sleep(0)
    assert off.done()  # one toggle off: the set is off already
    on = asyncio.create_task(toggles.wait_for(True))
    second = await toggles.make_toggle()
    await toggles.drop_toggle(first)
    await asyncio.sleep(0)
    assert not on.done()  # still one off
    await toggles.drop_toggles([second])
    await asyncio.wait_for(on, 1)
    again_off = asyncio.create_task(toggles.wait_for(False))
    await asyncio.sleep(0)
    assert not again_off.done()
    third = await toggles.make_toggle(False)  # on -> off: wakes those waiting for off
    await asyncio.wait_for(again_off, 1)
    back_on = asyncio.create_task(toggles.wait_for(True))
    await third.turn_to(True)  # a child's own change still notifies
    await asyncio.wait_for(back_on, 1)


def test_install_makes_kopf_build_ours(monkeypatch):
    monkeypatch.setattr(aiotoggles, "ToggleSet", aiotoggles.ToggleSet)
    kopffixes.install()
    assert aiotoggles.ToggleSet is kopffixes.FlipNotifyingToggleSet
    from kopf._core.reactor import orchestration, running
    assert orchestration.aiotoggles.ToggleSet is kopffixes.FlipNotifyingToggleSet
    assert running.aiotoggles.ToggleSet is kopffixes.FlipNotifyingToggleSet


def test_install_refuses_a_kopf_whose_set_changed(monkeypatch):
    class Other:
        pass
    monkeypatch.setattr(aiotoggles, "ToggleSet", Other)
    with pytest.raises(RuntimeError, match="kopffixes"):
        kopffixes.install()


def test_the_pinned_kopf_is_one_kopffixes_was_tested_with():
    assert pins.pinned("kopf") in kopffixes.TESTED_KOPF_VERSIONS


def test_install_refuses_an_untested_kopf(monkeypatch):
    kopfs_own = kopffixes.FlipNotifyingToggleSet.__base__
    monkeypatch.setattr(aiotoggles, "ToggleSet", kopfs_own)
    monkeypatch.setattr(myservice_api.pins.metadata, "version", lambda name: "1.99.0")
    with pytest.raises(RuntimeError, match=r"kopf 1\.99\.0 .*constraints\.txt.*tests/operator/test_kopffixes\.py"):
        kopffixes.install()
    assert aiotoggles.ToggleSet is kopfs_own
