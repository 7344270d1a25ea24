"""bench/scale/figures.py, the claim burst (issue 17, item 2): its arithmetic on a small
hand-made run."""
import figures


def session(i: int, *, source: str | None = "warm", seen: float = 0.01, ready: float | None = 0.1,
            labelled: float | None = 0.105) -> dict:
    start = i * 0.1
    return {"live_at_login": i, "login_start": start, "seen": start + seen,
            "ready": None if ready is None else start + ready, "source": source,
            "labelled": None if labelled is None or ready is None else start + labelled}


def timeline(operator: float, gateway: float) -> list[dict]:
    return [{"t": 0.0, "components": {"operator": 100.0, "gateway": 10.0}},
            {"t": 9.0, "components": {"operator": 100.0 + operator, "gateway": 10.0 + gateway}}]


def test_the_pool_is_the_sessions_and_forty_percent_rounded_up():
    assert figures.claim_pool_size(750) == 1050  # agent-sandbox's
    assert figures.claim_pool_size(50) == 70
    assert figures.claim_pool_size(1) == 2


def test_a_burst_within_the_gate():
    sessions = [session(i) for i in range(95)] + [session(95 + i, source="cold", ready=0.4, labelled=None)
                                                   for i in range(5)]
    f = figures.claim_burst_report({"sessions": sessions, "timeline": timeline(300, 100), "rate": 75, "pool": 140})
    assert (f["ready"]["count"], f["never_ready"]) == (100, 0)
    assert (f["ready"]["p50_ms"], f["ready"]["p90_ms"]) == (100.0, 100.0)
    assert f["ready"]["p99_ms"] == 400.0  # the cold tail: within the gate still
    assert f["by_source"]["warm"]["count"] == 95 and f["by_source"]["cold"]["p50_ms"] == 400.0
    assert f["stages"]["gateway: Login to resource"]["p50_ms"] == 10.0
    assert f["stages"]["operator: claim (status Ready)"]["p50_ms"] == 90.0
    assert f["stages"]["operator: labels, after Ready (off the path)"] == {"p50_ms": 5.0, "p90_ms": 5.0,
                                                                          "p99_ms": 5.0}
    assert f["api_requests_per_session"] == {"operator": 3.0, "gateway": 1.0}
    assert all(g["met"] for g in f["gate"].values())
    assert figures.claim_burst_last_line(f) == (
        "claim-burst: 100 at 75/s from a pool of 140: Login -> Ready p50/p90/p99 100/100/400 ms, gate met")


def test_a_slow_tail_or_a_session_never_ready_misses_the_gate():
    slow = [session(i, ready=0.1 if i < 95 else 0.9) for i in range(100)]
    f = figures.claim_burst_report({"sessions": slow, "timeline": timeline(0, 0), "rate": 75, "pool": 140})
    assert f["gate"]["p50_ms"]["met"] and not f["gate"]["p99_ms"]["met"]
    assert figures.claim_burst_last_line(f).endswith("gate MISSED")
    lost = [session(i) for i in range(99)] + [session(99, ready=None)]
    f = figures.claim_burst_report({"sessions": lost, "timeline": timeline(0, 0), "rate": 75, "pool": 140})
    assert f["never_ready"] == 1 and not any(g["met"] for g in f["gate"].values())
