"""Events are best effort: posted in the background, dropped and counted past the backlog."""
from prometheus_client import CollectorRegistry, Counter

from myservice_operator.background import Background
from myservice_operator.eventrecorder import EventRecorder

from .fakekube import InlineExecutor


class Kube:
    def __init__(self, fail: bool = False) -> None:
        self.posted: list[dict] = []
        self.fail = fail

    def create_event(self, event: dict) -> None:
        if self.fail:
            raise RuntimeError("500")
        self.posted.append(event)


def event(reason: str) -> dict:
    return {"reason": reason, "involvedObject": {"name": "s"}}


def recorder(kube: Kube, backlog: int) -> tuple[EventRecorder, Background, Counter]:
    background = Background(InlineExecutor())
    dropped = Counter("dropped", "", registry=CollectorRegistry())
    return EventRecorder(kube, spawn=background.spawn, dropped=dropped, executor=InlineExecutor(),
                         backlog=backlog), background, dropped


async def test_events_past_the_backlog_are_dropped_and_counted():
    kube = Kube()
    events, background, dropped = recorder(kube, backlog=2)
    for reason in ("A", "B", "C"):
        events.record(event(reason))  # none posted yet: the third finds the backlog full
    await background.settle()
    assert [e["reason"] for e in kube.posted] == ["A", "B"]
    assert dropped._value.get() == 1
    events.record(event("D"))  # the backlog drained
    await background.settle()
    assert [e["reason"] for e in kube.posted] == ["A", "B", "D"]


async def test_a_failed_post_is_logged_and_frees_its_place(caplog):
    events, background, dropped = recorder(Kube(fail=True), backlog=1)
    events.record(event("A"))
    await background.settle()
    assert "event A on s not posted: 500" in caplog.text
    events.record(event("B"))  # its place in the backlog is free again
    await background.settle()
    assert dropped._value.get() == 0
