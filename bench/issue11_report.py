#!/usr/bin/env python3
"""Markdown tables of bench/issue11.sh's results.jsonl, base beside new.

Usage: bench/issue11_report.py RESULTS.jsonl
"""

import json
import os
import sys


def ms(us):
    return "-" if us is None else f"{us / 1000:.2f}"


def lat(r, key="latency_us"):
    if not isinstance(r, dict) or not isinstance(r.get(key), dict):
        return ["-", "-", "-"]
    h = r[key]
    return [ms(h.get("p50")), ms(h.get("p99")), ms(h.get("max"))]


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    by = {}
    for r in rows:
        by.setdefault(r["figure"], []).append(r)
    out = []
    pin = os.environ.get("PIN", rows[0]["pin"] if rows else "none")
    out.append(
        f"Cores: {'server on core 0, generators on core 1' if pin == 'split' else 'server and generators unpinned, sharing both cores'}; "
        f"{os.environ.get('DURATION', '?')} s windows after 1 s warm-up. "
        "Latencies in ms. `load` is /proc/loadavg when the run started."
    )

    iso = [f for f in ("isolation-alone", "isolation-memory", "isolation-redis") if f in by]
    if iso:
        out += ["", "### Small-channel isolation (`wshub bench isolation`)", "",
                "| case | bin | small p50 | small p99 | small max | small delivered | big p50 | big p99 | big max | big acked/published | big delivered/expected | lost subscribers | load |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for f in iso:
            for r in by[f]:
                res = r["result"] or {}
                s, b = res.get("small") or {}, res.get("big") or {}
                big_ratio = (f"{b.get('deliveries', 0):,}/{b.get('expected_deliveries', 0):,}"
                             if b else "-")
                out.append("| " + " | ".join(
                    [f.replace("isolation-", ""), r["bin"], *lat(s),
                     f"{s.get('deliveries', '-')}/{s.get('acknowledged', '-')}",
                     *lat(b), f"{b.get('acknowledged')}/{b.get('published')}" if b else "-", big_ratio, str(b.get("errors", "-")) if b else "-", r["load"]]) + " |")

    if "fanout-sweep" in by:
        out += ["", "### Sustained fan-out (`wshub bench fanout --sweep`)", "",
                "| bin | subscribers | best rate (pub/s) | steps: rate → acked/published, delivered ratio, p99 ms | load |",
                "|---|---:|---:|---|---|"]
        for r in by["fanout-sweep"]:
            res = r["result"] or {}
            steps = "; ".join(
                f"{s['rate']} → {s['acknowledged']}/{s['published']}, {s['delivered_ratio']}, "
                f"{ms(s['latency_us']['p99'])}{'' if s.get('pass') else ' ✗'}"
                for s in res.get("steps", []))
            out.append(f"| {r['bin']} | {res.get('opened', '-')} | **{res.get('best_rate')}** | {steps} | {r['load']} |")

    if "joinleave-3000" in by:
        out += ["", "### join_leave + force_push_join_leave, 3,000 subscribers (30 s to open)", "",
                "| bin | opened | open s | p50 | p99 | max | delivered/expected | load |",
                "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in by["joinleave-3000"]:
            res = r["result"] or {}
            out.append(f"| {r['bin']} | {res.get('opened', '-')} | {res.get('open_s', '-')} | "
                       + " | ".join(lat(res)) +
                       f" | {res.get('deliveries', '-')}/{res.get('expected_deliveries', '-')} | {r['load']} |")

    if "memory-idle" in by:
        out += ["", "### Memory per idle connection with one subscription", "",
                "| bin | connections | processes | RSS before KiB | RSS after KiB | bytes per connection | errors | load |",
                "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in by["memory-idle"]:
            res = r["result"] or {}
            out.append(f"| {r['bin']} | {res.get('opened', '-')} | {res.get('processes')} | {res.get('rss_before_kib')} | "
                       f"{res.get('rss_after_kib')} | **{res.get('bytes_per_connection')}** | {res.get('errors')} | {r['load']} |")

    cmd = [f for f in ("commands-alone", "commands-scrape", "commands-load", "commands-load-scrape",
                       "node-commands-alone", "node-commands-load") if f in by]
    if cmd:
        out += ["", f"### Command path: one connection, publish + presence round trips (100/s each; `-load`: beside {int(os.environ.get('SUBS', 10000)):,} subscribers x 50/s; `-scrape`: /metrics 10/s)", "",
                "| case | bin | publish p50 | publish p99 | publish max | presence p50 | presence p99 | presence max | errors | scrapes (n x size, ms) | load |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for f in cmd:
            for r in by[f]:
                res = r["result"] or {}
                sc = res.get("scrape")
                out.append("| " + " | ".join(
                    [f, r["bin"], *lat(res, "publish_us"), *lat(res, "presence_us"),
                     str(res.get("errors", "-")),
                     (f"{sc['scrapes']} x {sc['bytes_per_scrape']} B, p50 {ms(sc['scrape_us']['p50'])} max {ms(sc['scrape_us']['max'])}"
                      if isinstance(sc, dict) else "-"),
                     r["load"]]) + " |")

    node = [f for f in ("node-isolation-alone", "node-isolation-load") if f in by]
    if node:
        out += ["", f"### Small channel seen by a Node.js `ws` client (20/s; `-load`: beside {int(os.environ.get('SUBS', 10000)):,} subscribers x 50/s)", "",
                "| case | bin | p50 | p99 | max | delivered/acked | load |",
                "|---|---|---:|---:|---:|---:|---|"]
        for f in node:
            for r in by[f]:
                res = r["result"] or {}
                out.append("| " + " | ".join(
                    [f, r["bin"], *lat(res), f"{res.get('deliveries', '-')}/{res.get('acknowledged', '-')}",
                     r["load"]]) + " |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
