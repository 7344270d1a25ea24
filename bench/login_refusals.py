#!/usr/bin/env python3
"""Login refusals side by side: does any refusal path answer faster or slower than
the others (user enumeration by timing, issue 15 item 5)?

A real gateway (`myservice up`) with a users file holding an argon2id user (alice,
made by hash_password: the library's defaults) and a bcrypt user of cost 10 (bob,
what Helm's htpasswd made). Timed, one Login at a time over one channel, --rounds
rounds in a rotated order (so that noise from other jobs falls on every path alike):

  unknown user                 a username not in the file
  wrong password, argon2       alice, a wrong password
  wrong password, bcrypt       bob, a wrong password
  73 bytes, bcrypt             bob, his 72-byte password plus one byte (bcrypt reads 72)
  2000 bytes                   alice, a 2000-byte password (over the 1024-byte limit)
  success, argon2 / bcrypt     for reference: successes are not padded

Reported: the median and p90 of each, and each median's ratio to the unknown user's;
also the gateway's CPU time per Login (the sum over its threads of the time on a CPU,
/proc/<pid>/task/*/schedstat, with its password-checking processes': the work done,
which a busy machine's waiting does not inflate as it does the wall time). Target: every refusal path within 30 % of every
other (max/min of the medians <= 1.3), in wall time and in CPU time.

The gateway runs with MYSERVICE_LOGIN_USER_FAILURE_BURST=0 and
MYSERVICE_LOGIN_PEER_FAILURE_BURST=0 (the failure buckets off: every Login here comes
from 127.0.0.1, and the refusals would otherwise be throttled, which answers at once
and measures nothing) and MYSERVICE_LOGIN_CACHE_SECONDS=0 (a success is checked for
real every time). With --baseline-rev REV a second gateway runs the gateway package
as it was at REV (e.g. 165c217, before item 5), timed in the same rounds.

    .venv/bin/python bench/login_refusals.py [--rounds 20] [--baseline-rev REV]
        [--gateway-cpus LIST] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_latency as common  # noqa: E402 - the other bench's process helpers

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
BCRYPT_COST = 10
ALICE = ("alice", "alice-password")
BOB = ("bob", "b" * 72)  # a 72-byte password: the longest bcrypt reads
PATHS = {
    "unknown user": ("nobody", "alice-password"),
    "wrong password, argon2": ("alice", "wrong-password"),
    "wrong password, bcrypt": ("bob", "wrong-password"),
    "73 bytes, bcrypt": ("bob", BOB[1] + "x"),
    "2000 bytes": ("alice", "x" * 2000),
    "success, argon2": ALICE,
    "success, bcrypt": BOB,
}
REFUSALS = [p for p in PATHS if not p.startswith("success")]
TARGET_SPREAD = 1.3
GATEWAY_ENV = {
    "MYSERVICE_LOGIN_USER_FAILURE_BURST": "0",
    "MYSERVICE_LOGIN_PEER_FAILURE_BURST": "0",
    "MYSERVICE_LOGIN_CACHE_SECONDS": "0",
}


def write_users(directory: Path) -> Path:
    import bcrypt

    from myservice_gateway.users import hash_password

    path = directory / "users.json"
    path.write_text(json.dumps({"users": {
        ALICE[0]: {"password_hash": hash_password(ALICE[1])},
        BOB[0]: {"password_hash": bcrypt.hashpw(BOB[1].encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()},
    }}))
    return path


def extract_baseline(rev: str, into: Path) -> Path:
    """The gateway package as it was at `rev`, to put first on the baseline gateway's path."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "gateway/myservice_gateway"],
                             capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into), "--strip-components", "1"], input=archive.stdout, check=True)
    return into


def cpu_ns(pid: int, *, children: bool = True) -> int:
    """Nanoseconds the process's threads have spent on a CPU, with its password-checking
    processes' (MYSERVICE_LOGIN_HASH_PROCESS; the hashing threads and processes are a
    pool's: they live as long as the gateway, so none of their time is lost)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError):
            pass  # a thread that ended meanwhile
        if not children:
            continue
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except (OSError, ValueError):
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/cmdline", "rb") as f:
                    hashing = b"myservice_gateway.hashproc" in f.read()
            except OSError:
                continue
            if hashing:
                total += cpu_ns(kid, children=False)
    return total


def start_gateway(processes: common.Processes, name: str, users_file: Path, tmp: Path, args,
                  pythonpath: Path | None = None) -> tuple[int, int]:
    port = common._free_port()
    log_path = tmp / f"gateway-{name}.log"
    env = common.gateway_env(GATEWAY_ENV, MYSERVICE_USERS_FILE=str(users_file))
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    pinned = ["taskset", "-c", args.gateway_cpus] if args.gateway_cpus else []
    gateway = processes.start(name, [*pinned, str(BIN / "myservice"), "up", "--port", str(port),
                                     "--max-instances", "1", "--log-level", "WARNING"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_path.open("wb"), env=env)
    common._wait_port(port, gateway, name, log_path)
    return port, gateway.pid


def measure(gateways: dict[str, tuple[int, int]], rounds: int) -> tuple[dict, dict]:
    """Seconds and gateway CPU seconds per (gateway, path), one Login at a time, rotated
    order each round."""
    import grpc

    from myservice.v1 import myservice_pb2 as pb
    from myservice.v1 import myservice_pb2_grpc as pb_grpc

    stubs = {name: pb_grpc.MyServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
             for name, (port, _) in gateways.items()}
    times: dict[str, dict[str, list[float]]] = {name: {path: [] for path in PATHS} for name in gateways}
    cpu: dict[str, dict[str, list[float]]] = {name: {path: [] for path in PATHS} for name in gateways}
    jobs = [(name, path) for name in gateways for path in PATHS]
    expected_refusal = grpc.StatusCode.PERMISSION_DENIED
    for round_ in range(rounds + 1):  # round 0 warms up (channels, first hashes) and is not counted
        shift = round_ % len(jobs)
        for name, path in jobs[shift:] + jobs[:shift]:
            username, password = PATHS[path]
            request = pb.LoginRequest(username=username, password=password, session_id=f"r{round_}")
            pid = gateways[name][1]
            cpu_start, start = cpu_ns(pid), time.perf_counter()
            try:
                stubs[name].Login(request, timeout=60)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
            seconds = time.perf_counter() - start
            time.sleep(0.005)  # the gateway's last steps after its answer (its CPU time is read next)
            cpu_seconds = (cpu_ns(pid) - cpu_start) / 1e9
            want = grpc.StatusCode.OK if path.startswith("success") else expected_refusal
            if code != want:
                raise common.BenchError(f"{name} {path}: {code.name}, expected {want.name}")
            if round_:
                times[name][path].append(seconds)
                cpu[name][path].append(cpu_seconds)
        if round_ and round_ % 5 == 0:
            common.say(f"round {round_}/{rounds}")
    return times, cpu


def summarize(times: dict[str, list[float]], cpu: dict[str, list[float]]) -> dict:
    rows = {}
    reference = statistics.median(times["unknown user"])
    cpu_reference = statistics.median(cpu["unknown user"])
    for path, samples in times.items():
        ordered = sorted(samples)
        median, cpu_median = statistics.median(ordered), statistics.median(cpu[path])
        rows[path] = {"median_ms": median * 1e3, "p90_ms": ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)] * 1e3,
                      "ratio": median / reference, "cpu_median_ms": cpu_median * 1e3,
                      "cpu_ratio": cpu_median / cpu_reference if cpu_reference else float("nan"),
                      "n": len(samples)}

    def spread(key: str) -> float:
        medians = [rows[p][key] for p in REFUSALS]
        return max(medians) / min(medians) if min(medians) > 0 else float("inf")

    return {"paths": rows, "spread": spread("median_ms"), "cpu_spread": spread("cpu_median_ms")}


def render(name: str, summary: dict) -> str:
    lines = [f"{name}:", "| path | median ms | p90 ms | / unknown user | gateway CPU ms (median) | / unknown user |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for path, row in summary["paths"].items():
        lines.append(f"| {path} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | {row['ratio']:.2f} "
                     f"| {row['cpu_median_ms']:.1f} | {row['cpu_ratio']:.2f} |")
    for label, key in (("wall time", "spread"), ("CPU time", "cpu_spread")):
        verdict = "met" if summary[key] <= TARGET_SPREAD else "MISSED"
        lines.append(f"refusal paths, {label}: slowest median / fastest = {summary[key]:.2f} "
                     f"(target <= {TARGET_SPREAD}: {verdict})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (one Login of each path each)")
    parser.add_argument("--baseline-rev", help="also time the gateway package as it was at this git revision")
    parser.add_argument("--gateway-cpus", help="pin the gateway(s) to these CPUs (taskset -c LIST)")
    parser.add_argument("--json", help="write the samples and summaries here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = common.machine_info()
    common.say(f"{info['cpus']} CPU(s), load average {info['loadavg_start'][0]:.2f}; {args.rounds} rounds")
    processes = common.Processes()
    try:
        with common.bench_errors(), tempfile.TemporaryDirectory(prefix="login-refusals-") as tmp_name:
            tmp = Path(tmp_name)
            users_file = write_users(tmp)
            # Every gateway starts before this process makes a gRPC thread (fork + exec only then).
            gateways = {"this tree": start_gateway(processes, "this tree", users_file, tmp, args)}
            if args.baseline_rev:
                gateways[f"baseline {args.baseline_rev}"] = start_gateway(
                    processes, f"baseline {args.baseline_rev}", users_file, tmp, args,
                    pythonpath=extract_baseline(args.baseline_rev, tmp / "baseline"))
            times, cpu = measure(gateways, args.rounds)
    finally:
        processes.stop_all()
    info["loadavg_end"] = os.getloadavg()
    summaries = {name: summarize(by_path, cpu[name]) for name, by_path in times.items()}
    print(f"Login refusals: one Login at a time from 127.0.0.1, {args.rounds} rounds (rotated order), failure "
          f"buckets and the returning-user cache off; alice argon2id (library defaults), bob bcrypt cost "
          f"{BCRYPT_COST}; {info['cpus']} CPUs, load average {info['loadavg_start'][0]:.1f} -> "
          f"{info['loadavg_end'][0]:.1f}\n")
    print("\n\n".join(render(name, summary) for name, summary in summaries.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "samples": times, "cpu_samples": cpu, "summaries": summaries},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
