#!/usr/bin/env python3
"""Draw a scale run (load.py's results JSON) as a PNG: Login → Ready p50/p99 and the
operator's + gateway's API requests/s, both against live sessions, and the run over time.

    .venv/bin/python bench/scale/plot.py RESULTS.json OUT.png [--title TEXT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402


def draw(results: dict, out: Path, title: str) -> None:
    sessions, timeline = results["sessions"], results["timeline"]
    bin_size = max(10, len(sessions) // 40)
    bins = figures.binned_latencies(sessions, bin_size)
    fig, (latency, api, over_time) = plt.subplots(3, 1, figsize=(9, 11), constrained_layout=True)
    fig.suptitle(title)

    latency.plot([b["live"] for b in bins], [b["p50_ms"] for b in bins], marker=".", label="p50")
    latency.plot([b["live"] for b in bins], [b["p99_ms"] for b in bins], marker=".", label="p99")
    latency.axhline(figures.TARGET_READY_P99_MS, color="grey", linestyle="--", linewidth=1, label="target p99 1 s")
    latency.set_xlabel(f"live sessions at Login (bins of {bin_size})")
    latency.set_ylabel("Login → Ready (ms)")
    latency.set_yscale("log")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend()

    for phase, style in (("ramp", "-"), ("settle", "-"), ("idle", "-")):
        points = figures.api_rates(timeline, phase)
        if points:
            api.plot([p["live"] for p in points], [p["requests_per_second"] for p in points], style,
                     marker=".", label=phase)
    api.axhline(figures.TARGET_IDLE_API_PER_SECOND, color="grey", linestyle="--", linewidth=1,
                label="target while idle: 1 req/s")
    api.set_xlabel("live sessions")
    api.set_ylabel("operator + gateway API requests/s")
    api.set_yscale("symlog", linthresh=1)
    api.set_ylim(bottom=0)
    api.grid(True, which="both", alpha=0.3)
    api.legend()

    t0 = timeline[0]["t"]
    over_time.plot([s["t"] - t0 for s in timeline], [s["live"] for s in timeline], label="live sessions")
    over_time.plot([s["t"] - t0 for s in timeline], [s["ready"] for s in timeline], label="Ready")
    rss = over_time.twinx()
    for component in ("operator", "gateway"):
        rss.plot([s["t"] - t0 for s in timeline], [s["rss_mb"].get(component, 0) for s in timeline], ":",
                 label=f"{component} RSS (MB)")
    for name, (start, _end) in results["phases"].items():
        over_time.axvline(start - t0, color="grey", linewidth=0.5)
        over_time.text(start - t0, 0, f" {name}", rotation=90, va="bottom", fontsize=8)
    over_time.set_xlabel("seconds")
    over_time.set_ylabel("sessions")
    rss.set_ylabel("RSS (MB)")
    lines = over_time.get_legend_handles_labels()
    more = rss.get_legend_handles_labels()
    over_time.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    fig.savefig(out, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    title = args.title or figures.last_line(results["figures"])
    draw(results, args.out, title)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
