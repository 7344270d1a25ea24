"""Blocking API calls off the loop, and background tasks that settle() waits for."""
import asyncio
import threading

from myservice_operator.background import Background


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
