#!/usr/bin/env python3
"""A Login storm against a real gateway (`myservice up`), and what it does to
everyone else:

  1. one session calls MyServiceEcho back to back, all along (quiet, then storm);
  2. after --quiet-seconds, --storm Logins are sent at once (half for unknown
     users, half with a wrong password for a real one);
  3. --valid-after seconds into the storm, a real user logs in from ANOTHER
     client address ([::1]; the storm and the Echo session use 127.0.0.1), for
     the first time (a real hash: not the Echo session's user, whose Login the
     gateway would answer from memory);
  4. reported: that valid Login's latency and status, Echo p50/p99 quiet and
     during the storm (from the storm's start until its last answer, at least
     2 s), how the storm was answered, the gateway's RSS (with its
     password-checking processes') before, at its largest during the storm
     (sampled every 20 ms) and after; where the CPU went during the storm, and
     how long the Echo path (client, event loop, instance) waited on run queues
     per call, quiet and during the storm (/proc/<pid>/task/<tid>/schedstat).

Scenarios (each a fresh gateway, interleaved over --runs rounds, medians reported):

  single      no storm: ONE Login where the storm would be, then the valid one. What
              any Login costs the Echo session (the p99 reference for the others)
  one-peer    the defaults: the storm comes from one address (per-address limits apply)
  many-peers  every storm Login from its own address: the bench plays a trusted proxy
              (MYSERVICE_TRUSTED_PROXIES=127.0.0.1/32) and names 200 addresses in
              x-forwarded-for, so the per-address failure limits never hold it back
  baseline    with --baseline-rev REV: the gateway package as it was at git revision
              REV (e.g. the one before issue 7: hashing on asyncio.to_thread, no
              bounds), run the same way in the same run, for the before/after

Targets (issue 7): the valid Login answers OK within 1 s, Echo p99 during the
storm at most 2x quiet. Every process is a child of this one (PR_SET_PDEATHSIG),
stopped on exit; traffic stays on loopback.

    .venv/bin/python bench/login_storm.py [--runs 3] [--storm 200] [--scenarios single,one-peer,many-peers,baseline]
        [--baseline-rev REV] [--gateway-cpus LIST] [--gateway-env KEY=VALUE] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_latency as common  # noqa: E402 - the other bench's process and percentile helpers

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("single", "one-peer", "many-peers", "baseline")
SCENARIO_ENV = {
    "single": {},
    "one-peer": {},
    "many-peers": {"MYSERVICE_TRUSTED_PROXIES": "127.0.0.1/32"},
    "baseline": {},
}
VALID = ("bob", "bob-password")
ATTACKED = ("alice", "alice-password")
FIRST_TIME = ("carol", "carol-password")  # the valid Login during the storm: never logged in before
STORM_CHANNELS = 10  # HTTP/2 connections the storm is spread over (one address: 127.0.0.1)
CALL_TIMEOUT = 180.0
MIN_STORM_WINDOW = 2.0
TARGET_VALID_SECONDS = 1.0
TARGET_ECHO_P99_RATIO = 2.0


# --------------------------------------------------------------------------------------------
# Workers: each in its own process, so that no client shares a GIL with another or with us.
# Times are time.monotonic(), which is one clock for every process of the machine.
# --------------------------------------------------------------------------------------------

def login_request(pb, username: str, password: str, session_id: str):
    return pb.LoginRequest(username=username, password=password, session_id=session_id)


def worker_echo(address: str) -> int:
    """Log in, print 'ready', call Echo back to back until a line on stdin; print the samples."""
    import grpc

    from myservice.v1 import myservice_pb2 as pb
    from myservice.v1 import myservice_pb2_grpc as pb_grpc

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.MyServiceStub(channel)
        session_id = f"storm-echo-{os.getpid()}"
        token = stub.Login(login_request(pb, *VALID, session_id), timeout=CALL_TIMEOUT).token
        metadata = (("authorization", token), ("session-id", session_id))
        stub.MyServiceEcho(pb.EchoRequest(value="warm-up"), metadata=metadata, timeout=CALL_TIMEOUT)
        print(json.dumps({"ready": True}), flush=True)
        samples, errors = [], 0
        request = pb.EchoRequest(value="bench")
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                stub.MyServiceEcho(request, metadata=metadata, timeout=CALL_TIMEOUT)
            except grpc.RpcError:
                errors += 1
            else:
                samples.append((t0, time.monotonic() - t0))
    print(json.dumps({"samples": samples, "errors": errors}), flush=True)
    return 0


def worker_storm(address: str, at: float, count: int, many_peers: bool = False) -> int:
    """At monotonic time `at`, send `count` Logins at once; print how each was answered.
    many_peers: each names its own client address in x-forwarded-for (127.1.x.y)."""
    import asyncio

    import grpc

    from myservice.v1 import myservice_pb2 as pb
    from myservice.v1 import myservice_pb2_grpc as pb_grpc

    async def storm() -> list:
        channels = [grpc.aio.insecure_channel(address) for _ in range(STORM_CHANNELS)]
        for channel in channels:
            await channel.channel_ready()
        stubs = [pb_grpc.MyServiceStub(c) for c in channels]
        requests = [login_request(pb, f"nobody-{i}", "guess", f"storm-{i}") if i % 2 == 0
                    else login_request(pb, ATTACKED[0], f"wrong-{i}", f"storm-{i}") for i in range(count)]

        async def one(i: int):
            metadata = (("x-forwarded-for", f"127.1.{i // 250}.{1 + i % 250}"),) if many_peers else None
            try:
                await stubs[i % len(stubs)].Login(requests[i], metadata=metadata, timeout=CALL_TIMEOUT)
                code = "OK"
            except grpc.aio.AioRpcError as e:
                code = e.code().name
            return code, time.monotonic()

        print(json.dumps({"ready": True}), flush=True)
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        cpu = time.process_time()
        results = await asyncio.gather(*(one(i) for i in range(count)))
        cpu = time.process_time() - cpu  # this client's own CPU for the storm (all its threads)
        for channel in channels:
            await channel.close()
        return results, cpu

    results, cpu = asyncio.run(storm())
    print(json.dumps({"results": results, "cpu_s": cpu}), flush=True)
    return 0


def worker_valid(address: str, at: float) -> int:
    """At monotonic time `at`, one Login of the real user; print its latency and status."""
    import grpc

    from myservice.v1 import myservice_pb2 as pb
    from myservice.v1 import myservice_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=CALL_TIMEOUT)  # connected before the clock starts
        stub = pb_grpc.MyServiceStub(channel)
        print(json.dumps({"ready": True}), flush=True)
        time.sleep(max(0.0, at - time.monotonic()))
        t0 = time.monotonic()
        try:
            stub.Login(login_request(pb, *FIRST_TIME, f"storm-valid-{os.getpid()}"), timeout=CALL_TIMEOUT)
            code = "OK"
        except grpc.RpcError as e:
            code = f"{e.code().name}: {e.details()}"
        end = time.monotonic()
    print(json.dumps({"seconds": end - t0, "code": code, "end": end}), flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# The orchestrator.
# --------------------------------------------------------------------------------------------

def read_json_line(proc: subprocess.Popen, what: str, timeout: float = CALL_TIMEOUT) -> dict:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        raise common.BenchError(f"{what}: no answer (exit code {proc.poll()})")
    return json.loads(result[0])


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise common.BenchError(f"no {field} for pid {pid}")


def hashing_processes(pid: int) -> list[int]:
    """The gateway's password-checking children (MYSERVICE_LOGIN_HASH_PROCESS: the
    hashes' memory is theirs, so it is counted with the gateway's)."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                if b"myservice_gateway.hashproc" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
            except OSError:
                pass
    return found


def memory_kib(pid: int, field: str) -> int:
    """`field` of the gateway plus its hashing processes (0 for one that is gone)."""
    total = status_kib(pid, field)
    for child in hashing_processes(pid):
        try:
            total += status_kib(child, field)
        except (OSError, common.BenchError):
            pass
    return total


def _task_sched(pid: int) -> dict[int, tuple[int, int, int]]:
    """tid -> (ns on a CPU, ns waiting on a run queue, nice) for each thread of pid."""
    found = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            cpu, wait = (int(x) for x in (task / "schedstat").read_text().split()[:2])
            nice = int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
        except (OSError, ValueError):
            continue
        found[int(task.name)] = (cpu, wait, nice)
    return found


def sched_snapshot(gateway: int, others: dict[str, int]) -> dict[str, dict[int, tuple[int, int]]]:
    """Per part of the Echo path and of Login, per thread: (CPU ns, run-queue wait ns)
    so far (/proc/<pid>/task/<tid>/schedstat). Parts: the gateway's event loop (its
    main thread), its hashing threads (those at a nice value above 0), its other
    threads (grpc's), its hashing processes, its instances, and `others` (pids)."""
    parts: dict[str, dict[int, tuple[int, int]]] = {
        "gateway loop": {}, "hashing threads": {}, "gateway other": {}, "hashing processes": {}, "instance": {}}
    try:
        for tid, (cpu, wait, nice) in _task_sched(gateway).items():
            part = "gateway loop" if tid == gateway else "hashing threads" if nice > 0 else "gateway other"
            parts[part][tid] = (cpu, wait)
        hashing = set(hashing_processes(gateway))
        for children in Path(f"/proc/{gateway}/task").glob("*/children"):
            for child in map(int, children.read_text().split()):
                try:
                    front = Path(f"/proc/{child}/comm").read_text().strip() == "haproxy"
                except OSError:
                    continue
                part = "hashing processes" if child in hashing else "front" if front else "instance"
                parts.setdefault(part, {})
                parts[part].update({tid: (c, w) for tid, (c, w, _n) in _task_sched(child).items()})
    except OSError:
        pass
    for name, pid in others.items():
        parts[name] = {tid: (c, w) for tid, (c, w, _n) in _task_sched(pid).items()}
    return parts


def sched_delta(before: dict, after: dict) -> dict[str, tuple[float, float]]:
    """Per part: (CPU seconds, run-queue wait seconds) between two snapshots (a
    thread born in between counts from 0; one gone by the end is not counted)."""
    out = {}
    for part, threads in after.items():
        cpu = wait = 0
        for tid, (c, w) in threads.items():
            c0, w0 = before.get(part, {}).get(tid, (0, 0))
            cpu, wait = cpu + c - c0, wait + w - w0
        out[part] = (cpu / 1e9, wait / 1e9)
    return out


ECHO_PATH = ("echo client", "gateway loop", "instance")


class RssSampler:
    """The largest RSS of the gateway plus its hashing processes, sampled every 20 ms
    from now until result() (a sum of each one's own peak, VmHWM, would count the
    gateway's start-up hash and a hashing process's hash as if at the same time)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, memory_kib(self.pid, "VmRSS"))
            except (OSError, common.BenchError):
                pass

    def result(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def write_users(directory: Path) -> Path:
    from myservice_gateway.users import hash_password

    path = directory / "users.json"
    path.write_text(json.dumps({"users": {name: {"password_hash": hash_password(password)}
                                          for name, password in (VALID, ATTACKED, FIRST_TIME)}}))
    return path


def extract_baseline(rev: str, into: Path) -> Path:
    """gateway/myservice_gateway at `rev`, unpacked into `into` (importable from there)."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "gateway/myservice_gateway"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise common.BenchError(f"--baseline-rev {rev}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into), "--strip-components", "1"], input=archive.stdout, check=True)
    return into


def start_worker(processes: common.Processes, name: str, *args: str) -> subprocess.Popen:
    proc = processes.start(name, [sys.executable, __file__, "--worker", *args],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = read_json_line(proc, name)
    if not ready.get("ready"):
        raise common.BenchError(f"{name}: {ready}")
    return proc


def percentiles(latencies: list[float]) -> tuple[float, float]:
    values = sorted(latencies)
    return common._percentile(values, 0.50) * 1e3, common._percentile(values, 0.99) * 1e3


def one_run(scenario: str, args: argparse.Namespace, tmp: Path, users_file: Path) -> dict:
    processes = common.Processes()
    try:
        port = common._free_port()
        log_path = tmp / f"gateway-{scenario}.log"
        env = common.gateway_env(SCENARIO_ENV[scenario], {"MYSERVICE_USERS_FILE": str(users_file)}, args.gateway_env)
        if scenario == "baseline":  # the old gateway package first on the path (the rest is this tree's)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.baseline_dir), env.get("PYTHONPATH")]))
        # [::]: both 127.0.0.1 (the storm, the Echo session) and [::1] (the valid user) reach it.
        pinned = ["taskset", "-c", args.gateway_cpus] if args.gateway_cpus else []
        gateway = processes.start("gateway", [*pinned, str(BIN / "myservice"), "up", "--host", "[::]", "--port", str(port),
                                              "--max-instances", "2", "--log-level", "WARNING"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=log_path.open("wb"), env=env)
        common._wait_port(port, gateway, "gateway", log_path)
        v4, v6 = f"127.0.0.1:{port}", f"[::1]:{port}"
        echo = start_worker(processes, "echo", "echo", v4)
        time.sleep(0.5)  # the gateway settles after its first session
        quiet_from = time.monotonic()
        sched_quiet = sched_snapshot(gateway.pid, {"echo client": echo.pid})
        storm_at = quiet_from + args.quiet_seconds
        count = 1 if scenario == "single" else args.storm
        storm = start_worker(processes, "storm", "storm", v4, "--at", repr(storm_at), "--count", str(count),
                             *(["--many-peers"] if scenario == "many-peers" else []))
        valid = start_worker(processes, "valid", "valid", v6, "--at", repr(storm_at + args.valid_after))
        time.sleep(max(0.0, storm_at - time.monotonic() - 0.05))
        sched_at = time.monotonic()
        sched_storm = sched_snapshot(gateway.pid, {"echo client": echo.pid})
        rss_before = memory_kib(gateway.pid, "VmRSS")
        hwm_before = memory_kib(gateway.pid, "VmHWM")
        rss_sampler = RssSampler(gateway.pid)
        storm_answer = read_json_line(storm, "storm")
        answers = storm_answer["results"]
        rss_storm_max = rss_sampler.result()
        valid_result = read_json_line(valid, "valid")
        storm_end = max([end for _, end in answers] + [valid_result["end"], storm_at + MIN_STORM_WINDOW])
        time.sleep(max(0.0, storm_end - time.monotonic()))
        sched_end, sched_end_at = sched_snapshot(gateway.pid, {"echo client": echo.pid}), time.monotonic()
        echo.stdin.write("stop\n")
        echo.stdin.flush()
        echoes = read_json_line(echo, "echo")
        time.sleep(1.0)  # let the hashing threads give their memory back
        rss_after, hwm = memory_kib(gateway.pid, "VmRSS"), memory_kib(gateway.pid, "VmHWM")
    finally:
        processes.stop_all()
    quiet = [lat for t, lat in echoes["samples"] if quiet_from <= t < storm_at]
    during = [lat for t, lat in echoes["samples"] if storm_at <= t <= storm_end]
    if len(quiet) < 20 or len(during) < 20:
        raise common.BenchError(f"{scenario}: too few Echo samples (quiet {len(quiet)}, storm {len(during)})")
    codes: dict[str, int] = {}
    for code, _ in answers:
        codes[code] = codes.get(code, 0) + 1
    quiet_p50, quiet_p99 = percentiles(quiet)
    slowest = sorted(((lat, t - storm_at) for t, lat in echoes["samples"] if storm_at <= t <= storm_end), reverse=True)
    storm_p50, storm_p99 = percentiles(during)
    # Where the time went: per part, CPU seconds and run-queue wait in each window, and
    # the Echo path's run-queue wait per Echo call (the client, the loop, the instance).
    windows = {"quiet": (sched_delta(sched_quiet, sched_storm), sched_at - quiet_from,
                         sum(1 for t, _ in echoes["samples"] if quiet_from <= t < sched_at)),
               "storm": (sched_delta(sched_storm, sched_end), sched_end_at - sched_at,
                         sum(1 for t, _ in echoes["samples"] if sched_at <= t <= sched_end_at))}
    sched = {name: {"seconds": seconds, "echo_calls": calls,
                    "cpu_share": {part: cpu / seconds for part, (cpu, _w) in parts.items()},
                    "wait_us_per_echo": {part: 1e6 * wait / max(1, calls) for part, (_c, wait) in parts.items()
                                         if part in ECHO_PATH}}
             for name, (parts, seconds, calls) in windows.items()}
    return {
        "scenario": scenario, "valid_seconds": valid_result["seconds"], "valid_code": valid_result["code"],
        "quiet_p50_ms": quiet_p50, "quiet_p99_ms": quiet_p99, "storm_p50_ms": storm_p50, "storm_p99_ms": storm_p99,
        "p99_ratio": storm_p99 / quiet_p99, "p50_ratio": storm_p50 / quiet_p50,
        "storm_seconds": max(end for _, end in answers) - storm_at, "storm_codes": codes,
        "echo_samples": [len(quiet), len(during)], "echo_errors": echoes["errors"],
        "rss_before_mb": rss_before / 1024, "rss_peak_mb": hwm / 1024, "rss_after_mb": rss_after / 1024,
        "peak_before_storm_mb": hwm_before / 1024, "rss_storm_max_mb": rss_storm_max / 1024,
        # The slowest Echo calls of the storm window: (ms, seconds after the storm began).
        "storm_slowest": [(round(lat * 1e3, 2), round(at, 3)) for lat, at in slowest[:15]],
        "sched": sched, "storm_client_cpu_s": storm_answer.get("cpu_s"),
        # Every Echo call of the whole run slower than the quiet p99: (seconds after the
        # storm began, ms): are the slow ones spread out, or bunched (a stall of the loop)?
        "slow_calls": [(round(t - storm_at, 4), round(lat * 1e3, 3)) for t, lat in echoes["samples"]
                       if lat * 1e3 > quiet_p99],
    }


def render(rows_by_scenario: dict[str, list[dict]]) -> str:
    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    lines = [f"{'scenario':<11} {'valid Login':>12} {'ok':>5} {'Echo p50 quiet/storm':>21} {'p99 quiet/storm':>17} "
             f"{'p99 x':>6} {'x single':>8} {'storm s':>8} {'RSS MB before/storm/after':>25}", "-" * 121]
    single = statistics.median(r["storm_p99_ms"] for r in rows_by_scenario["single"]) if "single" in rows_by_scenario else None
    verdicts = []
    for scenario, rows in rows_by_scenario.items():
        ok = sum(r["valid_code"] == "OK" for r in rows)
        lines.append(
            f"{scenario:<11} {med(rows, 'valid_seconds') * 1e3:>9.0f} ms {ok:>2}/{len(rows):<2} "
            f"{med(rows, 'quiet_p50_ms'):>9.2f} / {med(rows, 'storm_p50_ms'):<8.2f} "
            f"{med(rows, 'quiet_p99_ms'):>7.2f} / {med(rows, 'storm_p99_ms'):<7.2f} "
            f"{med(rows, 'p99_ratio'):>5.2f}x "
            f"{(format(med(rows, 'storm_p99_ms') / single, '7.2f') + 'x') if single else '       -'} "
            f"{med(rows, 'storm_seconds'):>8.2f} "
            f"{med(rows, 'rss_before_mb'):>9.0f} / {med(rows, 'rss_storm_max_mb'):.0f} / {med(rows, 'rss_after_mb'):.0f}")
        if scenario not in ("baseline", "single"):
            valid_ok = ok == len(rows) and med(rows, "valid_seconds") <= TARGET_VALID_SECONDS
            echo_ok = med(rows, "p99_ratio") <= TARGET_ECHO_P99_RATIO
            verdict = (f"{scenario}: valid Login OK within {TARGET_VALID_SECONDS:.0f} s: "
                       f"{'PASS' if valid_ok else 'FAIL'}; Echo p99 within {TARGET_ECHO_P99_RATIO:.0f}x quiet: "
                       f"{'PASS' if echo_ok else 'FAIL'}")
            if single:
                single_ok = med(rows, "storm_p99_ms") / single <= TARGET_ECHO_P99_RATIO
                verdict += (f"; within {TARGET_ECHO_P99_RATIO:.0f}x of a single Login's: "
                            f"{'PASS' if single_ok else 'FAIL'}")
            verdicts.append(verdict)
    lines.append("")
    for scenario, rows in rows_by_scenario.items():
        per_run = "; ".join(", ".join(f"{k} {v}" for k, v in sorted(r["storm_codes"].items())) for r in rows)
        valid = ", ".join(f"{r['valid_seconds'] * 1e3:.0f} ms {r['valid_code'].split(':')[0]}" for r in rows)
        ratios = ", ".join(f"{r['p99_ratio']:.2f}x" for r in rows)
        lines.append(f"{scenario}: storm answers per run: {per_run}")
        lines.append(f"{' ' * len(scenario)}  valid Login per run: {valid}; Echo p99 ratio per run: {ratios}")
        waits = {w: {part: statistics.median(r["sched"][w]["wait_us_per_echo"].get(part, 0.0) for r in rows)
                     for part in ECHO_PATH} for w in ("quiet", "storm")}
        lines.append(f"{' ' * len(scenario)}  run-queue wait per Echo call, quiet -> storm: "
                     + ", ".join(f"{part} {waits['quiet'][part]:.0f} -> {waits['storm'][part]:.0f} us"
                                 for part in ECHO_PATH)
                     + f"; total {sum(waits['quiet'].values()):.0f} -> {sum(waits['storm'].values()):.0f} us")
        shares = {part: statistics.median(r["sched"]["storm"]["cpu_share"].get(part, 0.0) for r in rows)
                  for part in rows[0]["sched"]["storm"]["cpu_share"]}
        storm_cpu = [r["storm_client_cpu_s"] for r in rows if r.get("storm_client_cpu_s") is not None]
        lines.append(f"{' ' * len(scenario)}  CPU during the storm (cores): "
                     + ", ".join(f"{part} {share:.2f}" for part, share in shares.items())
                     + (f"; the storm client {statistics.median(storm_cpu):.2f} s in all" if storm_cpu else ""))
    return "\n".join(lines + [""] + verdicts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See docs/benchmarks.md.")
    p.add_argument("--runs", type=int, default=3, help="rounds of all scenarios (default %(default)s)")
    p.add_argument("--storm", type=int, default=200, help="Logins sent at once (default %(default)s)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help="comma-separated subset of %(default)s (baseline only with --baseline-rev)")
    p.add_argument("--quiet-seconds", type=float, default=3.0, help="Echo alone before the storm (default %(default)s)")
    p.add_argument("--valid-after", type=float, default=1.0,
                   help="seconds into the storm the valid Login is sent (default %(default)s)")
    p.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra gateway environment for every scenario, e.g. MYSERVICE_LOGIN_HASH_NICE=0 (repeatable)")
    p.add_argument("--gateway-cpus", metavar="LIST",
                   help="run the gateway (and its instance) on these CPUs only (taskset -c LIST), e.g. 0: "
                        "a gateway with less CPU than it has threads, as in a pod with a CPU limit")
    p.add_argument("--baseline-rev", metavar="REV",
                   help="also run scenario 'baseline': gateway/myservice_gateway as of git revision REV")
    p.add_argument("--json", metavar="PATH", help="also write every run's figures as JSON to PATH")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--at", type=float, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--many-peers", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return a
    try:
        a.gateway_env = dict(item.split("=", 1) for item in a.gateway_env)
    except ValueError:
        p.error("--gateway-env: KEY=VALUE")
    a.scenarios = [s for s in SCENARIOS if s in {x.strip() for x in a.scenarios.split(",")}]
    if not a.baseline_rev and "baseline" in a.scenarios:
        a.scenarios.remove("baseline")
    if not a.scenarios or a.runs < 1 or a.storm < 1:
        p.error(f"--scenarios: some of {','.join(SCENARIOS)}; --runs and --storm >= 1")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when we stop
        kind, address = args.worker
        if kind == "echo":
            return worker_echo(address)
        if kind == "storm":
            return worker_storm(address, args.at, args.count, args.many_peers)
        return worker_valid(address, args.at)

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    info = common.machine_info()
    common.say(f"{info['cpus']} CPU(s), load average {info['loadavg_start'][0]:.2f}; {args.runs} runs of "
               f"{', '.join(args.scenarios)}; storm of {args.storm} Logins, valid Login {args.valid_after:g} s in")
    rows: dict[str, list[dict]] = {s: [] for s in args.scenarios}
    with tempfile.TemporaryDirectory(prefix="login-storm-") as tmp:
        users_file = write_users(Path(tmp))
        if args.baseline_rev:
            args.baseline_dir = extract_baseline(args.baseline_rev, Path(tmp) / "baseline")
        with common.bench_errors():
            for run in range(args.runs):
                for scenario in common.rotated(args.scenarios, run):
                    row = one_run(scenario, args, Path(tmp), users_file)
                    rows[scenario].append(row)
                    common.say(f"run {run + 1} {scenario}: valid Login {row['valid_seconds'] * 1e3:.0f} ms "
                               f"{row['valid_code']}; Echo p99 {row['quiet_p99_ms']:.2f} -> {row['storm_p99_ms']:.2f} ms; "
                               f"RSS {row['rss_before_mb']:.0f} -> {row['rss_storm_max_mb']:.0f} MB in the storm")
    info["loadavg_end"] = os.getloadavg()
    print(f"Login storm: {args.storm} Logins at once (half unknown users, half wrong passwords) from 127.0.0.1, "
          f"a valid Login {args.valid_after:g} s in from [::1], one Echo session calling back to back; medians of "
          f"{args.runs} runs; {info['cpus']} CPUs, load average {info['loadavg_start'][0]:.1f} -> "
          f"{info['loadavg_end'][0]:.1f}\n")
    print(render(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "runs": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
