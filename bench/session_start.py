#!/usr/bin/env python3
"""Session start in local mode: how long a new session waits, with a warm pool
(`--warm-pool`, big enough for the largest burst) and without (cold: pool 0),
measured in the same run against real gateways (`myservice up`).

For every session the client (a grpc.aio process of its own) times:
  Login -> first Echo   from sending Login until the first MyServiceEcho has answered
  first call            from Login's answer until that first Echo has answered
                        (what the pool removes: the instance's process start)
  Login                 Login alone (the password hash)
  next call             the session's second Echo, right after the first: an ordinary
                        call on the same path, the reference for "first call"

Shapes: `one` (sessions one after another, each Login then Echo, back to back),
`burst8` and `burst32` (that many sessions at once). Hashes: `default` (argon2id,
as hash_password makes it: what a real users file holds) and `cheap` (bcrypt
cost 4, ~1 ms: so that bursts measure the session start, not the hashing queue).
Before each measurement the gateway is idle: no live session, the pool full (the
gateway's /metrics: myservice_gateway_live_sessions, myservice_gateway_warm_pool_idle);
after it, every session is shut down. Rounds interleave warm and cold, the order
rotating; the table shows p50/p99 over the sessions of all rounds, and the
cold/warm ratios. The warm rows also say how many first calls took a pool
member (the gateway's session start histogram, pod="warm").

Target (issue 8): warm, first call after Login p99 <= 20 ms.

    .venv/bin/python bench/session_start.py [--rounds 3] [--sequential 10] [--bursts 8,32]
        [--hashes default,cheap] [--json PATH]

Every process is a child of this one (PR_SET_PDEATHSIG), stopped on exit; traffic stays on loopback.
The last line is for scripts: `RESULT {json}`.
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
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_latency as common  # noqa: E402 - the other bench's process and percentile helpers

BIN = Path(sys.executable).parent
USER = ("bench", "bench-password")
POOLS = ("warm", "cold")
HASHES = ("default", "cheap")
CALL_TIMEOUT = 120.0
IDLE_TIMEOUT = 120.0  # longest wait for a gateway to be idle with its pool full
TARGET_WARM_FIRST_CALL_P99_MS = 20.0
# Logins of a burst come from one address and one user: the failure limits and the
# per-user limit would refuse them (that is what they are for); opened here, and
# the wait for a hashing thread made long enough for a burst of default hashes.
GATEWAY_ENV = {
    "MYSERVICE_LOGIN_QUEUE_MAX_WAIT_SECONDS": "120",
    "MYSERVICE_LOGIN_USER_FAILURE_BURST": "0",
    "MYSERVICE_LOGIN_PEER_FAILURE_BURST": "0",
    "MYSERVICE_MAX_SESSIONS_PER_USER": "0",
}


# --------------------------------------------------------------------------------------------
# The worker: one measurement, in its own process (no gRPC threads in the orchestrator).
# --------------------------------------------------------------------------------------------

def worker_main(address: str, shape: str, count: int, prefix: str) -> int:
    import asyncio

    import grpc

    from myservice.v1 import myservice_pb2 as pb
    from myservice.v1 import myservice_pb2_grpc as pb_grpc

    async def one(stub, session_id: str) -> dict:
        login = pb.LoginRequest(username=USER[0], password=USER[1], session_id=session_id)
        t0 = time.monotonic()
        try:
            token = (await stub.Login(login, timeout=CALL_TIMEOUT)).token
        except grpc.aio.AioRpcError as e:
            return {"session_id": session_id, "error": f"Login: {e.code().name} {e.details()}"}
        t1 = time.monotonic()
        metadata = (("authorization", token), ("session-id", session_id))
        try:
            reply = await stub.MyServiceEcho(pb.EchoRequest(value="first"), metadata=metadata, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as e:  # e.g. a cold start past the start timeout: counted, not measured
            return {"session_id": session_id, "error": f"first Echo: {e.code().name} {e.details()}"}
        t2 = time.monotonic()
        if reply.server_session_id != session_id:
            raise RuntimeError(f"{session_id}: answered for {reply.server_session_id!r}")
        await stub.MyServiceEcho(pb.EchoRequest(value="next"), metadata=metadata, timeout=CALL_TIMEOUT)
        t3 = time.monotonic()
        return {"session_id": session_id, "metadata": metadata, "pod": reply.pod_name,
                "login_to_echo": t2 - t0, "first_call": t2 - t1, "login": t1 - t0, "next_call": t3 - t2}

    async def run() -> list[dict]:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            stub = pb_grpc.MyServiceStub(channel)
            ids = [f"{prefix}-{i}" for i in range(count)]
            if shape == "one":
                sessions = [await one(stub, session_id) for session_id in ids]
            else:
                sessions = await asyncio.gather(*(one(stub, session_id) for session_id in ids))
            # Not measured: end every session, so the next measurement starts from an idle gateway.
            await asyncio.gather(*(stub.MyServiceShutdown(pb.ShutdownRequest(), metadata=s.pop("metadata"),
                                                          timeout=CALL_TIMEOUT) for s in sessions if "error" not in s))
            return sessions

    print(json.dumps({"sessions": asyncio.run(run())}), flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# The orchestrator.
# --------------------------------------------------------------------------------------------

def write_users(directory: Path, hash_kind: str) -> Path:
    import bcrypt

    from myservice_gateway.users import hash_password

    password_hash = (hash_password(USER[1]) if hash_kind == "default"
                     else bcrypt.hashpw(USER[1].encode(), bcrypt.gensalt(rounds=4)).decode())
    path = directory / f"users-{hash_kind}.json"
    path.write_text(json.dumps({"users": {USER[0]: {"password_hash": password_hash}}}))
    return path


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Gateway:
    """One `myservice up` with its /metrics port."""

    def __init__(self, processes: common.Processes, name: str, *, pool: int, max_instances: int,
                 users_file: Path, log_path: Path) -> None:
        self.name, self.pool = name, pool
        self.port, self.metrics_port = common._free_port(), common._free_port()
        env = common.gateway_env(GATEWAY_ENV, MYSERVICE_USERS_FILE=str(users_file),
                                 MYSERVICE_METRICS_PORT=str(self.metrics_port))
        self.proc = processes.start(name, [str(BIN / "myservice"), "gateway", "--host", "127.0.0.1",
                                           "--port", str(self.port), "--max-instances", str(max_instances),
                                           "--warm-pool", str(pool)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=log_path.open("wb"), env=env)
        common._wait_port(self.port, self.proc, name, log_path)
        self.address = f"127.0.0.1:{self.port}"

    def starts(self) -> dict[str, float]:
        samples = scrape(self.metrics_port)
        return {pod: samples.get(("myservice_gateway_session_start_seconds_count", (("pod", pod),)), 0.0)
                for pod in ("warm", "cold")}

    def wait_idle(self) -> None:
        """No live session and the pool full; then a moment for the last starts to settle."""
        deadline = time.monotonic() + IDLE_TIMEOUT
        while True:
            samples = scrape(self.metrics_port)
            live = samples.get(("myservice_gateway_live_sessions", ()), 0)
            idle = samples.get(("myservice_gateway_warm_pool_idle", ()), 0)
            if live == 0 and idle == self.pool:
                break
            if time.monotonic() > deadline:
                raise common.BenchError(f"{self.name}: not idle after {IDLE_TIMEOUT:.0f}s "
                                        f"({live:.0f} live sessions, {idle:.0f} pool members idle of {self.pool})")
            time.sleep(0.1)
        time.sleep(0.5)


def measure(processes: common.Processes, gateway: Gateway, shape: str, count: int, prefix: str) -> dict:
    gateway.wait_idle()
    before = gateway.starts()
    worker = processes.start(f"client {prefix}", [sys.executable, __file__, "--worker", gateway.address, shape,
                                                  str(count), prefix],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    out, _ = worker.communicate(timeout=CALL_TIMEOUT * 2)
    if worker.returncode != 0 or not out.strip():
        raise common.BenchError(f"client {prefix} exited with {worker.returncode}")
    answered = json.loads(out.splitlines()[-1])["sessions"]
    after = gateway.starts()
    sessions = [s for s in answered if "error" not in s]
    errors = [s["error"] for s in answered if "error" in s]
    for error in sorted(set(errors)):
        common.say(f"{prefix}: {errors.count(error)} x {error}")

    def pct(key: str, q: float) -> float:
        return common._percentile(sorted(s[key] for s in sessions), q) * 1e3

    return {
        **{f"{key}_{name}_ms": pct(key, q) for key in ("login_to_echo", "first_call", "login", "next_call")
           for name, q in (("p50", 0.50), ("p99", 0.99))},
        "sessions": len(sessions), "errors": len(errors), "warm_starts": after["warm"] - before["warm"],
        "cold_starts": after["cold"] - before["cold"],
        "samples": [{k: round(v, 6) if isinstance(v, float) else v for k, v in s.items()} for s in sessions],
    }


def shapes(args: argparse.Namespace) -> list[tuple[str, int]]:
    return [("one", args.sequential)] + [(f"burst{n}", n) for n in args.bursts]


def run(args: argparse.Namespace, tmp: Path) -> dict:
    """{(hash, shape, pool): [one dict per round]}"""
    results: dict[tuple[str, str, str], list[dict]] = {}
    biggest = max([args.sequential, *args.bursts])
    for hash_kind in args.hashes:
        processes = common.Processes()
        try:
            users_file = write_users(tmp, hash_kind)
            # Warm: the pool holds the largest burst; the bound leaves room for its sessions
            # and the pool's refill at once. Cold: the same bound, no pool.
            gateways = {
                "warm": Gateway(processes, f"gateway-warm-{hash_kind}", pool=biggest, max_instances=2 * biggest + 4,
                                users_file=users_file, log_path=tmp / f"gateway-warm-{hash_kind}.log"),
                "cold": Gateway(processes, f"gateway-cold-{hash_kind}", pool=0, max_instances=2 * biggest + 4,
                                users_file=users_file, log_path=tmp / f"gateway-cold-{hash_kind}.log"),
            }
            for round_ in range(args.rounds):
                order = POOLS if round_ % 2 == 0 else POOLS[::-1]
                for shape, count in shapes(args):
                    for pool in order:
                        prefix = f"{hash_kind}-{pool}-{shape}-r{round_}"
                        row = measure(processes, gateways[pool], shape, count, prefix)
                        results.setdefault((hash_kind, shape, pool), []).append(row)
                        common.say(f"round {round_ + 1} {hash_kind:<7} {shape:<7} {pool}: first call p50/p99 "
                                   f"{row['first_call_p50_ms']:.1f}/{row['first_call_p99_ms']:.1f} ms, "
                                   f"Login->Echo {row['login_to_echo_p50_ms']:.0f}/{row['login_to_echo_p99_ms']:.0f}"
                                   f" ms, warm {row['warm_starts']:.0f}/{row['sessions']}")
        finally:
            processes.stop_all()
    return results


def summarise(results: dict) -> list[dict]:
    table = []
    for (hash_kind, shape, pool), rows in results.items():
        entry = {"hash": hash_kind, "shape": shape, "pool": pool, "rounds": len(rows),
                 "sessions": sum(r["sessions"] for r in rows), "errors": sum(r["errors"] for r in rows),
                 "warm_starts": sum(r["warm_starts"] for r in rows)}
        pooled = [s for r in rows for s in r["samples"]]  # p99 over every round's sessions, not a median of maxima
        for key in ("login_to_echo", "first_call", "login", "next_call"):
            values = sorted(s[key] for s in pooled)
            for q, fraction in (("p50", 0.50), ("p99", 0.99)):
                entry[f"{key}_{q}_ms"] = common._percentile(values, fraction) * 1e3
        table.append(entry)
    return table


def render(table: list[dict]) -> str:
    by = {(e["hash"], e["shape"], e["pool"]): e for e in table}
    lines = [f"{'hash':<8} {'shape':<8} {'pool':<5} {'Login->first Echo p50/p99':>26} {'first call p50/p99':>20} "
             f"{'Login p50':>10} {'next call p50/p99':>19} {'warm':>8} {'failed':>7}", "-" * 120]
    for e in table:
        lines.append(f"{e['hash']:<8} {e['shape']:<8} {e['pool']:<5} "
                     f"{e['login_to_echo_p50_ms']:>11.1f} / {e['login_to_echo_p99_ms']:<8.1f} ms "
                     f"{e['first_call_p50_ms']:>7.1f} / {e['first_call_p99_ms']:<7.1f} ms "
                     f"{e['login_p50_ms']:>7.1f} ms {e['next_call_p50_ms']:>7.1f} / {e['next_call_p99_ms']:<6.1f} ms "
                     f"{e['warm_starts']:>4.0f}/{e['sessions']:<3} {e['errors']:>6}")
    lines += ["", "cold / warm:",
              f"{'hash':<8} {'shape':<8} {'Login->first Echo p50':>22} {'p99':>7} {'first call p50':>15} {'p99':>7}"]
    for (hash_kind, shape, pool), warm in by.items():
        cold = by.get((hash_kind, shape, "cold"))
        if pool != "warm" or not cold:
            continue
        lines.append(f"{hash_kind:<8} {shape:<8} "
                     f"{cold['login_to_echo_p50_ms'] / warm['login_to_echo_p50_ms']:>21.1f}x "
                     f"{cold['login_to_echo_p99_ms'] / warm['login_to_echo_p99_ms']:>6.1f}x "
                     f"{cold['first_call_p50_ms'] / warm['first_call_p50_ms']:>14.1f}x "
                     f"{cold['first_call_p99_ms'] / warm['first_call_p99_ms']:>6.1f}x")
    return "\n".join(lines)


def verdict(table: list[dict]) -> dict:
    warm = {f"{e['hash']}/{e['shape']}": round(e["first_call_p99_ms"], 2) for e in table if e["pool"] == "warm"}
    worst = max(warm.values()) if warm else float("nan")
    return {"warm_first_call_p99_ms": warm, "worst_ms": worst, "target_ms": TARGET_WARM_FIRST_CALL_P99_MS,
            "met": worst <= TARGET_WARM_FIRST_CALL_P99_MS}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--sequential", type=int, default=10, help="sessions one after another per round (10)")
    parser.add_argument("--bursts", default="8,32", help="burst sizes (8,32)")
    parser.add_argument("--hashes", default="default,cheap", help="password hashes: default (argon2id), cheap (bcrypt 4)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write everything, samples too")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir (gateway logs)")
    parser.add_argument("--worker", nargs=4, metavar=("ADDRESS", "SHAPE", "COUNT", "PREFIX"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    args.bursts = [int(n) for n in args.bursts.split(",") if n]
    args.hashes = [h for h in args.hashes.split(",") if h]
    if set(args.hashes) - set(HASHES) or args.rounds < 1 or args.sequential < 1 or any(n < 1 for n in args.bursts):
        parser.error("--hashes: default and/or cheap; --rounds, --sequential, --bursts: >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        address, shape, count, prefix = args.worker
        return worker_main(address, shape, int(count), prefix)

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    info = common.machine_info()
    common.say(f"{info['cpus']} CPU(s) {info['cpu_model']}, load average {info['loadavg_start'][0]:.2f}; "
               f"{args.rounds} rounds x {[s for s, _ in shapes(args)]} x {args.hashes} x warm/cold")
    tmp = Path(tempfile.mkdtemp(prefix="bench-session-start-"))
    try:
        results = run(args, tmp)
    except KeyboardInterrupt:
        common.say("interrupted")
        return 130
    except common.BenchError as e:
        common.say(f"error: {e}")
        return 1
    finally:
        if args.keep_logs:
            common.say(f"logs kept in {tmp}")
        else:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    info["loadavg_end"] = os.getloadavg()
    table = summarise(results)
    result = verdict(table)
    print(f"Session start, local mode: {args.rounds} rounds, {info['cpus']} CPUs, load average "
          f"{info['loadavg_start'][0]:.1f} -> {info['loadavg_end'][0]:.1f}\n")
    print(render(table))
    print(f"\nwarm first call after Login, p99: worst {result['worst_ms']:.1f} ms, target "
          f"<= {TARGET_WARM_FIRST_CALL_P99_MS:.0f} ms: {'met' if result['met'] else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "table": table, "verdict": result,
                                               "rounds": {"/".join(k): v for k, v in results.items()}}, indent=2) + "\n")
        common.say(f"JSON written to {args.json}")
    print("RESULT " + json.dumps(result, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
