"""bench/scale/figures.py: the scale test's arithmetic, on small hand-made runs."""
import pytest

import figures

METRICS = """# HELP apiserver_request_total Counter
apiserver_request_total{code="200",component="apiserver",group="",resource="pods",scope="resource",subresource="",verb="GET",version="v1"} 7
apiserver_request_total{code="404",component="apiserver",group="",resource="pods",scope="resource",subresource="",verb="GET",version="v1"} 3
apiserver_request_total{code="201",component="apiserver",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} 5
apiserver_request_total{code="200",component="apiserver",group="",resource="",scope="",subresource="/healthz",verb="GET",version=""} 99
apiserver_request_total_other{verb="GET",resource="pods"} 1000
apiserver_flowcontrol_dispatched_requests_total{flow_schema="run-operator",priority_level="workload-low"} 40
apiserver_flowcontrol_dispatched_requests_total{flow_schema="run-gateway",priority_level="workload-low"} 2
apiserver_flowcontrol_dispatched_requests_total{flow_schema="service-accounts",priority_level="workload-low"} 500
"""
SCHEMAS = {"operator": "run-operator", "gateway": "run-gateway"}


def test_api_counters_split_our_components_and_everyones_resource_requests():
    assert figures.api_counters(METRICS, SCHEMAS) == {
        "components": {"operator": 40.0, "gateway": 2.0},
        "requests": {"GET pods": 10.0, "POST pods/binding": 5.0},  # codes summed, /healthz left out
    }


def test_api_counters_before_a_component_made_any_request():
    assert figures.api_counters("", SCHEMAS)["components"] == {"operator": 0.0, "gateway": 0.0}


def test_counter_delta_and_rates():
    assert figures.counter_delta({"a": 5, "b": 2, "c": 1}, {"a": 3, "b": 2}) == {"a": 2, "c": 1}
    assert figures.rate_per_second({"a": 3}, {"a": 13}, 5.0) == {"a": 2.0}
    assert figures.rate_per_second({"a": 3}, {"a": 13}, 0) == {}


def test_percentile_is_linear_between_ranks():
    assert figures.percentile([], 50) is None
    assert figures.percentile([3.0], 99) == 3.0
    assert figures.percentile([1, 2, 3, 4], 50) == 2.5
    assert figures.percentile(list(range(101)), 99) == 99
    assert figures.percentile([4, 1, 3, 2], 0) == 1


def test_windows_are_the_last_tenth_before_the_checkpoint():
    assert figures.window(1000) == (900, 999)
    assert figures.window(10000) == (9000, 9999)
    assert figures.window(5) == (4, 4)
    assert figures.checkpoints(10000) == [100, 1000, 10000]
    assert figures.checkpoints(1000) == [100, 1000]
    assert figures.checkpoints(200) == [100, 200]
    assert figures.checkpoints(50) == [50]


def session(i: int, latency: float | None, start_every: float = 0.1) -> dict:
    start = i * start_every
    return {"live_at_login": i, "login_start": start, "ready": None if latency is None else start + latency}


def test_ready_latencies_of_a_window_and_those_never_ready():
    sessions = [session(i, 0.5) for i in range(10)] + [session(10, None), session(11, 2.0)]
    latencies, never = figures.ready_latencies(sessions, 9, 11)
    assert latencies == [pytest.approx(0.5), 2.0]
    assert never == 1


def test_knee_is_where_p99_goes_above_the_limit_for_good():
    # fast for the first 300, one slow bin at 100-199 that recovers, slow from 300 on
    latencies = [0.2] * 100 + [0.2] * 90 + [5.0] * 10 + [0.2] * 100 + [3.0] * 200
    sessions = [session(i, latency) for i, latency in enumerate(latencies)]
    assert figures.knee(sessions) == 300
    assert figures.knee([session(i, 0.1) for i in range(500)]) is None
    # never Ready counts as above any limit
    assert figures.knee([session(i, 0.1 if i < 100 else None) for i in range(200)]) == 100


def test_sustained_rate_over_the_ramp():
    sessions = [session(i, 1.0, start_every=0.5) for i in range(11)]  # Logins over 5 s, last Ready at 6 s
    assert figures.sustained_rate(sessions) == {"logins_per_second": 2.0, "ready_per_second": round(11 / 6, 1)}


def test_stage_breakdown_names_who_spent_the_time():
    s = {"live_at_login": 0, "login_start": 0.0, "seen": 0.01, "pod_created": 0.51, "pod_scheduled": 0.52,
         "pod_ready": 0.62, "ready": 1.62}
    breakdown = figures.stage_breakdown([s], 0, 0)
    assert breakdown["operator: admission, pod created"] == {"p50_ms": 500.0, "p99_ms": 500.0}
    assert breakdown["operator: session Ready"]["p50_ms"] == 1000.0
    assert breakdown["kwok: pod Ready"]["p50_ms"] == 100.0


def run(count: int, *, per_session_requests: float, idle_requests_per_second: float) -> dict:
    """A synthetic run: a Login each 0.1 s, Ready 0.3 s later, a sample each 1 s in which the
    operator made per_session_requests for each Login of that second; then 10 s idle."""
    sessions = [session(i, 0.3) for i in range(count)]
    timeline, requests, t = [], 0.0, 0.0
    ramp_end = count * 0.1 + 1
    while t <= ramp_end:
        timeline.append({"t": t, "phase": "ramp", "live": min(count, int(t * 10)), "ready": 0,
                         "components": {"operator": requests, "gateway": t * 10},
                         "requests": {"GET pods": requests}, "cpu_seconds": {"operator": t / 10, "gateway": t / 100},
                         "rss_mb": {"operator": 100 + t, "gateway": 50.0}, "restarts": {"operator": 0}})
        requests += per_session_requests * 10
        t += 1.0
    idle_start = t
    for _ in range(10):
        requests += idle_requests_per_second
        timeline.append({**timeline[-1], "t": t, "phase": "idle", "components": {"operator": requests,
                                                                                 "gateway": timeline[-1]["components"]["gateway"]},
                         "requests": {"GET pods": requests}})
        t += 1.0
    return {"rate": 10.0, "sessions": sessions, "timeline": timeline,
            "phases": {"ramp": [0.0, ramp_end], "idle": [idle_start, t - 1.0]}}


def test_report_of_a_run_that_meets_every_target():
    figs = figures.report(run(2000, per_session_requests=4, idle_requests_per_second=0.5))
    assert figs["sessions"] == 2000 and figs["ready"] == 2000
    assert list(figs["at"]) == ["100", "1000", "2000"]
    assert figs["at"]["2000"]["ready"]["p99_ms"] == pytest.approx(300.0)
    assert figs["idle"]["total_per_second"] == pytest.approx(0.5, abs=0.01)
    assert figs["processes"]["operator"] == {"cpu_seconds": 20.1, "peak_rss_mb": 301.0, "restarts": 0}
    # the synthetic operator spends the same per session at 1k and at 2k
    assert figs["cost_growth"]["api_requests_per_session.operator"] == pytest.approx(0, abs=0.1)
    assert all(t["met"] for t in figs["targets"].values()), figs["targets"]
    assert figures.last_line(figs) == (
        "scale: 2000 sessions, ready p99 300 ms, idle api 0.50 req/s, operator rss 301 MB, gateway rss 50 MB")


def test_report_of_a_run_whose_idle_sessions_cost_the_api():
    figs = figures.report(run(2000, per_session_requests=4, idle_requests_per_second=400))
    targets = figs["targets"]
    assert targets["idle_api_per_second"] == {"value": pytest.approx(400, abs=1), "limit": 1.0, "met": False}
    assert targets["ready_p99_ms"]["met"] and targets["operator_rss_mb"]["met"]


def test_last_line_says_na_for_missing_figures():
    figs = figures.report({**run(20, per_session_requests=1, idle_requests_per_second=0), "phases": {"ramp": [0, 3]}})
    assert figures.last_line(figs) == (
        "scale: 20 sessions, ready p99 300 ms, idle api n/a req/s, operator rss 103 MB, gateway rss 50 MB")
    assert figs["targets"]["idle_api_per_second"]["met"] is False


def test_a_window_with_sessions_never_ready_has_no_cost_and_misses_the_growth_target():
    synthetic = run(2000, per_session_requests=4, idle_requests_per_second=0.5)
    for s in synthetic["sessions"][1900:]:
        s["ready"] = None
    figs = figures.report(synthetic)
    assert figs["at"]["2000"]["costs"] == {}
    assert figs["at"]["2000"]["never_ready"] == 100
    assert figs["targets"]["cost_growth"] == {"value": None, "limit": 0.2, "met": False}
    assert figs["targets"]["ready_p99_ms"]["met"] is False


def test_api_durations_keeps_the_writes_of_a_session_start():
    text = "\n".join([
        'apiserver_request_duration_seconds_sum{component="apiserver",resource="myservicesessions",'
        'subresource="status",verb="PATCH"} 3.0',
        'apiserver_request_duration_seconds_count{component="apiserver",resource="myservicesessions",'
        'subresource="status",verb="PATCH"} 60',
        'apiserver_request_duration_seconds_sum{resource="pods",verb="POST"} 1.5',
        'apiserver_request_duration_seconds_sum{resource="pods",verb="POST",scope="namespace"} 0.5',
        'apiserver_request_duration_seconds_count{resource="pods",verb="POST"} 20',
        'apiserver_request_duration_seconds_sum{resource="pods",verb="LIST"} 9.0',
        'apiserver_request_duration_seconds_bucket{resource="pods",verb="POST",le="0.1"} 20',
    ])
    assert figures.api_durations(text) == {"PATCH myservicesessions/status": [3.0, 60.0], "POST pods": [2.0, 20.0]}


def test_machine_profile_names_the_biggest_user_of_a_busy_machine():
    before = {"t": 100.0, "cpu_seconds": {"operator": 10.0, "gateway": 1.0},
              "host_cpu_seconds": {"kube-apiserver": 50.0, "etcd": 5.0, "load generator": 2.0},
              "machine_cpu": {"total": 10_000.0, "idle": 4_000.0},
              "api_durations": {"POST pods": [1.0, 10.0]}}
    after = {"t": 110.0, "cpu_seconds": {"operator": 16.0, "gateway": 2.0},
             "host_cpu_seconds": {"kube-apiserver": 59.0, "etcd": 7.0, "load generator": 3.0},
             "machine_cpu": {"total": 12_000.0, "idle": 4_100.0},
             "api_durations": {"POST pods": [5.0, 60.0], "PATCH pods": [1.0, 10.0]}}
    profile = figures.machine_profile(before, after)
    assert profile["busy_percent"] == 95.0
    assert list(profile["cores"].items()) == [("kube-apiserver", 0.9), ("operator", 0.6), ("etcd", 0.2),
                                              ("gateway", 0.1), ("load generator", 0.1)]
    assert profile["write_latency_ms"] == {"POST pods": 80.0, "PATCH pods": 100.0}
    line = figures.machine_line(profile)
    assert line.startswith("machine over 10.0 s: CPUs busy 95 %; cores used: kube-apiserver 0.90, operator 0.60")
    assert figures.machine_profile(after, after) == {} and figures.machine_line({}) == "machine: no samples"
