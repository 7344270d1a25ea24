"""The session table both backends share (backends/sessions.py): pure decisions
and bounded state, tested directly."""
import asyncio

import grpc
import pytest

from myservice import errors
from myservice_api.crd import PodSource
from myservice_gateway.backends import sessions


def test_ended_sessions_are_bounded_oldest_out_and_made_again_on_discard():
    ended = sessions.EndedSessions(2)
    for key in "abc":
        ended.add(key)
    assert [k in ended for k in "abc"] == [False, True, True] and len(ended) == 2
    ended.add("b")  # seen again: now the newest
    ended.add("d")
    assert [k in ended for k in "bcd"] == [True, False, True]
    ended.discard("b")
    assert "b" not in ended
    with pytest.raises(ValueError):
        sessions.EndedSessions(0)


def test_user_slots_count_each_session_once_and_forget_users_with_none():
    slots = sessions.UserSlots()
    slots.hold("alice", "a1")
    slots.hold("alice", "a1")  # idempotent
    slots.hold("alice", "a2")
    slots.hold("bob", "b1")
    assert (slots.count("alice"), slots.count("bob"), slots.count("carol"), slots.total) == (2, 1, 0, 3)
    slots.release("bob", "b1")
    slots.release("bob", "b1")
    slots.release("carol", "nothing")
    assert (set(slots.users()), slots.total) == ({"alice"}, 2)
    slots.clear()
    assert (slots.count("alice"), slots.total) == (0, 0)


@pytest.mark.parametrize("held,limit,refused", [(0, 1, False), (1, 1, True), (9, 10, False), (10, 10, True),
                                                (500, 0, False)])  # 0: no limit
def test_the_per_user_limit(held, limit, refused):
    slots = sessions.UserSlots()
    for i in range(held):
        slots.hold("alice", i)
    slots.hold("bob", "other")  # another user's sessions never count
    if refused:
        with pytest.raises(errors.ContractError) as e:
            sessions.admit(slots, "alice", limit)
        assert (e.value.code, e.value.message) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED, f"per-user limit reached: at most {limit} live sessions per user")
    else:
        sessions.admit(slots, "alice", limit)


@pytest.mark.parametrize("owner", ["bob", None, ""])
def test_a_session_of_another_owner_is_refused(owner):
    sessions.check_owner("alice", "alice")
    with pytest.raises(errors.ContractError) as e:
        sessions.check_owner(owner, "alice")
    assert (e.value.code, e.value.message) == (grpc.StatusCode.PERMISSION_DENIED, "session belongs to another user")


@pytest.mark.parametrize("call,ready,expected", [(None, None, None), (None, 120, 120), (5, None, 5), (5, 120, 5),
                                                 (300, 120, 120)])
def test_wait_limit_is_the_calls_deadline_at_most_the_ready_timeout(call, ready, expected):
    assert sessions.wait_limit(call, ready) == expected


async def test_the_start_wait_reports_how_long_and_from_where():
    table = sessions.SessionTable(ready_timeout=5)
    seen = []
    table.on_session_start = lambda seconds, source: seen.append((seconds, source))

    async def instance():
        await asyncio.sleep(0.05)
        return "endpoint", PodSource.WARM

    assert await table.wait_for_start(instance(), call_timeout=None) == "endpoint"
    [(seconds, source)] = seen
    assert source is PodSource.WARM and 0.04 < seconds < 2


@pytest.mark.parametrize("call,ready,said", [(0.2, 60, "0.2s"), (None, 0.3, "0.3s"), (30, 0.3, "0.3s")])
async def test_a_start_that_outlasts_the_wait_is_deadline_exceeded_and_not_reported(call, ready, said):
    table = sessions.SessionTable(ready_timeout=ready)
    seen = []
    table.on_session_start = lambda seconds, source: seen.append(source)
    never = asyncio.get_running_loop().create_future()
    with pytest.raises(errors.ContractError) as e:
        await table.wait_for_start(never, call_timeout=call)
    assert (e.value.code, e.value.message) == (
        grpc.StatusCode.DEADLINE_EXCEEDED, f"the session's instance was not ready within {said}")
    assert seen == [] and never.cancelled()


async def test_a_failed_start_answers_its_own_error():
    table = sessions.SessionTable(ready_timeout=5)

    async def fails():
        raise errors.no_available_instances()

    with pytest.raises(errors.ContractError) as e:
        await table.wait_for_start(fails(), call_timeout=None)
    assert (e.value.code, e.value.message) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "no available instances")
