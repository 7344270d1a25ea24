"""Blocking API calls off the loop, and background tasks that settle() waits for."""
import asyncio
import threading

from myservice_operator.background import Background, PriorityGate, Urgency


async def test_a_blocking_call_runs_on_the_api_threads():
    background = Background()
    assert await background.call(threading.current_thread) is not threading.current_thread()
    assert await background.call(divmod, 7, 2) == (3, 1)


async def test_settle_waits_for_tasks_and_the_tasks_they_start():
    background = Background()
    done: list[str] = []

    async def second() -> None:
        await asyncio.sleep(0)
        done.append("second")

    async def first() -> None:
        background.spawn(second())
        done.append("first")

    background.spawn(first())
    await background.settle()
    assert done == ["first", "second"]


async def test_a_free_thread_goes_to_a_session_before_the_pools_upkeep():
    """One thread, busy; then upkeep, more upkeep and a session's call wait: the session's
    runs first, then the upkeep in the order it came."""
    background = Background(threads=1)
    release = threading.Event()
    order: list[str] = []

    def hold() -> None:
        release.wait(5)

    def record(name: str) -> str:
        order.append(name)
        return name

    busy = [asyncio.create_task(background.call(hold))]
    await asyncio.sleep(0.05)
    waiting = [asyncio.create_task(background.call(record, "refill-1", urgency=Urgency.UPKEEP)),
               asyncio.create_task(background.call(record, "label-2", urgency=Urgency.UPKEEP))]
    await asyncio.sleep(0.01)
    waiting.append(asyncio.create_task(background.call(record, "claim", urgency=Urgency.SESSION)))
    await asyncio.sleep(0.01)
    assert order == []  # nothing runs while the thread is held
    release.set()
    assert await asyncio.gather(*busy, *waiting) == [None, "refill-1", "label-2", "claim"]
    assert order == ["claim", "refill-1", "label-2"]


async def test_the_gate_never_lets_more_calls_run_than_threads():
    gate = PriorityGate(2)
    running, most = 0, 0

    async def one(urgency: Urgency) -> None:
        nonlocal running, most
        await gate.acquire(urgency)
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001)
        running -= 1
        gate.release()

    await asyncio.gather(*(one(Urgency(i % 2)) for i in range(50)))
    assert most == 2
    # all permits back: two acquire at once without waiting
    await asyncio.wait_for(asyncio.gather(gate.acquire(Urgency.UPKEEP), gate.acquire(Urgency.UPKEEP)), 0.1)


async def test_a_cancelled_waiter_gives_up_its_place_and_loses_no_permit():
    gate = PriorityGate(1)
    await gate.acquire(Urgency.SESSION)
    cancelled = asyncio.create_task(gate.acquire(Urgency.SESSION))
    later = asyncio.create_task(gate.acquire(Urgency.UPKEEP))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    gate.release()  # goes past the cancelled one to the next
    await asyncio.wait_for(later, 0.1)
    assert cancelled.cancelled()
    gate.release()
    await asyncio.wait_for(gate.acquire(Urgency.UPKEEP), 0.1)  # the permit came back


async def test_a_waiter_cancelled_after_its_turn_came_passes_the_permit_on():
    gate = PriorityGate(1)
    await gate.acquire(Urgency.SESSION)
    first = asyncio.create_task(gate.acquire(Urgency.SESSION))
    second = asyncio.create_task(gate.acquire(Urgency.SESSION))
    await asyncio.sleep(0)
    gate.release()   # first's turn is set ...
    first.cancel()   # ... and it is cancelled before it runs
    await asyncio.wait_for(second, 0.1)
    assert first.cancelled()


def test_close_waits_for_the_calls_on_the_threads_and_says_when_they_outlast_it():
    background = Background(threads=2)
    release = threading.Event()
    finished: list[str] = []

    def slow() -> None:
        release.wait(5)
        finished.append("slow")

    async def start() -> None:
        asyncio.get_running_loop().run_in_executor(background._executor, slow)
        await asyncio.sleep(0.05)
    asyncio.run(start())
    assert background.close(0.1) is False  # still running: the Lease must not be given up
    release.set()
    assert background.close(2) is True and finished == ["slow"]
