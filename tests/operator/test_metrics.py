"""The operator's /metrics over real HTTP on loopback: the series and their labels."""
import urllib.request

import pytest

from myservice_operator.metrics import OperatorMetrics


@pytest.fixture
def served():
    metrics = OperatorMetrics()
    httpd = metrics.serve("127.0.0.1", 0)
    yield metrics, f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    httpd.shutdown()
    httpd.server_close()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_series_before_and_after_the_index_is_bound(served):
    metrics, url = served
    text = scrape(url)
    assert "myservice_operator_sessions" not in text  # nothing to count from yet
    counts = {"Pending": 2, "Ready": 5}
    metrics.watch_index(lambda phase: counts.get(phase, 0), lambda: 6)
    text = scrape(url)
    for phase, value in [("Pending", 2), ("Starting", 0), ("Ready", 5), ("Completed", 0), ("Failed", 0)]:
        assert f'myservice_operator_sessions{{phase="{phase}"}} {value}.0' in text
    assert "myservice_operator_live_pods 6.0" in text
    counts["Ready"] = 4  # read at each scrape, not when it changed
    assert 'myservice_operator_sessions{phase="Ready"} 4.0' in scrape(url)


def test_api_requests_by_verb_resource_and_code(served):
    metrics, url = served
    for _ in range(3):
        metrics.api_request("patch", "myservicesessions/status", 200)
    metrics.api_request("patch", "myservicesessions/status", 409)
    metrics.api_request("create", "pods", 0)
    text = scrape(url)
    assert ('myservice_operator_api_requests_total{code="200",resource="myservicesessions/status",verb="patch"} 3.0'
            in text)
    assert 'myservice_operator_api_requests_total{code="409",resource="myservicesessions/status",verb="patch"} 1.0' in text
    assert 'myservice_operator_api_requests_total{code="0",resource="pods",verb="create"} 1.0' in text


def test_a_taken_port_is_a_clear_error(served):
    _, url = served
    port = int(url.split(":")[2].split("/")[0])
    with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
        OperatorMetrics().serve("127.0.0.1", port)
