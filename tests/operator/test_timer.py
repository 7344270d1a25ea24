"""The operator's one timer: what is due goes out once; a new, earlier deadline wakes it."""
import asyncio
import datetime

from myservice_operator.timer import DeadlineTimer

EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> datetime.datetime:
        return EPOCH + datetime.timedelta(seconds=self.seconds)


def test_due_names_come_out_once_at_their_time():
    clock = Clock()
    timer = DeadlineTimer(clock)
    timer.set("a", EPOCH.timestamp() + 10)
    timer.set("b", EPOCH.timestamp() + 5)
    timer.set("gone", EPOCH.timestamp() + 1)
    timer.set("gone", None)
    assert (len(timer), timer.get("a")) == (2, EPOCH.timestamp() + 10)
    clock.seconds = 9
    assert timer.pop_due() == ["b"]
    clock.seconds = 10
    assert timer.pop_due() == ["a"]
    assert timer.pop_due() == [] and len(timer) == 0


async def test_an_earlier_deadline_wakes_the_sleeping_timer():
    clock = Clock()
    timer = DeadlineTimer(clock)
    timer.set("late", EPOCH.timestamp() + 3600)
    came: list[list[str]] = []

    async def run_due() -> None:
        came.append(timer.pop_due())

    task = asyncio.create_task(timer.run(run_due))
    await asyncio.sleep(0.01)
    assert came == [[]]  # ran once at start, now asleep for an hour
    timer.set("now", EPOCH.timestamp())  # due already: wakes the sleeper at once
    await asyncio.sleep(0.01)
    assert came == [[], ["now"]]
    task.cancel()
