#!/usr/bin/env python3
"""Session start on the e2e cluster: Login -> first Echo through the in-cluster gateway,
cold (no warm pool) vs warm (instance.warmPool.size), measured in the same run.

It installs the chart (helm/myservice/ci/e2e-values.yaml, this tree's images) into a
namespace of its own on the running local cluster (hack/cluster/up.sh; KUBECONFIG,
MYSERVICE_KUBECTL, MYSERVICE_HELM as `eval "$(hack/cluster/env.sh)"` sets them), talks to
the gateway pod's IP directly (the node is this machine: no port-forward in the path),
and for each mode runs, as real clients would:

- one at a time: --sequential sessions, each Login then Echo then Shutdown;
- a burst: --burst sessions logging in at once;
- a steady rate: --rate-sessions sessions at --rate Logins/s (open loop).

Each session's Login, first call (Echo right after Login) and Login -> first Echo are
reported as p50/p90/p99, and warm / cold ratios. The first two patterns log in as the
chart's test user, whose password has the default hash (argon2id: ~150-220 ms of CPU
here), so their Login -> first Echo includes it. One gateway core verifies ~5 of those
a second, so the steady pattern logs in as a user with a cost-4 bcrypt hash (a hash
string holds its own parameters; ~1 ms): it measures the sessions, not argon2.
Everything is deleted at the end (namespace), also on Ctrl-C.

With --baseline-images, the whole run is made twice back to back, first on those images
(e.g. built from an older revision), then on this tree's, and after/before ratios are
printed: a before and after taken in the same quiet period.

    .venv/bin/python bench/session_start_cluster.py [--pool 24] [--baseline-images G,S] [--json out.json]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import secrets
import json
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e"))

import bcrypt  # noqa: E402
import framework as fw  # noqa: E402  (the e2e suite's kubectl/helm/gRPC helpers)

FAST_USER = "bench-fast"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Bench:
    def __init__(self, kube: fw.Kube, cfg: fw.Config, args: argparse.Namespace) -> None:
        self.kube, self.cfg, self.args = kube, cfg, args
        self.fast_password = secrets.token_urlsafe(12)

    # --- the release ------------------------------------------------------------------

    def install(self) -> None:
        kube, cfg = self.kube, self.cfg
        kube.kubectl("create", "namespace", cfg.namespace, namespaced=False)
        fw.wait_until("default ServiceAccount", lambda: kube.get("serviceaccount", "default"), 60)
        crd_sets = [] if kube.get("crd", "myservicesessions.myservice.io", namespaced=False) is None \
            else ["crds.install=false"]  # shared with other releases: never taken over
        argv = ["install", cfg.release, str(fw.CHART), "-f", str(fw.E2E_VALUES), "--wait", "--timeout", "300s"]
        sets = [f"operator.maxSessions={self.args.max_sessions}", "session.maxPerUser=0",
                "operator.finishedTtlSeconds=600", "cleanup.enabled=false",
                # many instance pods on one 2-core node: requests low enough to schedule them all
                "instance.resources.requests.cpu=10m", *crd_sets, *cfg.image_sets()]
        for item in sets:
            argv += ["--set", item]
        fast_hash = bcrypt.hashpw(self.fast_password.encode(), bcrypt.gensalt(rounds=4)).decode()
        argv += ["--set-json", "users=" + json.dumps([{"username": FAST_USER, "passwordHash": fast_hash}])]
        fw.log("$ helm -n " + cfg.namespace + " " + " ".join(argv))
        kube.helm(*argv, timeout=360)

    def set_pool(self, size: int) -> None:
        argv = ["upgrade", self.cfg.release, str(fw.CHART), "--reuse-values",
                "--set", f"instance.warmPool.size={size}", "--wait", "--timeout", "240s"]
        self.kube.helm(*argv, timeout=300)
        fw.wait_until(f"operator with a pool of {size}", lambda: self.kube.deployment_env(
            self.kube.operator_deploy, "operator").get("MYSERVICE_WARM_POOL_SIZE") == str(size), 60)
        self.kube.wait_deployment(self.kube.operator_deploy, 240)
        self.wait_pool(size)

    def pool_ready(self) -> int:
        pods = self.kube.items("pods", "myservice.io/pool")
        return sum(1 for p in pods if not p["metadata"].get("deletionTimestamp") and any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in p.get("status", {}).get("conditions", [])))

    def wait_pool(self, size: int) -> None:
        fw.wait_until(f"{size} Ready pool pods", lambda: self.pool_ready() >= size or None, 300)

    def wait_sessions_gone(self) -> None:
        """Every session of the run ended and its pod gone: slots free for the next pattern."""
        def done():
            live = [p for p in self.kube.items("pods", "myservice.io/session")
                    if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
            return not live or None
        fw.wait_until("the pattern's session pods to end", done, 180)

    def gateway_address(self) -> str:
        pod = next(p for p in self.kube.component_pods("gateway") if p.get("status", {}).get("podIP"))
        return f"{pod['status']['podIP']}:10000"

    # --- one session, as a client ----------------------------------------------------

    def one_session(self, address: str, fast: bool = False) -> dict:
        login = dict(username=FAST_USER, password=self.fast_password) if fast else {}
        with fw.Client(address, timeout=120, **login) as client:
            t0 = time.monotonic()
            session = client.login(prefix="start")
            t1 = time.monotonic()
            reply = client.echo(session, timeout=120)
            t2 = time.monotonic()
            client.shutdown(session)
        return {"login": t1 - t0, "first_call": t2 - t1, "total": t2 - t0, "pod": reply.pod_name,
                "resource": session.resource}

    def add_sources(self, samples: list[dict]) -> list[dict]:
        """How each session's pod was obtained (status.podSource), read once after the pattern."""
        items = self.kube.items("mss")
        source = {m["metadata"]["name"]: (m.get("status") or {}).get("podSource", "?") for m in items}
        return [{**s, "source": source.get(s["resource"], "?")} for s in samples]

    def sequential(self, address: str, count: int) -> list[dict]:
        return [self.one_session(address) for _ in range(count)]

    def burst(self, address: str, count: int) -> list[dict]:
        barrier = threading.Barrier(count)

        def go():
            barrier.wait()
            return self.one_session(address)
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: go(), range(count)))

    def steady(self, address: str, rate: float, count: int) -> list[dict]:
        start = time.monotonic() + 0.2
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            def at(i):
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
                return self.one_session(address, fast=True)
            return list(pool.map(at, range(count)))


def summary(samples: list[dict]) -> dict:
    out = {"n": len(samples), "sources": sorted({s["source"] for s in samples}),
           "pods_distinct": len({s["pod"] for s in samples}) == len(samples)}
    for key in ("login", "first_call", "total"):
        values = [s[key] * 1000 for s in samples]
        out[key] = {"p50": statistics.median(values), "p90": percentile(values, 90), "p99": percentile(values, 99)}
    return out


def run_images(cfg: fw.Config, args: argparse.Namespace) -> dict:
    """Every pattern, cold then warm, on a release of cfg's images in a namespace of its own
    (deleted at the end, also on Ctrl-C)."""
    cfg.namespace = f"myservice-bench-{uuid.uuid4().hex[:6]}"
    kube = fw.Kube(cfg)
    bench = Bench(kube, cfg, args)
    results: dict = {}
    fw.log(f"images {cfg.gateway_image} and {cfg.service_image}")
    try:
        bench.install()
        address = bench.gateway_address()
        fw.log(f"gateway pod at {address}; namespace {cfg.namespace}")
        for mode, size in (("cold", 0), ("warm", args.pool)):
            bench.set_pool(size)
            patterns = [("one at a time", lambda: bench.sequential(address, args.sequential)),
                        (f"burst of {args.burst}", lambda: bench.burst(address, args.burst)),
                        (f"{args.rate:g}/s x {args.rate_sessions}",
                         lambda: bench.steady(address, args.rate, args.rate_sessions))]
            for name, run in patterns:
                if size:
                    bench.wait_pool(size)  # a full pool at the start of each pattern
                samples = bench.add_sources(run())
                results.setdefault(mode, {})[name] = {"summary": summary(samples), "samples": samples}
                s = results[mode][name]["summary"]
                fw.log(f"{mode:4} {name:14} Login p50 {s['login']['p50']:6.0f} ms | first call p50 "
                       f"{s['first_call']['p50']:6.0f} p99 {s['first_call']['p99']:6.0f} ms | Login->Echo p50 "
                       f"{s['total']['p50']:6.0f} p99 {s['total']['p99']:6.0f} ms | sources {s['sources']}")
                bench.wait_sessions_gone()
    finally:
        kube.kubectl("delete", "mss", "--all", "--wait=false", check=False)
        kube.kubectl("delete", "namespace", cfg.namespace, "--wait=false", namespaced=False, check=False)
    return results


def print_table(label: str, results: dict) -> None:
    print(f"\n{label}")
    print("pattern           mode  Login p50  first call p50/p90/p99 ms   Login->first Echo p50/p99 ms")
    for name in results["cold"]:
        for mode in ("cold", "warm"):
            s = results[mode][name]["summary"]
            print(f"{name:17} {mode:4} {s['login']['p50']:8.0f}   {s['first_call']['p50']:7.0f} "
                  f"{s['first_call']['p90']:6.0f} {s['first_call']['p99']:6.0f}   "
                  f"{s['total']['p50']:12.0f} {s['total']['p99']:6.0f}")
        cold, warm = results["cold"][name]["summary"], results["warm"][name]["summary"]
        print(f"{'':17} warm/cold first call p50 {warm['first_call']['p50'] / cold['first_call']['p50']:.3f}, "
              f"Login->Echo p50 {warm['total']['p50'] / cold['total']['p50']:.3f}")


def print_ratios(before: dict, after: dict) -> None:
    """after / before for each pattern and mode: p50 and p99 of the first call and of
    Login -> first Echo (the two runs share the machine's state of the moment)."""
    print("\nafter / before   mode  first call p50 p99   Login->first Echo p50 p99")
    for name in after["cold"]:
        for mode in ("cold", "warm"):
            a, b = after[mode][name]["summary"], before[mode][name]["summary"]
            ratio = lambda key, q: a[key][q] / b[key][q] if b[key][q] else float("nan")  # noqa: E731
            print(f"{name:16} {mode:4}  {ratio('first_call', 'p50'):10.2f} {ratio('first_call', 'p99'):5.2f}"
                  f"   {ratio('total', 'p50'):16.2f} {ratio('total', 'p99'):5.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=24, help="warm pool size for the warm mode (24)")
    parser.add_argument("--sequential", type=int, default=10, help="sessions one at a time (10)")
    parser.add_argument("--burst", type=int, default=8, help="sessions at once (8)")
    parser.add_argument("--rate", type=float, default=10.0, help="Logins/s of the steady pattern (10)")
    parser.add_argument("--rate-sessions", type=int, default=20, help="sessions of the steady pattern (20)")
    parser.add_argument("--max-sessions", type=int, default=40, help="operator.maxSessions of the release (40)")
    parser.add_argument("--baseline-images", metavar="GATEWAY,SERVICE",
                        help="first run every pattern on these images (already in the cluster's containerd, "
                             "e.g. built from an older revision: docs/benchmarks.md), then on this tree's, "
                             "and print after/before ratios")
    parser.add_argument("--json", metavar="PATH", help="also write the samples and figures here")
    args = parser.parse_args()
    if args.burst > args.max_sessions or args.rate_sessions > args.max_sessions:
        parser.error("--burst and --rate-sessions must fit in --max-sessions")
    baseline = args.baseline_images.split(",") if args.baseline_images else None
    if baseline is not None and (len(baseline) != 2 or not all(baseline)):
        parser.error("--baseline-images takes two images: GATEWAY,SERVICE")

    cfg = fw.Config.from_env()
    results: dict = {}
    if baseline is not None:
        before_cfg = fw.Config.from_env()
        before_cfg.gateway_image, before_cfg.service_image = baseline
        results["before"] = run_images(before_cfg, args)
    results["after" if baseline else "this tree"] = run_images(cfg, args)

    for label, figures in results.items():
        images = f"{before_cfg.gateway_image}, {before_cfg.service_image}" if label == "before" \
            else f"{cfg.gateway_image}, {cfg.service_image}"
        print_table(f"{label} ({images})", figures)
    if baseline is not None:
        print_ratios(results["before"], results["after"])
    if args.json:
        Path(args.json).write_text(json.dumps(results if baseline else results["this tree"], indent=1))
    final = results["after" if baseline else "this tree"]
    steady = f"{args.rate:g}/s x {args.rate_sessions}"
    warm, cold = final["warm"][steady]["summary"], final["cold"]["one at a time"]["summary"]
    burst = final["cold"][f"burst of {args.burst}"]["summary"]
    print(f"session start: warm first call p99 {warm['first_call']['p99']:.0f} ms at {args.rate:g}/s, "
          f"cold Login->first Echo p50 {cold['total']['p50']:.0f} ms one at a time, "
          f"cold burst of {args.burst} Login->first Echo p99 {burst['total']['p99']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
