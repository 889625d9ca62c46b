#!/usr/bin/env python3
"""bench/sse_report.py RESULTS.jsonl: the markdown tables of bench/sse.sh
(SSE beside WebSocket): medians over rounds and SSE / WebSocket ratios."""
import json
import statistics
import sys


def load(path):
    rows = []
    for line in open(path):
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    return rows


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=0):
    if x is None:
        return "-"
    if digits == 0:
        return f"{round(x):,}"
    return f"{x:,.{digits}f}"


def ratio(a, b, digits=2):
    if a is None or not b:
        return "-"
    return f"{a / b:.{digits}f}x"


def memory(rows):
    rows = [r for r in rows if r["figure"] == "memory" and r["result"]]
    if not rows:
        return
    print("#### Idle memory per connection holding one subscription\n")
    print("| connections | transport | bytes per connection, each round | median | RSS before → after KiB (median round) | errors | SSE / WebSocket |")
    print("|---:|---|---|---:|---|---:|---:|")
    for n in sorted({r["result"]["connections"] for r in rows}):
        meds = {}
        for t in ("websocket", "sse"):
            rs = [r["result"] for r in rows if r["transport"] == t and r["result"]["connections"] == n]
            if not rs:
                continue
            per = [x["bytes_per_connection"] for x in rs]
            m = med(per)
            meds[t] = m
            mid = sorted(rs, key=lambda x: x["bytes_per_connection"] or 0)[len(rs) // 2]
            errors = sum((x.get("errors") or 0) + (x.get("emulation_failed") or 0) for x in rs)
            opened = min(x["opened"] for x in rs)
            cell = ", ".join(fmt(p) for p in per)
            r_ = ratio(meds.get("sse"), meds.get("websocket")) if t == "sse" else ""
            print(f"| {n:,} (opened ≥ {opened:,}) | {t} | {cell} | **{fmt(m)}** | "
                  f"{mid['rss_before_kib']:,} → {mid['rss_after_kib']:,} | {errors} | {r_} |")
    print()


def fanout(rows):
    rows = [r for r in rows if r["figure"] == "fanout" and r["result"]]
    if not rows:
        return
    print("#### Fan-out at a fixed rate (medians over rounds)\n")
    print("| subscribers | rate | transport | deliveries/s | delivered | p50 ms | p99 ms | max ms | server CPU % | generator CPU % | server CPU µs per delivery | lost | rounds |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    keys = sorted({(r["result"]["subscribers"], r["result"]["rate"]) for r in rows})
    for n, rate in keys:
        for t in ("websocket", "sse"):
            rs = [r["result"] for r in rows
                  if r["transport"] == t and r["result"]["subscribers"] == n and r["result"]["rate"] == rate]
            if not rs:
                continue
            lat = lambda q: med([x["latency_us"][q] / 1000 for x in rs])
            dps = med([x["deliveries_per_s"] for x in rs])
            srv = med([x["cpu"]["server_cpu_pct"] for x in rs])
            gen = med([x["cpu"]["gen_cpu_pct"] for x in rs])
            per = med([x["cpu"]["server_cpu_pct"] * 1e4 / x["deliveries_per_s"]
                       for x in rs if x["cpu"]["server_cpu_pct"] is not None and x["deliveries_per_s"]])
            ratio_d = med([x["delivered_ratio"] for x in rs])
            lost = sum(x["errors"] for x in rs)
            print(f"| {n:,} | {rate} | {t} | {fmt(dps)} | {ratio_d} | {fmt(lat('p50'), 2)} | "
                  f"{fmt(lat('p99'), 2)} | {fmt(lat('max'), 2)} | {fmt(srv, 1)} | {fmt(gen, 1)} | "
                  f"{fmt(per, 2)} | {lost} | {len(rs)} |")
    print()


def sweep(rows):
    rows = [r for r in rows if r["figure"] == "sweep" and r["result"]]
    if not rows:
        return
    print("#### Highest sustained rate (one sweep each; pass = all acknowledged and delivered, none lost, p99 <= 250 ms)\n")
    print("| subscribers | transport | best rate | deliveries/s at it | steps: rate → pass, p99 ms, server CPU % |")
    print("|---:|---|---:|---:|---|")
    for r in sorted(rows, key=lambda r: (r["result"]["subscribers"], r["transport"] != "websocket")):
        x = r["result"]
        best = x.get("best_rate")
        steps = x.get("steps", [])
        at = next((s["deliveries_per_s"] for s in steps if s["rate"] == best), None)
        cells = "; ".join(
            f"{s['rate']} → {'✓' if s['pass'] else '✗'} {s['latency_us']['p99'] / 1000:.0f}"
            f"{'' if s['cpu']['server_cpu_pct'] is None else ', ' + format(s['cpu']['server_cpu_pct'], '.0f') + '%'}"
            for s in steps)
        print(f"| {x['subscribers']:,} | {r['transport']} | **{best if best is not None else 'none'}** | {fmt(at)} | {cells} |")
    print()


def main():
    rows = load(sys.argv[1])
    pins = sorted({r.get("pin") for r in rows})
    loads = [r["load"] for r in rows]
    print(f"Cores: pin={', '.join(p for p in pins if p)} "
          "(split: `taskset -c 0` for `wshub serve`, `-c 1` for `wshub bench`). "
          f"Load average (1, 5, 15 min) from {loads[0]} to {loads[-1]} over the run.\n" if loads else "")
    memory(rows)
    fanout(rows)
    sweep(rows)


if __name__ == "__main__":
    main()
