#!/usr/bin/env python3
"""The scale test's load generator (bench/scale/run.sh runs it; see docs/benchmarks.md, "Scale").

Against a release installed by run.sh (kwok nodes, instance pods placed on them):

  ramp    Logins through the gateway at a steady --rate (open loop: Login i is sent at
          i/rate s whatever the earlier ones are doing), --users users round robin,
          until --sessions sessions exist;
  settle  until every session is Ready (or --ready-timeout);
  idle    --idle-seconds with nothing happening: what idle sessions cost the API;
  end     every session deleted (one DELETE of the collection), until the watch saw
          them all go; then the instance pods.

Every session's status is followed by ONE watch of MyServiceSessions (never a GET
per session). A sampler records every --sample-seconds: the API server's counters
(the operator's and the gateway's requests through their FlowSchemas, everyone's by
verb and resource), and the CPU seconds and RSS of the operator's and the gateway's
container processes, read from /proc on this host (the node is this machine).
--knee-rates R1,R2,...: before the ramp, --knee-sessions sessions at each rate (ended
after each step), for the rate at which Ready stops keeping up.
--claim-burst-pool P: the claim burst instead (issue 17; agent-sandbox's KWOK gate): wait
until the release's warm pool has P Ready pods, then --sessions Logins at --rate, settle,
end; the report is Login → Ready p50/p90/p99 (warm and cold apart), the stages (the
gateway's create, the operator's claim, and the labels after Ready), API requests per
session and the gate (p50 ≤ 300, p90 ≤ 300, p99 ≤ 500 ms). "Ready" is when this watch
saw it: the gateway's watch gets the same event from the same API server (kwok's pods
run nothing, so no first call can be timed through them).

Writes --out (JSON: sessions, timeline, phases, figures) and prints the report; its
last line is figures.last_line. Needs the admin kubeconfig (KUBECONFIG).
`load.py --report RESULTS.json` prints the report of an earlier run again.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import kubernetes
from kubernetes.client.rest import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402  (beside this file)
from myservice.v1 import myservice_pb2 as pb  # noqa: E402
from myservice.v1 import myservice_pb2_grpc as pb_grpc  # noqa: E402

GROUP, VERSION, PLURAL = "myservice.io", "v1alpha1", "myservicesessions"
WATCH_SECONDS = 300
LOGIN_TIMEOUT = 60.0
MAX_LOGINS_IN_FLIGHT = 2000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
COMPONENTS = ("operator", "gateway")


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the one watch of MyServiceSessions (and one of the instance pods) --------------

class RawWatch(kubernetes.watch.Watch):
    """A watch whose events carry plain dicts: no model classes (a V1Pod costs ~1 ms to build)."""

    def get_return_type(self, func):
        return None


class Reflector:
    """List, then watch one kind of the namespace on a thread, handing each object to
    `apply(kind, obj, now)` (now: time.monotonic() when the event arrived); a 410 or an
    error lists again."""

    def __init__(self, name: str, list_func: Callable, args: tuple, apply: Callable[[str, dict, float], None],
                 reset: Callable[[], None], **kwargs: object):
        self._list_func, self._args, self._kwargs = list_func, args, kwargs
        self._apply, self._reset = apply, reset
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _list(self) -> str:
        response = self._list_func(*self._args, _preload_content=False, _request_timeout=120, **self._kwargs)
        listing = json.loads(response.data)
        now = time.monotonic()
        self._reset()
        for obj in listing.get("items", []):
            self._apply("ADDED", obj, now)
        return listing["metadata"]["resourceVersion"]

    def _run(self) -> None:
        version = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                stream = RawWatch().stream(self._list_func, *self._args, resource_version=version,
                                           timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True,
                                           _request_timeout=WATCH_SECONDS + 30, **self._kwargs)
                for event in stream:
                    now = time.monotonic()
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        version = None  # 410 Gone: list again
                        break
                    version = obj["metadata"]["resourceVersion"]
                    if kind != "BOOKMARK":
                        self._apply(kind, obj, now)
                    if self._stop.is_set():
                        return
            except ApiException as error:
                log(f"watch: {error.status} {error.reason}; listing again")
                version = None
                time.sleep(1)
            except Exception as error:  # noqa: BLE001 - a dropped stream: resume
                log(f"watch interrupted ({error}); resuming")
                time.sleep(1)


class SessionWatch:
    """What the watch of MyServiceSessions saw: per session (keyed by spec.user,
    spec.sessionId) when it first appeared, was first Ready, was deleted."""

    def __init__(self, custom: kubernetes.client.CustomObjectsApi, namespace: str):
        self._lock = threading.Lock()
        self.seen_at: dict[tuple[str, str], float] = {}
        self.ready_at: dict[tuple[str, str], float] = {}
        self.deleted_at: dict[tuple[str, str], float] = {}
        self.present: set[tuple[str, str]] = set()
        self.failed: dict[tuple[str, str], str] = {}
        self.source: dict[tuple[str, str], str] = {}  # status.podSource when first Ready
        self.key_of: dict[str, tuple[str, str]] = {}  # resource name -> session key
        self.events = 0
        self.reflector = Reflector("mss-watch", custom.list_namespaced_custom_object,
                                   (GROUP, VERSION, namespace, PLURAL), self._apply, self._reset)

    def counts(self) -> tuple[int, int]:
        """(sessions that exist now, of which Ready now or before)."""
        with self._lock:
            return len(self.present), sum(1 for key in self.present if key in self.ready_at)

    def _reset(self) -> None:
        with self._lock:
            self.present.clear()

    def _apply(self, kind: str, obj: dict, now: float) -> None:
        spec = obj.get("spec") or {}
        key = (spec.get("user", ""), spec.get("sessionId", ""))
        with self._lock:
            self.events += 1
            self.key_of[obj["metadata"]["name"]] = key
            if kind == "DELETED":
                self.present.discard(key)
                self.deleted_at.setdefault(key, now)
                return
            self.present.add(key)
            self.seen_at.setdefault(key, now)
            phase = (obj.get("status") or {}).get("phase")
            if phase == "Ready":
                self.ready_at.setdefault(key, now)
                self.source.setdefault(key, (obj.get("status") or {}).get("podSource", ""))
            elif phase == "Failed":
                self.failed.setdefault(key, (obj.get("status") or {}).get("reason", ""))


class PodWatch:
    """What the watch of the instance pods saw, per session resource (label
    myservice.io/session): created (first seen), scheduled (spec.nodeName set: the
    scheduler), Ready (condition Ready True: kwok). For the breakdown of Login → Ready."""

    def __init__(self, core: kubernetes.client.CoreV1Api, namespace: str):
        self.stamps: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        self._pool_ready: set[str] = set()  # warm pool pods Ready and not labelled for a session
        self.reflector = Reflector("pod-watch", core.list_namespaced_pod, (namespace,), self._apply, lambda: None,
                                   label_selector="app.kubernetes.io/component=instance")

    def pool_ready(self) -> int:
        with self._lock:
            return len(self._pool_ready)

    def _apply(self, kind: str, obj: dict, now: float) -> None:
        labels = obj["metadata"].get("labels") or {}
        resource = labels.get("myservice.io/session")
        with self._lock:
            if resource or kind == "DELETED" or "myservice.io/pool" not in labels or not _ready(obj):
                self._pool_ready.discard(obj["metadata"]["name"])
            else:
                self._pool_ready.add(obj["metadata"]["name"])
        if not resource or kind == "DELETED":
            return
        # a warm pool pod is first seen with its session label when the operator labels it
        stamps = self.stamps.setdefault(resource, {"created": now})
        if (obj.get("spec") or {}).get("nodeName"):
            stamps.setdefault("scheduled", now)
        if _ready(obj):
            stamps.setdefault("ready", now)


def _ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


# --- the operator's and the gateway's processes on this host ----------------------

def proc_files(name: str) -> Iterator[tuple[int, str]]:
    """(pid, text of /proc/<pid>/<name>) of every process that is still there to read."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/{name}") as f:
                    yield int(entry), f.read()
            except OSError:
                continue


class ContainerProcesses:
    """CPU seconds (utime+stime, children included) and RSS of a component's containers
    (one per replica: the operator runs an active and a standby), found by container id
    in /proc/<pid>/cgroup. CPU is summed over replicas and kept for processes that
    exited (a restart); RSS is the largest replica's (the active one's)."""

    def __init__(self, find_container_ids: Callable[[], list[str]]):
        self._find = find_container_ids
        self._containers: list[str] = []
        self._pids: dict[str, list[int]] = {}
        self._cpu_by_pid: dict[int, float] = {}
        self.restarts = 0

    def _discover(self) -> None:
        containers = self._find()
        if self._containers:
            self.restarts += len(set(containers) - set(self._containers))
        self._containers = containers
        self._pids = {c: [] for c in containers}
        for pid, cgroup in proc_files("cgroup"):
            for container in containers:
                if container in cgroup:
                    self._pids[container].append(pid)

    def sample(self) -> tuple[float, float]:
        """(CPU seconds so far, RSS MB: the largest replica's sum of its processes' peak RSS, VmHWM)."""
        if not self._containers or any(not any(os.path.exists(f"/proc/{pid}") for pid in pids)
                                       for pids in self._pids.values()):
            self._discover()
        largest_kb = 0
        for pids in self._pids.values():
            hwm_kb = 0
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    # fields[11..14]: utime stime cutime cstime (after the comm field)
                    self._cpu_by_pid[pid] = sum(int(v) for v in fields[11:15]) / CLOCK_TICKS
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                hwm_kb += int(line.split()[1])
                except OSError:
                    continue
            largest_kb = max(largest_kb, hwm_kb)
        return sum(self._cpu_by_pid.values()), largest_kb / 1024.0


def host_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of the cluster's own processes (figures.HOST_PROCESSES, by comm)
    and of this load generator ("load generator")."""
    found = {name: 0.0 for name in figures.HOST_PROCESSES}
    for pid, stat in proc_files("stat"):
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        name = "load generator" if pid == os.getpid() else comm
        if name in found or name == "load generator":
            fields = stat.rsplit(")", 1)[1].split()
            found[name] = found.get(name, 0.0) + sum(int(v) for v in fields[11:13]) / CLOCK_TICKS
    return found


def machine_cpu() -> dict[str, float]:
    """The machine's CPU time so far in jiffies: all, and idle (+ iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return {"total": float(sum(values[:8])), "idle": float(values[3] + values[4])}


def container_ids_finder(core: kubernetes.client.CoreV1Api, namespace: str, release: str,
                         component: str) -> Callable[[], list[str]]:
    def find() -> list[str]:
        pods = core.list_namespaced_pod(namespace, label_selector=(
            f"app.kubernetes.io/instance={release},app.kubernetes.io/component={component}"), _request_timeout=30)
        return [status.container_id.split("://", 1)[-1]
                for pod in pods.items for status in pod.status.container_statuses or []
                if status.container_id and status.state and status.state.running]
    return find


# --- the sampler -------------------------------------------------------------------

class Sampler:
    """Every `interval` s one timeline entry: phase, live/ready, API counters, processes."""

    def __init__(self, api: kubernetes.client.ApiClient, flow_schemas: dict[str, str], watch: SessionWatch,
                 processes: dict[str, ContainerProcesses], interval: float):
        self._api = api
        self._flow_schemas = flow_schemas
        self._watch = watch
        self._processes = processes
        self._interval = interval
        self.phase = "start"
        self.timeline: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def metrics_text(self) -> str:
        """GET /metrics of the API server with the admin credentials."""
        if hasattr(self._api, "param_serialize"):  # kubernetes >= 32 (openapi-generator 7)
            method, url, headers, body, post = self._api.param_serialize(
                method="GET", resource_path="/metrics", auth_settings=["BearerToken"])
            response = self._api.call_api(method, url, header_params=headers, _request_timeout=60)
            response.read()
            return response.data.decode()
        response = self._api.call_api("/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False,
                                      _return_http_data_only=True, _request_timeout=60)
        return response.data.decode()

    def sample(self) -> dict:
        with self._lock:  # the thread and an explicit sample() never interleave
            text = self.metrics_text()
            counters = figures.api_counters(text, self._flow_schemas)
            live, ready = self._watch.counts()
            cpu, rss, restarts = {}, {}, {}
            for component, processes in self._processes.items():
                cpu[component], rss[component] = processes.sample()
                restarts[component] = processes.restarts
            entry = {"t": time.monotonic(), "phase": self.phase, "live": live, "ready": ready,
                     "components": counters["components"], "requests": counters["requests"],
                     "cpu_seconds": cpu, "rss_mb": rss, "restarts": restarts,
                     "host_cpu_seconds": host_cpu_seconds(), "machine_cpu": machine_cpu(),
                     "api_durations": figures.api_durations(text)}
            self.timeline.append(entry)
            return entry

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 60)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sample()
            except Exception as error:  # noqa: BLE001 - one lost sample is not the run
                log(f"sample failed: {error}")


# --- Logins -------------------------------------------------------------------------

async def ramp(stub, *, count: int, rate: float, users: list[str], password: str, prefix: str,
               live_before: int, errors: dict[str, int]) -> list[dict]:
    """`count` Logins at `rate`/s, open loop; one record per session."""
    sessions: list[dict] = []
    in_flight = asyncio.Semaphore(MAX_LOGINS_IN_FLIGHT)
    failed_before = 0

    async def one(record: dict) -> None:
        nonlocal failed_before
        try:
            await stub.Login(pb.LoginRequest(username=record["user"], password=password,
                                             session_id=record["session_id"]), timeout=LOGIN_TIMEOUT)
            record["login_done"] = time.monotonic()
        except grpc.aio.AioRpcError as error:
            record["login_error"] = f"{error.code().name}: {error.details()}"
            errors[record["login_error"]] = errors.get(record["login_error"], 0) + 1
            failed_before += 1
        finally:
            in_flight.release()

    tasks = []
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await in_flight.acquire()
        record = {"user": users[i % len(users)], "session_id": f"{prefix}-{i}",
                  "login_start": time.monotonic(), "live_at_login": live_before + i - failed_before}
        sessions.append(record)
        tasks.append(asyncio.create_task(one(record)))
        if (i + 1) % max(1, int(rate * 10)) == 0:
            log(f"  {i + 1}/{count} Logins sent ({(i + 1) / (time.monotonic() - start):.1f}/s)")
    await asyncio.gather(*tasks)
    return sessions


def wait_until(what: str, done: Callable[[], bool], timeout: float, progress: Callable[[], str]) -> bool:
    deadline = time.monotonic() + timeout
    last = 0.0
    while not done():
        if time.monotonic() > deadline:
            log(f"{what}: gave up after {timeout:.0f}s ({progress()})")
            return False
        if time.monotonic() - last > 10:
            log(f"  {what}: {progress()}")
            last = time.monotonic()
        time.sleep(0.2)
    return True


def end_all(custom, core, namespace: str, watch: SessionWatch, timeout: float) -> bool:
    """Delete every session (one collection DELETE), wait for the watch to see them go;
    sessions still held by the operator's finalizer after `timeout` are released here.
    Then the instance pods (kwok deletes them at once; the garbage collector would
    take its 20 requests/s)."""
    collection_delete(lambda: custom.delete_collection_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _request_timeout=600), "sessions")
    ended = wait_until("ending", lambda: watch.counts()[0] == 0, timeout,
                       lambda: f"{watch.counts()[0]} sessions left")
    if not ended:
        for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
            if item["metadata"].get("finalizers"):
                custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, item["metadata"]["name"],
                                                      {"metadata": {"finalizers": None}})
    collection_delete(lambda: core.delete_collection_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=instance", _request_timeout=600), "instance pods")
    return ended


def collection_delete(call, what: str) -> None:
    """One collection DELETE. With 10,000 objects the API server may answer 504 after its own
    60 s request timeout while it goes on deleting: that is not a failure of the run (the
    watch, or run.sh's cleanup, sees the rest go)."""
    try:
        call()
    except ApiException as error:
        if error.status != 504:
            raise
        log(f"deleting the {what}: the API server answered 504 (its request timeout) and goes on deleting")


def attach_ready(sessions: list[dict], watch: SessionWatch, pods: PodWatch | None = None) -> None:
    """Each session's stamps: seen (its resource appeared: the gateway made it), pod_created
    (the operator admitted it), pod_scheduled, pod_ready (kwok), ready (the operator saw it)."""
    name_of = {key: name for name, key in watch.key_of.items()}
    for s in sessions:
        key = (s["user"], s["session_id"])
        s["ready"] = watch.ready_at.get(key)
        s["seen"] = watch.seen_at.get(key)
        s["failed"] = watch.failed.get(key)
        s["source"] = watch.source.get(key)
        stamps = (pods.stamps.get(name_of.get(key, ""), {}) if pods else {})
        for stage in ("created", "scheduled", "ready"):
            s[f"pod_{stage}"] = stamps.get(stage)
        # a warm session's pod: first seen as the session's when labelled (after Ready)
        s["labelled"] = stamps.get("created") if s["source"] == "warm" else None


async def knee_sweep(stub, custom, core, args, watch: SessionWatch, users: list[str],
                     sampler: Sampler) -> list[dict]:
    """Each rate: --knee-sessions sessions at that rate, until Ready; then ended. The
    machine's profile over each step's Logins and their Ready (figures.machine_profile)."""
    rows = []
    for rate in args.knee_rates:
        log(f"knee: {args.knee_sessions} sessions at {rate}/s")
        before = await asyncio.to_thread(sampler.sample)
        errors: dict[str, int] = {}
        sessions = await ramp(stub, count=args.knee_sessions, rate=rate, users=users, password=args.password,
                              prefix=f"knee{rate:g}", live_before=0, errors=errors)
        keys = [(s["user"], s["session_id"]) for s in sessions if "login_error" not in s]
        await asyncio.to_thread(wait_until, f"knee {rate}/s Ready", lambda: all(k in watch.ready_at for k in keys),
                                args.ready_timeout, lambda: f"{sum(k in watch.ready_at for k in keys)}/{len(keys)}")
        after = await asyncio.to_thread(sampler.sample)
        attach_ready(sessions, watch)
        latencies = [s["ready"] - s["login_start"] for s in sessions if s["ready"] is not None]
        row = {"rate": rate, **figures.sustained_rate(sessions), "ready": figures.latency_summary(latencies),
               "login_errors": errors, "machine": figures.machine_profile(before, after)}
        rows.append(row)
        log(f"knee {rate}/s: ready {row['ready_per_second']}/s, p50 {row['ready']['p50_ms']} ms, "
            f"p99 {row['ready']['p99_ms']} ms; {figures.machine_line(row['machine'])}")
        await asyncio.to_thread(end_all, custom, core, args.namespace, watch, args.end_timeout)
    return rows


def observe(args: argparse.Namespace):
    """What both modes watch and sample: the API clients, the sessions' and the pods'
    watches (started), the sampler (not started), the load's usernames."""
    kubernetes.config.load_kube_config()
    api = kubernetes.client.ApiClient()
    custom, core = kubernetes.client.CustomObjectsApi(api), kubernetes.client.CoreV1Api(api)
    watch = SessionWatch(custom, args.namespace)
    watch.reflector.start()
    pods = PodWatch(core, args.namespace)
    pods.reflector.start()
    processes = {c: ContainerProcesses(container_ids_finder(core, args.namespace, args.release, c))
                 for c in COMPONENTS}
    sampler = Sampler(api, {c: f"{args.run}-{c}" for c in COMPONENTS}, watch, processes, args.sample_seconds)
    users = [f"scale-user-{i}" for i in range(args.users)]
    return api, custom, core, watch, pods, sampler, users


async def run(args: argparse.Namespace) -> dict:
    _api, custom, core, watch, pods, sampler, users = observe(args)
    phases: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    async with grpc.aio.insecure_channel(args.gateway) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        stub = pb_grpc.MyServiceStub(channel)
        knee_rows = await knee_sweep(stub, custom, core, args, watch, users, sampler) if args.knee_rates else []
        ramp_start = sampler.sample()
        sampler.start()
        log(f"ramp: {args.sessions} sessions at {args.rate}/s through {args.gateway}")
        sampler.phase = "ramp"
        t0 = time.monotonic()
        sessions = await ramp(stub, count=args.sessions, rate=args.rate, users=users, password=args.password,
                              prefix="s", live_before=0, errors=errors)
        phases["ramp"] = [t0, time.monotonic()]
    sampler.phase = "settle"
    t0 = time.monotonic()
    expected = [(s["user"], s["session_id"]) for s in sessions if "login_error" not in s]
    # done when every session is Ready, or will never be: Failed (the operator's ready
    # timeout), or already deleted (its finished TTL)
    wait_until("settle (every session Ready)",
               lambda: all(k in watch.ready_at or k in watch.failed or k in watch.deleted_at for k in expected),
               args.ready_timeout,
               lambda: f"{watch.counts()[1]}/{len(expected)} Ready, {len(watch.failed)} Failed")
    phases["settle"] = [t0, time.monotonic()]
    machine = figures.machine_profile(ramp_start, sampler.sample())
    sampler.phase = "idle"
    t0 = time.monotonic()
    log(f"idle: {args.idle_seconds:.0f}s with {watch.counts()[0]} sessions")
    time.sleep(args.idle_seconds)
    sampler.sample()
    phases["idle"] = [t0, time.monotonic()]
    sampler.phase = "end"
    t0 = time.monotonic()
    log("end: deleting every session")
    try:
        ended = end_all(custom, core, args.namespace, watch, args.end_timeout)
    except Exception as error:  # the figures of the run so far are kept all the same
        log(f"end: {error!r}; the report covers the run up to here")
        ended = False
    phases["end"] = [t0, time.monotonic()]
    sampler.sample()
    sampler.stop()
    watch.reflector.stop()
    pods.reflector.stop()
    attach_ready(sessions, watch, pods)
    results = {"run": args.run, "rate": args.rate, "sessions": sessions, "timeline": sampler.timeline,
               "phases": phases, "login_errors": errors, "knee": knee_rows, "ended_cleanly": ended,
               "watch_events": watch.events, "machine": machine,
               "failed_reasons": sorted(set(r for r in watch.failed.values()))}
    results["figures"] = figures.report(results)
    return results


async def run_claim_burst(args: argparse.Namespace) -> dict:
    """The claim burst: a full warm pool, then --sessions Logins at --rate (see the module's doc)."""
    api, custom, core, watch, pods, sampler, users = observe(args)
    phases: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    pool = args.claim_burst_pool
    t0 = time.monotonic()
    log(f"pool: waiting for {pool} Ready warm pool pods")
    if not await asyncio.to_thread(wait_until, "pool fill", lambda: pods.pool_ready() >= pool, args.ready_timeout,
                                   lambda: f"{pods.pool_ready()}/{pool} Ready"):
        raise SystemExit(f"load.py: the warm pool did not reach {pool} Ready pods")
    phases["pool fill"] = [t0, time.monotonic()]
    burst_start = sampler.sample()
    sampler.start()
    async with grpc.aio.insecure_channel(args.gateway) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        stub = pb_grpc.MyServiceStub(channel)
        log(f"burst: {args.sessions} sessions at {args.rate}/s from a pool of {pool}")
        sampler.phase = "ramp"
        t0 = time.monotonic()
        sessions = await ramp(stub, count=args.sessions, rate=args.rate, users=users, password=args.password,
                              prefix="c", live_before=0, errors=errors)
        phases["ramp"] = [t0, time.monotonic()]
    sampler.phase = "settle"
    t0 = time.monotonic()
    expected = [(s["user"], s["session_id"]) for s in sessions if "login_error" not in s]
    wait_until("settle (every session Ready)",
               lambda: all(k in watch.ready_at or k in watch.failed for k in expected), args.ready_timeout,
               lambda: f"{sum(k in watch.ready_at for k in expected)}/{len(expected)} Ready")
    time.sleep(2)  # the labels that trail Ready
    phases["settle"] = [t0, time.monotonic()]
    machine = figures.machine_profile(burst_start, sampler.sample())
    sampler.stop()
    t0 = time.monotonic()
    try:
        # The operator first: it would refill the pool as its pods are deleted.
        stop_operator(kubernetes.client.AppsV1Api(api), args.namespace, args.release)
        ended = end_all(custom, core, args.namespace, watch, args.end_timeout)
    except Exception as error:  # the figures so far are kept
        log(f"end: {error!r}; the report covers the run up to here")
        ended = False
    phases["end"] = [t0, time.monotonic()]
    watch.reflector.stop()
    pods.reflector.stop()
    attach_ready(sessions, watch, pods)
    results = {"mode": "claim-burst", "run": args.run, "rate": args.rate, "pool": pool, "sessions": sessions,
               "timeline": sampler.timeline, "phases": phases, "login_errors": errors, "ended_cleanly": ended,
               "failed_reasons": sorted(set(watch.failed.values())), "machine": machine}
    results["figures"] = figures.claim_burst_report(results)
    return results


def stop_operator(apps: kubernetes.client.AppsV1Api, namespace: str, release: str) -> None:
    """Scale the release's operator to 0 replicas (run.sh's cleanup uninstalls it anyway)."""
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
    for deployment in apps.list_namespaced_deployment(namespace, label_selector=selector).items:
        apps.patch_namespaced_deployment_scale(deployment.metadata.name, namespace, {"spec": {"replicas": 0}})
    wait_until("operator stopped", lambda: not any(
        (d.status.replicas or 0) for d in apps.list_namespaced_deployment(namespace, label_selector=selector).items),
        120, lambda: "replicas left")


def render_claim_burst(results: dict) -> str:
    f = results["figures"]
    r = f["ready"]
    lines = [f"claim burst: {f['sessions']} Logins at {f['rate']:g}/s offered from a warm pool of {f['pool']}; "
             f"Ready {r['count']}, never Ready {f['never_ready']}; Login errors {sum(f['login_errors'].values())} "
             f"{f['login_errors'] or ''}".rstrip(),
             f"sustained: Logins {f['sustained']['logins_per_second']}/s, Ready {f['sustained']['ready_per_second']}/s",
             f"Login -> Ready (seen by a watch, as the gateway's): p50 {r['p50_ms']} / p90 {r['p90_ms']} / "
             f"p99 {r['p99_ms']} ms (max {r['max_ms']})"]
    for source, s in f["by_source"].items():
        lines.append(f"  {source}: n={s['count']}, p50 {s['p50_ms']} / p90 {s['p90_ms']} / p99 {s['p99_ms']} ms")
    lines.append("stages p50/p90/p99 ms: " + "; ".join(
        f"{label} {v['p50_ms']}/{v['p90_ms']}/{v['p99_ms']}" for label, v in f["stages"].items()))
    lines.append(f"API requests per session (operator, gateway): {f['api_requests_per_session']}")
    lines.append(figures.machine_line(results.get("machine") or {}) + " (from the burst to the last Ready)")
    for q, g in f["gate"].items():
        lines.append(f"gate {q}: {g['value']} (limit {g['limit']}): {'met' if g['met'] else 'MISSED'}")
    lines.append(figures.claim_burst_last_line(f))
    return "\n".join(lines)


def render(results: dict) -> str:
    f = results["figures"]
    lines = [f"sessions: {f['sessions']} at {f['rate']}/s offered; Ready {f['ready']}; "
             f"Failed {f.get('failed') or 0}; Login errors {sum(f['login_errors'].values())} "
             f"{f['login_errors'] or ''}".rstrip(),
             f"sustained: Logins {f['sustained']['logins_per_second']}/s, Ready {f['sustained']['ready_per_second']}/s; "
             f"p99 > 1 s from {f['knee_live'] if f['knee_live'] is not None else 'never'} live sessions on"]
    for live, at in f["at"].items():
        r = at["ready"]
        costs = at["costs"]
        lines.append(f"at {live} live: Login -> Ready p50 {r['p50_ms']} / p90 {r['p90_ms']} / p99 {r['p99_ms']} ms "
                     f"(max {r['max_ms']}, n={r['count']}, never Ready {at['never_ready']}); per session: "
                     f"API {costs.get('api_requests_per_session')}, CPU ms {costs.get('cpu_ms_per_session')}")
        lines.append("  stages p50/p99 ms: " + "; ".join(
            f"{label} {v['p50_ms']}/{v['p99_ms']}" for label, v in at["stages"].items()))
    if f.get("cost_growth"):
        low, high = f["cost_growth_between"]
        lines.append(f"per-session cost growth from {low} to {high} live: {f['cost_growth']}")
    if f.get("idle"):
        lines.append(f"idle {f['idle']['seconds']}s with {f['idle']['live']} sessions: operator+gateway "
                     f"{f['idle']['total_per_second']} req/s {f['idle']['components_per_second']}")
        busiest = sorted(f["idle"]["all_requests_per_second"].items(), key=lambda kv: -kv[1])[:8]
        lines.append(f"  whole API server while idle (req/s, top): {dict(busiest)}")
    lines.append(f"API requests per session (operator, gateway): {f['api_requests_per_session']['by_component']}")
    top = list(f["api_requests_per_session"]["cluster_by_verb_and_resource"].items())[:10]
    lines.append(f"  whole API server per session by verb/resource (top): {dict(top)}")
    for component, p in f["processes"].items():
        lines.append(f"{component}: CPU {p['cpu_seconds']} s, peak RSS {p['peak_rss_mb']} MB, restarts {p['restarts']}")
    lines.append(f"phases (s): {f['phases_seconds']}")
    for name, t in f["targets"].items():
        lines.append(f"target {name}: {t['value']} (limit {t['limit']}): {'met' if t['met'] else 'MISSED'}")
    if results.get("machine"):
        lines.append(figures.machine_line(results["machine"]) + " (ramp and settle)")
    for row in results.get("knee") or []:
        lines.append(f"knee step {row['rate']}/s: Logins {row['logins_per_second']}/s, Ready {row['ready_per_second']}/s, "
                     f"p50 {row['ready']['p50_ms']} ms, p99 {row['ready']['p99_ms']} ms")
        if row.get("machine"):
            lines.append("  " + figures.machine_line(row["machine"]))
    lines.append(figures.last_line(f))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="host:port of the gateway")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--release", required=True)
    parser.add_argument("--run", required=True, help="the run's name (FlowSchemas <run>-operator, <run>-gateway)")
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=50.0, help="Logins per second")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--password", default=os.environ.get("SCALE_PASSWORD", ""))
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--end-timeout", type=float, default=600.0)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--knee-rates", type=lambda v: [float(r) for r in v.split(",") if r], default=[])
    parser.add_argument("--knee-sessions", type=int, default=300)
    parser.add_argument("--claim-burst-pool", type=int, default=0,
                        help="the claim burst: wait for this many Ready warm pool pods, then the burst (0: the ramp)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--report"]:  # --report RESULTS.json: the report again (figures.py changed)
        results = json.loads(Path(argv[1]).read_text())
        burst = results.get("mode") == "claim-burst"
        results["figures"] = figures.claim_burst_report(results) if burst else figures.report(results)
        Path(argv[1]).write_text(json.dumps(results, indent=1))
        print(render_claim_burst(results) if burst else render(results))
        return 0
    args = parse_args(argv)
    if not args.password:
        sys.exit("load.py: --password or SCALE_PASSWORD is required")
    if args.claim_burst_pool:
        results = asyncio.run(run_claim_burst(args))
        args.out.write_text(json.dumps(results, indent=1))
        print(render_claim_burst(results), flush=True)
        return 0 if results["figures"]["never_ready"] == 0 else 1
    results = asyncio.run(run(args))
    args.out.write_text(json.dumps(results, indent=1))
    print(render(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
