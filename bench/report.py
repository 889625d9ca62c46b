"""Turns bench/run's raw results (JSON lines in $WORK) into bench/RESULTS.md.

Called by bench/run with its settings in the environment; not meant to be
run by hand (but it can be, on a kept $WORK directory).
"""

import datetime
import json
import os
import statistics

env = os.environ
work = env["WORK"]
duration = float(env["DURATION"])
servers = env["SERVERS"].split()
BASELINE = "fastwebsockets"


def load(name):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_int(x):
    return "–" if x is None else f"{x:,.0f}"


def fmt(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def per_cpu(r):
    return r["result"].get("messages_per_server_cpu_s")


results = load("results.jsonl")
idle = load("idle.jsonl")
latency = load("latency.jsonl")
lines = []
w = lines.append

now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
w("# wshub benchmark results")
w("")
w(f"- Date: {now}; revision {env.get('REV', '?')}; {env.get('RUSTC', '')}")
w(f"- Machine: {env['MACHINE']}")
w(
    f"- Method: each server single-threaded (current-thread tokio runtime), pinned with "
    f"`taskset -c {env['SERVER_CPU']}`; the generator `wshub bench echo` single-threaded, "
    f"pinned with `taskset -c {env['GEN_CPU']}`. A fresh server per run; "
    f"{env['WARMUP']} s warm-up, then a {env['DURATION']} s measured window; "
    f"{env['ROUNDS']} rounds with the servers interleaved; medians of the rounds. "
    f"Text messages, pre-built masked frames, `--pipeline` messages in flight per "
    f"connection (1 unless said otherwise)."
)
if duration < 10:
    w(
        f"- **Shortened run**: {duration:g} s windows instead of the default 10 s "
        f"(`bench/run --duration {duration:g}`)."
    )
w(
    "- Columns: *msg/s* echoes received per second; *server CPU-s* the server's "
    "utime + stime over the window (/proc/PID/stat); *msg per server CPU-s* the "
    "headline (efficiency, independent of how fast the generator is); *gen CPU%* "
    "the generator's own CPU use (near 100% means the generator was the limit, so "
    "msg/s understates the server); *vs fastwebsockets* the median over rounds of "
    "the msg-per-CPU-s ratio to fastwebsockets in the same round."
)
w("")


def ratio_to_baseline(rows, case, server):
    ratios = []
    by_round = {}
    for r in rows:
        if r["case"] == case:
            by_round.setdefault(r["round"], {})[r["server"]] = per_cpu(r)
    for rnd in by_round.values():
        a, b = rnd.get(server), rnd.get(BASELINE)
        if a and b:
            ratios.append(a / b)
    return median(ratios)


def table(rows, group, names, baseline=True):
    cases = []
    for r in rows:
        if r["group"] == group and r["case"] not in cases:
            cases.append(r["case"])
    head = "| case | server | msg/s | server CPU-s | msg per server CPU-s | server CPU% | gen CPU% | errors |"
    sep = "|---|---|---:|---:|---:|---:|---:|---:|"
    if baseline:
        head += " vs fastwebsockets |"
        sep += "---:|"
    w(head)
    w(sep)
    for case in cases:
        for name in names:
            rs = [r for r in rows if r["group"] == group and r["case"] == case and r["server"] == name]
            if not rs:
                continue
            res = [r["result"] for r in rs]
            mps = median([x.get("messages_per_s") for x in res])
            cpu = median([x.get("server_cpu_s") for x in res])
            eff = median([x.get("messages_per_server_cpu_s") for x in res])
            scpu = median([x.get("server_cpu_pct") for x in res])
            gcpu = median([x.get("generator_cpu_pct") for x in res])
            errors = sum(x.get("errors", 0) for x in res)
            gen = fmt(gcpu, 0) + (" (!)" if gcpu is not None and gcpu >= 90 else "")
            row = f"| {case} | {name} | {fmt_int(mps)} | {fmt(cpu)} | **{fmt_int(eff)}** | {fmt(scpu, 0)} | {gen} | {errors} |"
            if baseline:
                ratio = ratio_to_baseline([r for r in rows if r["group"] == group], case, name)
                row += f" {fmt(ratio)} |"
            w(row)
    w("")


w("## Echo throughput")
w("")
table(results, "echo", servers, baseline=BASELINE in servers)

if any(r["group"] == "deflate" for r in results):
    w("## wshub: permessage-deflate off / on")
    w("")
    w(
        "`wshub echo` vs `wshub echo --deflate`; with deflate the generator offers "
        "permessage-deflate (`bench echo --deflate`) and sends each message compressed "
        "(text-like payload); the server inflates every message and deflates every echo."
    )
    w("")
    table(results, "deflate", ["wshub", "wshub-deflate"], baseline=False)

if latency:
    w("## Open-loop latency")
    w("")
    w(
        f"`wshub bench latency`: {env['LATENCY_RATE']} messages/s in total, round-robin "
        f"over 100 connections, 20 B, sent on schedule whatever the server does; each "
        f"echo's latency counts from its scheduled send time (no coordinated omission). "
        f"Microseconds, HDR histogram, median of the rounds."
    )
    w("")
    w("| server | p50 | p90 | p99 | p99.9 | max | lost | errors |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in servers:
        rs = [r["result"] for r in latency if r["server"] == name]
        if not rs:
            continue
        q = {k: median([x.get("latency_us", {}).get(k) for x in rs]) for k in ("p50", "p90", "p99", "p999", "max")}
        lost = sum(x.get("lost", 0) for x in rs)
        errors = sum(x.get("errors", 0) for x in rs)
        w(
            f"| {name} | **{fmt(q['p50'], 1)}** | {fmt(q['p90'], 1)} | **{fmt(q['p99'], 1)}** | "
            f"{fmt(q['p999'], 1)} | {fmt(q['max'], 1)} | {lost} | {errors} |"
        )
    w("")

if idle:
    w("## Memory per idle connection")
    w("")
    w(
        f"RSS of the server process (VmRSS) before and after `wshub bench idle` opened "
        f"{env['IDLE']} WebSocket connections from source addresses {env['SOURCE_IPS']} "
        f"(bind before connect) and held them; per connection = delta / connections open."
    )
    w("")
    w("| server | open | RSS before (KiB) | RSS after (KiB) | bytes per connection |")
    w("|---|---:|---:|---:|---:|")
    for r in idle:
        opened = r["result"].get("opened", 0)
        delta = (r["rss_after_kib"] - r["rss_before_kib"]) * 1024
        per = delta / opened if opened else None
        w(
            f"| {r['server']} | {opened:,} | {r['rss_before_kib']:,} | {r['rss_after_kib']:,} | **{fmt_int(per)}** |"
        )
    w("")

w("## Commands")
w("")
w("```sh")
w("bench/run" + (f" --duration {duration:g}" if duration != 10 else ""))
w("# per run (ADDR changes per run):")
w("taskset -c 0 wshub echo --listen ADDR --threads 1            # [--deflate]")
w("taskset -c 0 bench/peers: echo_fastwebsockets ADDR | echo_tungstenite ADDR | echo_tokio_websockets ADDR")
w(
    f"taskset -c 1 wshub bench echo --url ws://ADDR/ --connections N --size S --pipeline K "
    f"--duration {duration:g} --warmup {env['WARMUP']} --server-pid PID   # [--deflate]"
)
w(
    f"taskset -c 1 wshub bench latency --url ws://ADDR/ --connections 100 --rate {env['LATENCY_RATE']} "
    f"--size 20 --duration {duration:g} --warmup {env['WARMUP']}"
)
w(
    f"taskset -c 1 wshub bench idle --url ws://ADDR/ --connections {env['IDLE']} "
    f"--source-ips {env['SOURCE_IPS']} --hold 600   # interrupted once RSS is read"
)
w("```")
w("")

out = env["OUT"]
with open(out, "w") as f:
    f.write("\n".join(lines))
