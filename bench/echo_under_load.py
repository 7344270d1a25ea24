#!/usr/bin/env python3
"""What a background CPU load does to one session's Echo latency, by kind of load
and by how its priority is lowered: the experiment behind the Login storm's Echo
p99 (docs/benchmarks.md, "Why the storm costs Echo its p99").

One `myservice up` (local mode, defaults) and one session calling MyServiceEcho
back to back from 127.0.0.1 (login_storm.py's Echo worker). Each condition is a
load process of its own, started stopped (SIGSTOP) in its own session, as the
bench's other processes are; the bench then alternates --window seconds with the
load stopped and --window seconds with it running (SIGCONT), --cycles times,
conditions interleaved (the order rotates every cycle). Reported per condition:
Echo p50/p99 in its loaded windows, the quiet windows' p99 (all conditions'
quiet windows pooled), the ratio, and how much CPU the load got.

Loads (--loads, comma-separated; KIND[:nice=N][:group=N]):
  spin             a pure CPU loop (Python; a few KiB of memory)
  argon2           argon2id checks as the gateway's hashing thread runs them
                   (the library's defaults: 64 MiB, t=3, p=4, on one thread)
  argon2-1m        the same with 1 MiB of memory (t=3): CPU-bound, cache-resident
  nice=N           the process's nice value (setpriority), as the gateway gives its
                   hashing threads (MYSERVICE_LOGIN_HASH_NICE)
  group=N          the nice value of the process's autogroup (/proc/self/autogroup):
                   with kernel.sched_autogroup_enabled=1 and no cpu cgroup, the
                   scheduler shares the CPUs between sessions first, and a thread's
                   nice value weighs only against its own session's threads

    .venv/bin/python bench/echo_under_load.py [--cycles 4] [--window 3]
        [--loads spin:nice=10,argon2:nice=10,argon2-1m:nice=10,spin:group=10,argon2:group=10]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_latency as common  # noqa: E402
import login_storm  # noqa: E402

BIN = Path(sys.executable).parent
DEFAULT_LOADS = "spin:nice=10,argon2:nice=10,argon2-1m:nice=10,spin:group=10,argon2:group=10"


def parse_load(spec: str) -> tuple[str, int, int]:
    kind, *opts = spec.split(":")
    if kind not in ("spin", "argon2", "argon2-1m"):
        raise ValueError(f"unknown load {kind!r}")
    values = {"nice": 0, "group": 0}
    for opt in opts:
        key, value = opt.split("=", 1)
        if key not in values:
            raise ValueError(f"unknown option {key!r}")
        values[key] = int(value)
    return kind, values["nice"], values["group"]


def worker_load(spec: str) -> int:
    """Lower our priority as told, say 'ready', then load the CPU until killed."""
    kind, nice, group = parse_load(spec)
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    if group:
        Path("/proc/self/autogroup").write_text(str(group))
    print(json.dumps({"ready": True, "autogroup": Path("/proc/self/autogroup").read_text().strip()}), flush=True)
    if kind == "spin":
        x = 0
        while True:
            x += 1
    memory = 65536 if kind == "argon2" else 1024
    while True:  # the 4 lanes on one thread, as users.py runs them (argon2 core, threads=1)
        _argon2_one_thread(memory)


def _argon2_one_thread(memory_kib: int) -> None:
    from argon2.low_level import core, ffi, lib
    out = ffi.new("uint8_t[]", 32)
    pwd = ffi.new("uint8_t[]", b"not-a-real-password")
    salt = ffi.new("uint8_t[]", b"0123456789abcdef")
    ctx = ffi.new("argon2_context *", dict(
        version=19, out=out, outlen=32, pwd=pwd, pwdlen=19, salt=salt, saltlen=16,
        secret=ffi.NULL, secretlen=0, ad=ffi.NULL, adlen=0, t_cost=3, m_cost=memory_kib, lanes=4, threads=1,
        allocate_cbk=ffi.NULL, free_cbk=ffi.NULL, flags=lib.ARGON2_DEFAULT_FLAGS))
    if core(ctx, lib.Argon2_id) != lib.ARGON2_OK:
        raise RuntimeError("argon2 failed")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=4)
    p.add_argument("--window", type=float, default=3.0)
    p.add_argument("--loads", default=DEFAULT_LOADS)
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--worker-load", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_load:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return worker_load(args.worker_load)
    specs = [s.strip() for s in args.loads.split(",") if s.strip()]
    for spec in specs:
        parse_load(spec)
    info = common.machine_info()
    common.say(f"{info['cpus']} CPU(s), load average {info['loadavg_start'][0]:.2f}; autogroup "
               f"{Path('/proc/sys/kernel/sched_autogroup_enabled').read_text().strip()}; loads {', '.join(specs)}")
    processes = common.Processes()
    loads: dict[str, subprocess.Popen] = {}
    windows: list[tuple[str, float, float]] = []  # (condition or 'quiet', start, end)
    load_cpu: dict[str, float] = {s: 0.0 for s in specs}
    with tempfile.TemporaryDirectory(prefix="echo-under-load-") as tmp, common.bench_errors():
        try:
            users_file = login_storm.write_users(Path(tmp))
            port = common._free_port()
            log_path = Path(tmp) / "gateway.log"
            env = common.gateway_env({"MYSERVICE_USERS_FILE": str(users_file)})
            gateway = processes.start("gateway", [str(BIN / "myservice"), "up", "--host", "127.0.0.1", "--port",
                                                  str(port), "--max-instances", "2", "--log-level", "WARNING"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=log_path.open("wb"), env=env)
            common._wait_port(port, gateway, "gateway", log_path)
            for spec in specs:
                proc = processes.start(f"load {spec}", [sys.executable, __file__, "--worker-load", spec],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
                ready = login_storm.read_json_line(proc, spec)
                os.kill(proc.pid, signal.SIGSTOP)
                loads[spec] = proc
                common.say(f"load {spec}: autogroup {ready['autogroup']}")
            echo = processes.start("echo", [sys.executable, login_storm.__file__, "--worker", "echo",
                                            f"127.0.0.1:{port}"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            login_storm.read_json_line(echo, "echo")
            time.sleep(1.0)
            for cycle in range(args.cycles):
                for spec in common.rotated(specs, cycle):
                    t0 = time.monotonic()
                    time.sleep(args.window)
                    t1 = time.monotonic()
                    windows.append(("quiet", t0, t1))
                    before = cpu_seconds(loads[spec].pid)
                    os.kill(loads[spec].pid, signal.SIGCONT)
                    t2 = time.monotonic()
                    time.sleep(args.window)
                    os.kill(loads[spec].pid, signal.SIGSTOP)
                    t3 = time.monotonic()
                    load_cpu[spec] += cpu_seconds(loads[spec].pid) - before
                    # The first 50 ms after a switch belong to neither side.
                    windows.append((spec, t2 + 0.05, t3))
            echo.stdin.write("stop\n")
            echo.stdin.flush()
            samples = login_storm.read_json_line(echo, "echo")["samples"]
        finally:
            for proc in loads.values():
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process would not see its stop signal
            processes.stop_all()
    info["loadavg_end"] = os.getloadavg()
    by: dict[str, list[float]] = {}
    for t, lat in samples:
        for name, start, end in windows:
            if start + (0.05 if name == "quiet" else 0) <= t and t + lat <= end:
                by.setdefault(name, []).append(lat)
                break
    quiet = sorted(by.get("quiet", []))
    q50, q99 = common._percentile(quiet, 0.5) * 1e3, common._percentile(quiet, 0.99) * 1e3
    print(f"Echo under a background load: {args.cycles} cycles of {args.window:g} s quiet / {args.window:g} s "
          f"loaded per condition; {info['cpus']} CPUs, load average {info['loadavg_start'][0]:.2f} -> "
          f"{info['loadavg_end'][0]:.2f}\n")
    print(f"{'condition':<24} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99 x quiet':>12} {'load CPU %':>11}")
    print(f"{'quiet (all)':<24} {len(quiet):>8} {q50:>8.2f} {q99:>8.2f} {'1.00x':>12} {'-':>11}")
    rows = []
    for spec in specs:
        values = sorted(by.get(spec, []))
        p50, p99 = common._percentile(values, 0.5) * 1e3, common._percentile(values, 0.99) * 1e3
        share = 100 * load_cpu[spec] / (args.cycles * args.window)
        print(f"{spec:<24} {len(values):>8} {p50:>8.2f} {p99:>8.2f} {p99 / q99:>11.2f}x {share:>10.0f}%")
        rows.append({"load": spec, "samples": len(values), "p50_ms": p50, "p99_ms": p99, "p99_ratio": p99 / q99,
                     "load_cpu_percent": share})
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "quiet": {"samples": len(quiet), "p50_ms": q50,
                                                                            "p99_ms": q99}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
