"""SessionIndex: the gateway's view of MyServiceSessions, fed events as the watch
delivers them. Wakes only the calls of the changed session; per-user counts; deleted
sessions remembered (bounded)."""
import asyncio

from myservice_gateway.backends.sessionindex import SessionIndex
from myservice_gateway.backends.sessions import SessionTable


def mss(name, user="alice", phase=None, deleting=False):
    meta = {"name": name, **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    return {"metadata": meta, "spec": {"user": user, "sessionId": name},
            "status": {"phase": phase} if phase else {}}


async def test_a_change_wakes_only_the_calls_of_that_session():
    index = SessionIndex()
    mine, other = index.change_of("a"), index.change_of("b")
    also_mine = index.change_of("a")
    index.upsert("a", mss("a", phase="Ready"))
    await asyncio.sleep(0)
    assert mine.done() and also_mine.done() and not other.done()
    assert index.waiting() == 1
    index.forget("b", other)
    assert index.waiting() == 0


async def test_a_listing_wakes_everyone_and_marks_what_vanished_as_deleted():
    index = SessionIndex()
    index.replace({"a": mss("a"), "b": mss("b")})
    waiting = index.change_of("zzz")
    index.replace({"a": mss("a")})
    assert waiting.done()
    assert "b" in index.table.ended and "a" not in index.table.ended


async def test_deleted_sessions_are_remembered_until_made_again_and_bounded():
    index = SessionIndex(SessionTable(ended_remembered=2))
    ended = index.table.ended
    for name in "abc":
        index.upsert(name, mss(name))
        index.delete(name)
    assert [n in ended for n in "abc"] == [False, True, True]  # "a" fell out
    index.reserve("alice", "b")  # Login makes it again: its first call must not be told "ended"
    assert "b" not in ended
    index.upsert("c", mss("c"))
    assert "c" not in ended


async def test_per_user_counts_follow_phase_and_deletion():
    index = SessionIndex()
    index.replace({"a1": mss("a1"), "a2": mss("a2", phase="Ready"), "b1": mss("b1", user="bob")})
    assert (index.table.slots.count("alice"), index.table.slots.count("bob"), index.table.slots.count("carol")) == (2, 1, 0)
    index.upsert("a2", mss("a2", phase="Completed"))
    assert index.table.slots.count("alice") == 1
    index.upsert("a1", mss("a1", phase="Ready", deleting=True))
    assert index.table.slots.count("alice") == 0
    index.reserve("alice", "a3")
    assert index.table.slots.count("alice") == 1
    index.unreserve("alice", "a3")
    assert index.table.slots.count("alice") == 0
    index.delete("b1")
    assert index.table.slots.count("bob") == 0 and "bob" not in index.table.slots.users()


async def test_finished_callback_for_terminal_and_deleted():
    seen = []
    index = SessionIndex(on_finished=lambda r: seen.append((r or {}).get("metadata", {}).get("name")))
    index.upsert("a", mss("a", phase="Ready"))
    index.upsert("a", mss("a", phase="Completed"))
    index.delete("a")
    index.delete("never-seen")
    assert seen == ["a", "a", None]


async def test_unreserve_releases_a_reservation_unless_the_watch_has_it_as_that_users():
    index = SessionIndex()
    index.reserve("alice", "n")
    index.upsert("n", mss("n", user="mallory"))  # the name was another user's all along
    index.unreserve("alice", "n")
    assert (index.table.slots.count("alice"), index.table.slots.count("mallory")) == (0, 1)
    index.reserve("bob", "m")
    index.upsert("m", mss("m", user="bob"))  # the create went through after all: it stays counted
    index.unreserve("bob", "m")
    assert index.table.slots.count("bob") == 1
