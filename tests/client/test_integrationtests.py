"""The `integrationtests` command against a real `myservice up`."""
import subprocess

from ..conftest import BIN


def run(*args):
    return subprocess.run([str(BIN / "integrationtests"), *args], capture_output=True, text=True, timeout=120)


def test_all_scenarios_pass(up_process):
    up = up_process("--max-instances", "4")
    r = run("basic_workflow", "error_cases", "streaming", "--gateway", up.address)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [line for line in r.stdout.splitlines() if line.startswith(("PASS", "FAIL"))] == [
        "PASS basic_workflow", "PASS error_cases", "PASS streaming"]
    assert "step 3: MyServiceEcho x10 ok, sticky on pod_name=myservice-local-1" in r.stdout


def test_failure_names_the_failed_step(up_process):
    up = up_process()
    r = run("basic_workflow", "--gateway", up.address, "--password", "wrong")
    assert r.returncode == 1
    assert "FAIL basic_workflow: unexpected PERMISSION_DENIED: invalid username or password" in r.stdout


def test_list_and_unknown_scenario():
    r = run("--list")
    assert r.returncode == 0
    assert [line.split()[0] for line in r.stdout.splitlines()] == ["basic_workflow", "error_cases", "streaming"]
    r = run("nope")
    assert r.returncode == 2
    assert "unknown scenario(s): nope" in r.stderr


def test_unreachable_gateway_fails_clearly():
    r = run("basic_workflow", "--gateway", "127.0.0.1:1", "--timeout", "2")
    assert r.returncode == 1
    assert "FAIL basic_workflow: unexpected UNAVAILABLE" in r.stdout
