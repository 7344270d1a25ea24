#!/usr/bin/env python3
"""Cold start of one instance: wall time and CPU seconds from process start to SERVING.

The instance is started the way the service image starts it: the command is read
from Dockerfile.service (ENTRYPOINT + CMD, tini left out; a console script such as
`myservice` is run as its entry point from pyproject.toml) together with the
image's PYTHON* variables (PYTHONDONTWRITEBYTECODE=1: nothing is compiled and
kept at run time, as in the image). Each start is a real local process of the
venv's interpreter, with PYTHONPATH on the tree's package folders, listening on a
free loopback port (MYSERVICE_INSTANCE_PORT). For each start:

  wall        from spawn until grpc.health.v1 Check("") answers SERVING (the
              readiness the gateway and the pod's probe wait for)
  cpu         CPU seconds of the child until then (every thread's on-CPU time,
              /proc/<pid>/task/*/schedstat, ns)
  cpu+stop    CPU seconds of its whole life, the SIGTERM stop included (os.wait4)

Shapes: `one` (--starts starts, one at a time) and `burstN` (--bursts bursts of
--burst-size starts at once: on 2 cores, 8 Python starts share them). The byte
code of every tree is compiled beforehand (as pip does in the image) and each
variant is started once, unmeasured, before the measured starts.

Variants, interleaved start by start (bursts burst by burst), the order rotating:
  after    the working tree (or --rev REV)
  before   --baseline-rev REV: that revision's tree (git archive into a temp dir,
           stubs generated with grpc_tools as setup.py does), its own Dockerfile.service
           command, run the same way; ratios after/before are printed

--importtime also runs each variant once under `python -X importtime` and prints
where its imports go (modules, top packages by self time, slowest modules).

Every child gets PR_SET_PDEATHSIG and its own process group, and is stopped with
SIGTERM (SIGKILL after 10 s); traffic stays on loopback.

    .venv/bin/python bench/instance_start.py [--starts 20] [--bursts 3] [--burst-size 8]
        [--baseline-rev REV] [--rev REV] [--importtime] [--json PATH]

The last line is for scripts: `RESULT {json}`.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# The children's environment is ours as we got it (not the line below).
ORIGINAL_ENV = dict(os.environ)
# The bench forks children while gRPC's threads (the health checks) are alive: no fork handlers.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_latency as common  # noqa: E402 - the other benches' process and percentile helpers

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
SERVING = health_pb2.HealthCheckResponse.SERVING
# Where a tree's files are needed from (git archive of a revision).
TREE_PATHS = ("pyproject.toml", "setup.py", "Dockerfile.service", "proto", "api", "gateway", "operator",
              "service_image", "client")


# --------------------------------------------------------------------------------------------
# A tree to measure: its source folders and the image's command.
# --------------------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    root: Path
    label: str                       # "working tree" or the revision
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    image_command: str = ""          # as Dockerfile.service says it


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def image_command(dockerfile: str) -> tuple[list[str], dict[str, str]]:
    """The final stage's ENTRYPOINT + CMD (exec form) and its PYTHON* variables."""
    entry, cmd, env = [], [], {}
    for word, rest in dockerfile_instructions(dockerfile):
        if word == "FROM":  # only the last stage counts
            entry, cmd, env = [], [], {}
        elif word == "ENTRYPOINT":
            entry, cmd = json.loads(rest), []  # a new ENTRYPOINT resets CMD, as Docker does
        elif word == "CMD":
            cmd = json.loads(rest)
        elif word == "ENV":
            for token in shlex.split(rest):
                key, sep, value = token.partition("=")
                if sep and key.startswith("PYTHON"):
                    env[key] = value
    argv = entry + cmd
    if argv and Path(argv[0]).name == "tini":
        argv = argv[1:]
        if argv and argv[0] == "--":
            argv = argv[1:]
    if not argv:
        raise common.BenchError("Dockerfile.service: no ENTRYPOINT/CMD in exec form")
    return argv, env


def local_argv(image_argv: list[str], scripts: dict[str, str]) -> list[str]:
    """The image's command with this venv's interpreter: `python ...` as it is, a
    console script as its entry point (`python -c 'from M import F; ...'`)."""
    program, rest = Path(image_argv[0]).name, image_argv[1:]
    if re.fullmatch(r"python[0-9.]*", program):
        return [PYTHON, *rest]
    if program not in scripts:
        raise common.BenchError(f"{image_argv[0]}: not python and not a console script of pyproject.toml")
    module, _, func = scripts[program].partition(":")
    return [PYTHON, "-c", f"import sys; from {module} import {func}; sys.exit({func}())", *rest]


def package_dirs(root: Path) -> list[Path]:
    """The folders the packages sit in (pyproject's packages.find `where`)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())
    where = project.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("where", ["."])
    return [root / w for w in where]


def protos_of(root: Path) -> list[str]:
    """setup.py's PROTOS (the protos the build generates stubs from)."""
    tree = ast.parse((root / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PROTOS" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise common.BenchError(f"{root}/setup.py: no PROTOS")


def generate_stubs(root: Path) -> None:
    """What setup.py's build does: the gRPC/protobuf stubs from proto/, with grpc_tools."""
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    for proto in protos_of(root):
        subprocess.run([PYTHON, "-m", "grpc_tools.protoc", f"-I{root / 'proto'}", f"-I{include}",
                        f"--python_out={root / 'proto'}", f"--grpc_python_out={root / 'proto'}",
                        str(root / "proto" / proto)], check=True)


def extract(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    listed = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", rev],
                            capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        raise common.BenchError(f"revision {rev}: {listed.stderr.strip()}")
    paths = [p for p in TREE_PATHS if p in listed.stdout.split()]
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, *paths], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    generate_stubs(into)
    return into


def prepare(name: str, root: Path, label: str) -> Variant:
    dirs = package_dirs(root)
    if not list((root / "proto").rglob("*_pb2.py")):
        generate_stubs(root)
    # Byte code first, as pip compiles on install in the image (PYTHONDONTWRITEBYTECODE=1 at run time).
    subprocess.run([PYTHON, "-m", "compileall", "-q", *map(str, dirs)], check=True, stdout=subprocess.DEVNULL)
    scripts = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {}).get("scripts", {})
    image_argv, image_env = image_command((root / "Dockerfile.service").read_text())
    env = {k: v for k, v in ORIGINAL_ENV.items() if not k.startswith(("MYSERVICE_", "PYTHON"))}
    env.update(image_env)
    env["PYTHONPATH"] = os.pathsep.join(map(str, dirs))  # ahead of the venv's editable finder
    env["MYSERVICE_INSTANCE_HOST"] = "127.0.0.1"
    return Variant(name, root, label, local_argv(image_argv, scripts), env, shlex.join(image_argv))


# --------------------------------------------------------------------------------------------
# One start: spawn, wait for SERVING, read the CPU, stop.
# --------------------------------------------------------------------------------------------

def cpu_on_cpu_seconds(pid: int) -> float:
    """On-CPU time of every live thread of `pid` (schedstat: ns, not clock ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


@dataclass
class Start:
    variant: str
    shape: str
    proc: subprocess.Popen
    port: int
    log: Path
    t0: float
    wall: float | None = None
    cpu: float | None = None
    cpu_total: float | None = None
    exit_code: int | None = None
    error: str | None = None

    def record(self) -> dict:
        return {"variant": self.variant, "shape": self.shape, "wall_s": self.wall, "cpu_s": self.cpu,
                "cpu_total_s": self.cpu_total, "exit_code": self.exit_code, "error": self.error}


def spawn(variant: Variant, shape: str, port: int, tmp: Path, *, python_args: tuple[str, ...] = ()) -> Start:
    log = tmp / f"{variant.name}-{port}-{time.monotonic_ns()}.log"
    argv = [variant.argv[0], *python_args, *variant.argv[1:]]
    with open(log, "wb") as stderr:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, env=dict(variant.env, MYSERVICE_INSTANCE_PORT=str(port)),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True, preexec_fn=common._die_with_parent)
    return Start(variant.name, shape, proc, port, log, t0)


def wait_serving(start: Start) -> None:
    """Set start.wall and start.cpu once its health answers SERVING (or start.error)."""
    deadline = start.t0 + START_TIMEOUT
    address = ("127.0.0.1", start.port)
    try:
        # First the port (a refused connect costs microseconds; no gRPC until something listens) ...
        while True:
            if start.proc.poll() is not None:
                raise RuntimeError(f"exited with {start.proc.returncode} before SERVING{common._tail(start.log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not listening after {START_TIMEOUT:g}s{common._tail(start.log)}")
            try:
                socket.create_connection(address, timeout=1).close()
                break
            except OSError:
                time.sleep(0.002)
        # ... then the health check, as the gateway and the probes ask it.
        with grpc.insecure_channel(f"127.0.0.1:{start.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=max(0.1, deadline - time.monotonic()))
                    if reply.status == SERVING:
                        start.wall = time.monotonic() - start.t0
                        start.cpu = cpu_on_cpu_seconds(start.proc.pid)
                        return
                except grpc.RpcError as e:
                    if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise RuntimeError(f"health check: {e.code().name} {e.details()}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not SERVING after {START_TIMEOUT:g}s{common._tail(start.log)}")
                time.sleep(0.002)
    except (RuntimeError, TimeoutError) as e:
        start.error = str(e)


def stop(starts: list[Start]) -> None:
    """SIGTERM to all at once, then reap each (os.wait4: its CPU over its whole life)."""
    for s in starts:
        if s.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                s.proc.send_signal(signal.SIGTERM)
    for s in starts:
        if s.proc.returncode is not None:
            continue
        end = time.monotonic() + STOP_TIMEOUT
        while True:
            pid, status, usage = os.wait4(s.proc.pid, os.WNOHANG)
            if pid:
                s.proc.returncode = s.exit_code = os.waitstatus_to_exitcode(status)
                s.cpu_total = usage.ru_utime + usage.ru_stime
                break
            if time.monotonic() > end:
                common.say(f"{s.variant} pid {s.proc.pid} did not stop in {STOP_TIMEOUT:g}s: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(s.proc.pid, signal.SIGKILL)
                end = float("inf")
            time.sleep(0.005)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(s.proc.pid, signal.SIGKILL)  # anything it left in its group
        if s.error is None and s.exit_code != 0:
            s.error = f"exit {s.exit_code} after SIGTERM{common._tail(s.log)}"
        with contextlib.suppress(OSError):
            s.log.unlink()


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(common._free_port())
    return sorted(ports)


def measure(variant: Variant, shape: str, size: int, tmp: Path) -> list[Start]:
    starts = [spawn(variant, shape, port, tmp) for port in free_ports(size)]
    try:
        if size == 1:
            wait_serving(starts[0])
        else:
            threads = [threading.Thread(target=wait_serving, args=(s,)) for s in starts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        stop(starts)
    for s in starts:
        if s.error:
            common.say(f"{variant.name} {shape}: {s.error}")
    return starts


# --------------------------------------------------------------------------------------------
# -X importtime: where one start's imports go.
# --------------------------------------------------------------------------------------------

IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


def importtime(variant: Variant, tmp: Path, top: int) -> dict:
    start = spawn(variant, "importtime", free_ports(1)[0], tmp, python_args=("-X", "importtime"))
    text = ""
    try:
        wait_serving(start)
        text = start.log.read_text(errors="replace")
    finally:
        stop([start])
    if start.error:
        raise common.BenchError(f"{variant.name} -X importtime: {start.error}")
    modules = []
    for line in text.splitlines():
        m = IMPORT_LINE.match(line)
        if m:
            modules.append((m.group(4), int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2))
    by_package: dict[str, int] = {}
    for name, self_us, _, _ in modules:
        top_name = name.split(".")[0]
        by_package[top_name] = by_package.get(top_name, 0) + self_us
    return {
        "modules": len(modules),
        "self_total_ms": sum(m[1] for m in modules) / 1e3,
        "top_packages_self_ms": sorted(((k, v / 1e3) for k, v in by_package.items()), key=lambda kv: -kv[1])[:top],
        "top_modules_self_ms": [(m[0], m[1] / 1e3) for m in sorted(modules, key=lambda m: -m[1])[:top]],
        "top_level_cumulative_ms": [(m[0], m[2] / 1e3) for m in sorted((m for m in modules if m[3] == 0),
                                                                       key=lambda m: -m[2])[:top]],
        "packages": sorted({m[0].split(".")[0] for m in modules}),
    }


# --------------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    return common._percentile(sorted(values), q)


def summarise(samples: list[dict], variants: list[str], shapes: list[str]) -> list[dict]:
    rows = []
    for shape in shapes:
        for name in variants:
            ok = [s for s in samples if s["variant"] == name and s["shape"] == shape and not s["error"]]
            failed = sum(1 for s in samples if s["variant"] == name and s["shape"] == shape and s["error"])
            walls = [s["wall_s"] * 1e3 for s in ok]
            cpus = [s["cpu_s"] * 1e3 for s in ok]
            totals = [s["cpu_total_s"] * 1e3 for s in ok if s["cpu_total_s"] is not None]
            row = {"variant": name, "shape": shape, "n": len(ok), "failed": failed}
            for key, values in (("wall_ms", walls), ("cpu_ms", cpus)):
                row[key] = {"p50": pct(values, 0.5), "p90": pct(values, 0.9), "max": max(values, default=float("nan")),
                            "mean": statistics.fmean(values) if values else float("nan")}
            row["cpu_total_ms"] = {"p50": pct(totals, 0.5)}
            rows.append(row)
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    out = []
    for shape in dict.fromkeys(r["shape"] for r in rows):
        by = {r["variant"]: r for r in rows if r["shape"] == shape}
        if "after" in by and "before" in by:
            a, b = by["after"], by["before"]
            out.append({"shape": shape, **{f"{k}_{q}": a[k][q] / b[k][q] if b[k][q] else float("nan")
                                          for k in ("wall_ms", "cpu_ms") for q in ("p50", "p90", "max")}})
    return out


def render(rows: list[dict], rats: list[dict]) -> str:
    lines = ["| variant | shape | n | wall p50 / p90 / max ms | cpu to SERVING p50 / p90 / max ms | cpu+stop p50 ms | failed |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        w, c = r["wall_ms"], r["cpu_ms"]
        lines.append(f"| {r['variant']} | {r['shape']} | {r['n']} | {w['p50']:.0f} / {w['p90']:.0f} / {w['max']:.0f} "
                     f"| {c['p50']:.0f} / {c['p90']:.0f} / {c['max']:.0f} | {r['cpu_total_ms']['p50']:.0f} | {r['failed']} |")
    if rats:
        lines += ["", "| after / before | wall p50 | wall p90 | wall max | cpu p50 | cpu p90 | cpu max |",
                  "|---|---|---|---|---|---|---|"]
        for r in rats:
            lines.append(f"| {r['shape']} | " + " | ".join(f"{r[f'{k}_{q}']:.2f}" for k in ("wall_ms", "cpu_ms")
                                                           for q in ("p50", "p90", "max")) + " |")
    return "\n".join(lines)


def render_importtime(name: str, it: dict) -> str:
    def cells(pairs):
        return ", ".join(f"{k} {v:.1f}" for k, v in pairs)
    return (f"{name}: {it['modules']} modules, {it['self_total_ms']:.0f} ms of imports (self, under -X importtime)\n"
            f"  by package (self ms): {cells(it['top_packages_self_ms'])}\n"
            f"  slowest modules (self ms): {cells(it['top_modules_self_ms'])}\n"
            f"  top-level imports (cumulative ms): {cells(it['top_level_cumulative_ms'])}")


# --------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See docs/benchmarks.md, 'Instance cold start'.")
    p.add_argument("--starts", type=int, default=20, help="one-at-a-time starts per variant (default %(default)s)")
    p.add_argument("--bursts", type=int, default=3, help="bursts per variant (default %(default)s)")
    p.add_argument("--burst-size", type=int, default=8, help="starts at once in a burst (default %(default)s)")
    p.add_argument("--rev", metavar="REV", help="measure REV as 'after' instead of the working tree")
    p.add_argument("--baseline-rev", metavar="REV", help="also measure REV as 'before', interleaved, with ratios")
    p.add_argument("--importtime", action="store_true", help="also one start of each variant under -X importtime")
    p.add_argument("--top", type=int, default=10, help="rows of each --importtime list (default %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write everything (every start too) as JSON")
    a = p.parse_args(argv)
    if a.starts < 0 or a.bursts < 0 or a.burst_size < 1 or not (a.starts or a.bursts):
        p.error("--starts/--bursts >= 0 (not both 0), --burst-size >= 1")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = common.machine_info()
    with common.bench_errors(), tempfile.TemporaryDirectory(prefix="instance-start-") as tmp_name:
        tmp = Path(tmp_name)
        variants = [prepare("after", extract(args.rev, tmp / "after") if args.rev else REPO,
                            args.rev or "working tree")]
        if args.baseline_rev:
            variants.append(prepare("before", extract(args.baseline_rev, tmp / "before"), args.baseline_rev))
        for v in variants:
            common.say(f"{v.name} ({v.label}): image command `{v.image_command}`, here: {shlex.join(v.argv)}")
        for v in variants:  # unmeasured: page cache, the first fork
            warm = measure(v, "warm-up", 1, tmp)[0]
            if warm.error:
                raise common.BenchError(f"{v.name} does not start: {warm.error}")
        burst_shape = f"burst{args.burst_size}"
        samples: list[dict] = []
        for i in range(args.starts):
            for v in common.rotated(variants, i):
                samples += [s.record() for s in measure(v, "one", 1, tmp)]
        common.say(f"{args.starts} starts one at a time per variant done")
        for i in range(args.bursts):
            for v in common.rotated(variants, i):
                samples += [s.record() for s in measure(v, burst_shape, args.burst_size, tmp)]
                time.sleep(0.5)  # the burst's stops settle before the next one
            common.say(f"burst {i + 1}/{args.bursts} done")
        imports = {v.name: importtime(v, tmp, args.top) for v in variants} if args.importtime else {}
    info["loadavg_end"] = os.getloadavg()
    shapes = [s for s, n in (("one", args.starts), (burst_shape, args.bursts)) if n]
    rows = summarise(samples, [v.name for v in variants], shapes)
    rats = ratios(rows)
    print(render(rows, rats))
    for name, it in imports.items():
        print()
        print(render_importtime(name, it))
    load = " ".join(f"{x:.2f}" for x in info["loadavg_start"]), " ".join(f"{x:.2f}" for x in info["loadavg_end"])
    print(f"\nload average {load[0]} at the start, {load[1]} at the end; {info['cpus']} CPUs, Python {info['python']}")
    result = {"machine": info, "variants": [{"name": v.name, "tree": v.label, "image_command": v.image_command,
                                             "argv": v.argv, "python_env": {k: v2 for k, v2 in v.env.items() if k.startswith("PYTHON")}}
                                            for v in variants],
              "rows": rows, "ratios": rats, "importtime": imports}
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "samples": samples}, indent=1))
    print("RESULT " + json.dumps({"rows": [{"variant": r["variant"], "shape": r["shape"], "wall_p50_ms": r["wall_ms"]["p50"],
                                            "wall_p90_ms": r["wall_ms"]["p90"], "cpu_p50_ms": r["cpu_ms"]["p50"],
                                            "failed": r["failed"]} for r in rows], "ratios": rats}))
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
