#!/usr/bin/env bash
# bench/pusher.sh [--quick] [--only "memory fanout sweep node"] [BIN]: the
# Pusher Channels front (protocol 7, `/app/{key}?protocol=7`, events
# triggered through the signed HTTP API) beside the Centrifugo front, in one
# run on this machine, the protocols interleaved run by run (centrifugo,
# pusher, centrifugo, pusher ...), each run against a fresh `BIN serve` with
# the config this script writes to its output directory: the Pusher front
# enabled with one app, and the Centrifugo channels without a namespace
# open to anonymous subscribe and publish, with no history, no presence and
# no join/leave (a Pusher public channel keeps none of them either).
# BIN defaults to target/release/wshub; its `bench` subcommands drive the
# load. Bounded in time: about 10 minutes with the defaults, 3 with --quick.
#
# Figures:
#   memory   RSS growth per idle connection holding one subscription
#            (`wshub bench idle --protocol P --subscribe bench-idle`), at
#            each count of BENCH_IDLE: the server's VmRSS 0.5 s after it
#            started and 2 s after the last connection opened, delta /
#            connections. Counts over 9,000 are split over two client
#            processes (source addresses 127.0.0.2-5 and 127.0.0.6-9; the
#            open-file limit is per process). The server's own count of the
#            channel's subscribers is read through each protocol's API and
#            reported beside.
#   node     the same with a client not built on wshub: Node.js `ws`
#            (bench/node/pusher_idle.js), skipped without node or `ws`.
#   fanout   deliveries/s and publish-to-deliver p50/p99 to N subscribers of
#            one channel at a fixed rate of 100 B publications (`wshub bench
#            fanout --protocol P --rate R --server-pid`), for each N:R of
#            BENCH_FANOUT; server CPU (utime + stime, /proc/PID/stat) per
#            delivery. The Centrifugo publisher sends `publish` commands on a
#            client connection; the Pusher publisher `POST`s signed
#            `/apps/{app_id}/events` requests, pipelined on one keep-alive
#            connection.
#   sweep    the highest rate every subscriber keeps up with (all
#            acknowledged and delivered, none lost, p99 <= 250 ms) at
#            BENCH_SWEEP_SUBSCRIBERS (1000) subscribers, rates BENCH_SWEEP,
#            stopping after two failed steps in a row.
# Each figure is taken BENCH_ROUNDS times (3); the report gives medians and
# the pusher / centrifugo ratio of each, and the load average of each round.
#
# Environment: BENCH_ROUNDS (3), BENCH_IDLE ("5000 10000"), BENCH_FANOUT
# ("1000:100 5000:20"), BENCH_DURATION (8 s windows after 1 s of warm-up),
# BENCH_SWEEP (300,600,900,1200,1500,1800,2100,2400), BENCH_SWEEP_ROUNDS
# (BENCH_ROUNDS), BENCH_PIN (`split`, the default: server on core 0,
# generator on core 1; `none`: both unpinned), BENCH_OUT (a directory;
# default a new temp dir). Servers listen on ports the OS picks
# (127.0.0.1:0).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
ONLY="memory node fanout sweep"
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1; shift ;;
        --only) ONLY=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
[ $# -le 1 ] || { echo "usage: bench/pusher.sh [--quick] [--only SECTIONS] [BIN]" >&2; exit 2; }
BIN=$(realpath "${1:-target/release/wshub}")
ROUNDS=${BENCH_ROUNDS:-3}
IDLE=${BENCH_IDLE:-5000 10000}
FANOUT=${BENCH_FANOUT:-1000:100 5000:20}
DURATION=${BENCH_DURATION:-8}
SWEEP=${BENCH_SWEEP:-300,600,900,1200,1500,1800,2100,2400}
SWEEP_SUBS=${BENCH_SWEEP_SUBSCRIBERS:-1000}
PIN=${BENCH_PIN:-split}
if [ "$QUICK" = 1 ]; then
    ROUNDS=${BENCH_ROUNDS:-1}
    DURATION=${BENCH_DURATION:-3}
fi
SWEEP_ROUNDS=${BENCH_SWEEP_ROUNDS:-$ROUNDS}
STEP_S=$((DURATION / 2 > 3 ? DURATION / 2 : 3))
OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/wshub-pusher.XXXXXX")}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
[ -x "$BIN" ] || { echo "bench/pusher.sh: $BIN is not executable" >&2; exit 2; }
"$BIN" bench fanout --help 2>/dev/null | grep -q -- --protocol || {
    echo "bench/pusher.sh: $BIN has no \`bench fanout --protocol\`" >&2
    exit 2
}
NODE_OK=0
if [[ " $ONLY " == *" node "* ]] && command -v node >/dev/null; then
    if [ -d bench/node/node_modules/ws ] || (cd bench/node && npm ci --no-audit --no-fund >/dev/null 2>&1); then
        NODE_OK=1
    fi
fi

# One app; the Centrifugo channels without a namespace, nothing kept.
APP_ID=bench
KEY=bench-key
SECRET=bench-secret-for-benchmarks-only
CONFIG=$OUT/pusher-bench.json
cat >"$CONFIG" <<EOF
{
  "client": {"allow_anonymous_connect_without_token": true, "allowed_origins": ["*"]},
  "http_api": {"insecure": true},
  "health": {"enabled": true},
  "prometheus": {"enabled": true},
  "channel": {"without_namespace": {
    "allow_subscribe_for_client": true, "allow_subscribe_for_anonymous": true,
    "allow_publish_for_client": true, "allow_publish_for_anonymous": true}},
  "limits": {"connections_per_ip": 0, "connect_rate_per_ip": 0, "commands_per_second": 0},
  "shutdown": {"timeout": "1s"},
  "pusher": {"enabled": true, "apps": [{"app_id": "$APP_ID", "key": "$KEY", "secret": "$SECRET"}]}
}
EOF
APP_ARGS=(--pusher-app-id "$APP_ID" --pusher-key "$KEY" --pusher-secret "$SECRET")

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
case $PIN in
    split) SRV_PIN=(taskset -c 0); GEN_PIN=(taskset -c 1) ;;
    none) SRV_PIN=(); GEN_PIN=() ;;
    *) echo "bench/pusher.sh: BENCH_PIN is none or split" >&2; exit 2 ;;
esac

SPID=
GPIDS=()
cleanup() {
    for p in "${GPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null || true; fi
}
trap cleanup EXIT

want() { [[ " $ONLY " == *" $1 "* ]]; }
step() { printf '\n==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
STARTED=$(date +%s)

RUN=0
start_server() { # sets SPID, ADDR (the OS picks the port)
    RUN=$((RUN + 1))
    # $BASHPID: a fan-out run starts its server in a subshell, where RUN
    # does not advance for the next run.
    local log=$OUT/server-$RUN-$BASHPID.log
    SLOG=$log
    "${SRV_PIN[@]}" "$BIN" serve -c "$CONFIG" --listen 127.0.0.1:0 >"$log" 2>&1 &
    SPID=$!
    for _ in $(seq 300); do
        if grep -q "listening on" "$log"; then
            ADDR=$(grep -m1 -o 'listening on http://[0-9.:]*' "$log" | sed 's|^listening on http://||')
            return 0
        fi
        sleep 0.05
    done
    echo "bench/pusher.sh: $BIN serve did not start:" >&2
    cat "$log" >&2
    exit 1
}
stop_server() {
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}

record() { # FIGURE PROTOCOL ROUND JSON
    local json=${4:-null}
    [ -n "$json" ] || json=null
    printf '{"figure":"%s","protocol":"%s","round":%s,"load":"%s","pin":"%s","result":%s}\n' \
        "$1" "$2" "$3" "$(loadavg)" "$PIN" "$json" >>"$RESULTS"
    printf '  %-8s %-10s %s %s\n' "$1" "$2" "$3" "$(cut -c1-150 <<<"$json")" >&2
}

# The server's count of CHANNEL's subscribers, through the protocol's API
# (Centrifugo: POST /api/channels; Pusher: a signed GET of the channel).
subscribers() { # PROTOCOL CHANNEL
    python3 - "http://$ADDR" "$1" "$2" "$APP_ID" "$KEY" "$SECRET" <<'EOF' 2>/dev/null || echo null
import hashlib, hmac, json, sys, time, urllib.request
base, proto, channel, app, key, secret = sys.argv[1:7]
if proto == "centrifugo":
    req = urllib.request.Request(base + "/api/channels", data=b"{}", method="POST")
    d = json.load(urllib.request.urlopen(req, timeout=10))
    print(d["result"]["channels"].get(channel, {}).get("num_clients", 0))
else:
    path = f"/apps/{app}/channels/{channel}"
    q = {"auth_key": key, "auth_timestamp": str(int(time.time())), "auth_version": "1.0",
         "info": "subscription_count"}
    text = "GET\n" + path + "\n" + "&".join(f"{k}={q[k]}" for k in sorted(q))
    q["auth_signature"] = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    url = base + path + "?" + "&".join(f"{k}={v}" for k, v in q.items())
    print(json.load(urllib.request.urlopen(url, timeout=10)).get("subscription_count", 0))
EOF
}

# One memory figure: N idle subscribed connections from CLIENT (wshub or
# node), over one process (N <= 9000) or two, against a fresh server.
idle_run() { # FIGURE CLIENT PROTOCOL N ROUND
    local fig=$1 client=$2 proto=$3 n=$4 r=$5
    local ranges
    if [ "$n" -le 9000 ]; then ranges=(127.0.0.2-127.0.0.9); else ranges=(127.0.0.2-127.0.0.5 127.0.0.6-127.0.0.9); fi
    local parts=${#ranges[@]}
    start_server
    sleep 0.5
    local before
    before=$(rss_kib "$SPID")
    GPIDS=()
    local i=0
    for ips in "${ranges[@]}"; do
        i=$((i + 1))
        local m=$((n / parts))
        [ "$i" = "$parts" ] && m=$((n - (parts - 1) * (n / parts)))
        local log=$OUT/$fig-$proto-$n-$r-$i.log
        if [ "$client" = node ]; then
            "${GEN_PIN[@]}" node bench/node/pusher_idle.js "$proto" "ws://$ADDR/connection/websocket" \
                bench-idle "$m" "$ips" 600 "$KEY" >"$OUT/idle$i.json" 2>"$log" &
        else
            "${GEN_PIN[@]}" "$BIN" bench idle --protocol "$proto" --url "ws://$ADDR/connection/websocket" \
                --connections "$m" --source-ips "$ips" --subscribe bench-idle --hold 600 "${APP_ARGS[@]}" \
                >"$OUT/idle$i.json" 2>"$log" &
        fi
        GPIDS+=($!)
    done
    for _ in $(seq 1200); do
        local ready=0
        for j in $(seq "$parts"); do
            if grep -q "connections open" "$OUT/$fig-$proto-$n-$r-$j.log" || ! kill -0 "${GPIDS[$((j - 1))]}" 2>/dev/null; then
                ready=$((ready + 1))
            fi
        done
        [ "$ready" = "$parts" ] && break
        sleep 0.1
    done
    sleep 2
    local after subscribed
    after=$(rss_kib "$SPID")
    subscribed=$(subscribers "$proto" bench-idle)
    for p in "${GPIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${GPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    GPIDS=()
    local outs=()
    for j in $(seq "$parts"); do outs+=("$(tail -n 1 "$OUT/idle$j.json" 2>/dev/null || true)"); done
    record "$fig" "$proto" "$r" "$(python3 - "$before" "$after" "$n" "$subscribed" "$client" "${outs[@]}" <<'EOF'
import json, sys
before, after, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
subscribed = None if sys.argv[4] == "null" else int(sys.argv[4])
parts = []
for p in sys.argv[6:]:
    try:
        parts.append(json.loads(p))
    except ValueError:
        parts.append({})
opened = sum(p.get("opened", 0) for p in parts)
print(json.dumps({"client": sys.argv[5], "connections": n, "processes": len(parts),
    "rss_before_kib": before, "rss_after_kib": after, "opened": opened,
    "subscribed": subscribed, "errors": sum(p.get("errors", 0) for p in parts),
    "open_s": max((p.get("open_s") or 0) for p in parts) if parts else None,
    "bytes_per_connection": round((after - before) * 1024 / opened) if opened else None}))
EOF
)"
    stop_server
}

fanout() { # PROTOCOL SUBSCRIBERS ARGS...: one `bench fanout` against a fresh server
    local proto=$1 n=$2
    shift 2
    start_server
    "${GEN_PIN[@]}" timeout 300 "$BIN" bench fanout --protocol "$proto" --url "ws://$ADDR/connection/websocket" \
        --subscribers "$n" --channel bench-fanout --server-pid "$SPID" "${APP_ARGS[@]}" "$@" \
        2>"${SLOG%.log}.fanout.log" | tail -n 1 || true
    stop_server
}

step "Pusher front vs Centrifugo front: $BIN; $ROUNDS round(s); pin=$PIN; load $(loadavg); results in $OUT"

if want memory; then
    for n in $IDLE; do
        step "memory: $n idle connections holding one subscription (wshub bench idle)"
        for r in $(seq "$ROUNDS"); do
            for proto in centrifugo pusher; do
                idle_run memory wshub "$proto" "$n" "$r"
            done
        done
    done
fi

if want node; then
    if [ "$NODE_OK" = 1 ]; then
        for n in $IDLE; do
            step "memory, Node.js ws client: $n idle connections holding one subscription"
            for r in $(seq "$ROUNDS"); do
                for proto in centrifugo pusher; do
                    idle_run node node "$proto" "$n" "$r"
                done
            done
        done
    else
        echo "bench/pusher.sh: no node or no \`ws\` package (cd bench/node && npm ci); skipping the Node figures" >&2
    fi
fi

if want fanout; then
    for nr in $FANOUT; do
        n=${nr%%:*}
        rate=${nr##*:}
        step "fan-out: $n subscribers, $rate publications/s of 100 B, ${DURATION}s windows"
        for r in $(seq "$ROUNDS"); do
            for proto in centrifugo pusher; do
                record fanout "$proto" "$r" "$(fanout "$proto" "$n" --rate "$rate" --duration "$DURATION")"
            done
        done
    done
fi

if want sweep; then
    step "sweep: $SWEEP_SUBS subscribers, rates $SWEEP (${STEP_S}s per step), $SWEEP_ROUNDS round(s)"
    for r in $(seq "$SWEEP_ROUNDS"); do
        for proto in centrifugo pusher; do
            record sweep "$proto" "$r" "$(fanout "$proto" "$SWEEP_SUBS" --sweep "$SWEEP" --sweep-failures 2 \
                --duration "$STEP_S" --max-p99-ms 250)"
        done
    done
fi

step "report ($(($(date +%s) - STARTED)) s)"
export ELAPSED=$(($(date +%s) - STARTED))
python3 - "$RESULTS" <<'EOF' | tee "$OUT/report.md"
import json, os, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r.get("result")]
P = ("centrifugo", "pusher")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, d=0):
    if x is None:
        return "-"
    return f"{round(x):,}" if d == 0 else f"{x:,.{d}f}"


def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}"


def load1(rs):
    return " / ".join(r["load"].split()[0] for r in rs)


summary = []  # (figure, centrifugo, pusher, digits)

loads = [r["load"] for r in rows]
if loads:
    pins = sorted({r.get("pin") for r in rows})
    print(f"Cores: pin={', '.join(p for p in pins if p)} (split: `taskset -c 0` for `wshub serve`, "
          f"`-c 1` for the generators). Load average (1, 5, 15 min) from {loads[0]} to {loads[-1]} "
          f"over the run; the *load* columns give the 1-minute load of each round. "
          f"Whole run {int(os.environ.get('ELAPSED', 0)) // 60} min {int(os.environ.get('ELAPSED', 0)) % 60} s.\n")

for fig, title in (("memory", "Idle memory per connection holding one subscription (`wshub bench idle`)"),
                   ("node", "Idle memory per connection holding one subscription, Node.js `ws` client")):
    rs_all = [r for r in rows if r["figure"] == fig]
    if not rs_all:
        continue
    print(f"#### {title}\n")
    print("| connections | protocol | bytes per connection, each round | median | RSS before → after KiB (median round) | subscribed (server's count, min) | errors | load | pusher / centrifugo |")
    print("|---:|---|---|---:|---|---:|---:|---|---:|")
    for n in sorted({r["result"]["connections"] for r in rs_all}):
        meds = {}
        for p in P:
            rs = [r for r in rs_all if r["protocol"] == p and r["result"]["connections"] == n]
            if not rs:
                continue
            per = [r["result"]["bytes_per_connection"] for r in rs]
            meds[p] = med(per)
            mid = sorted(rs, key=lambda r: r["result"]["bytes_per_connection"] or 0)[len(rs) // 2]["result"]
            subs = [r["result"]["subscribed"] for r in rs]
            subs = min(s for s in subs if s is not None) if any(s is not None for s in subs) else None
            errors = sum(r["result"]["errors"] or 0 for r in rs)
            rt = ratio(meds.get("pusher"), meds.get("centrifugo")) if p == "pusher" else ""
            print(f"| {n:,} | {p} | {', '.join(fmt(x) for x in per)} | **{fmt(meds[p])}** | "
                  f"{mid['rss_before_kib']:,} → {mid['rss_after_kib']:,} | {fmt(subs)} | {errors} | {load1(rs)} | {rt} |")
        summary.append((f"{'Node client: ' if fig == 'node' else ''}bytes per idle subscribed connection, {n:,}",
                        meds.get("centrifugo"), meds.get("pusher"), 0))
    print()

rs_all = [r for r in rows if r["figure"] == "fanout"]
if rs_all:
    print("#### Fan-out at a fixed rate, 100 B publications (medians over rounds)\n")
    print("| subscribers | rate | protocol | deliveries/s | delivered | p50 ms | p99 ms | max ms | server CPU % | generator CPU % | server CPU µs per delivery | bytes per delivery | lost | load | pusher / centrifugo (µs per delivery; p99) |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for n, rate in sorted({(r["result"]["subscribers"], r["result"]["rate"]) for r in rs_all}):
        m = {}
        for p in P:
            rs = [r for r in rs_all if r["protocol"] == p and r["result"]["subscribers"] == n and r["result"]["rate"] == rate]
            if not rs:
                continue
            x = [r["result"] for r in rs]
            lat = lambda q: med([y["latency_us"][q] / 1000 for y in x])
            per = med([y["cpu"]["server_cpu_pct"] * 1e4 / y["deliveries_per_s"]
                       for y in x if y["cpu"]["server_cpu_pct"] is not None and y["deliveries_per_s"]])
            m[p] = {"per": per, "p50": lat("p50"), "p99": lat("p99"), "dps": med([y["deliveries_per_s"] for y in x])}
            rt = ""
            if p == "pusher" and "centrifugo" in m:
                c = m["centrifugo"]
                rt = f"{ratio(per, c['per'])}; {ratio(m[p]['p99'], c['p99'])}"
            print(f"| {n:,} | {rate} | {p} | {fmt(m[p]['dps'])} | {med([y['delivered_ratio'] for y in x])} | "
                  f"{fmt(lat('p50'), 2)} | {fmt(lat('p99'), 2)} | {fmt(lat('max'), 2)} | "
                  f"{fmt(med([y['cpu']['server_cpu_pct'] for y in x]), 1)} | {fmt(med([y['cpu']['gen_cpu_pct'] for y in x]), 1)} | "
                  f"{fmt(per, 2)} | {fmt(med([y.get('delivery_bytes') for y in x]))} | {sum(y['errors'] for y in x)} | {load1(rs)} | {rt} |")
        for key, label, d in (("per", "server CPU µs per delivery", 2), ("dps", "deliveries/s", 0),
                              ("p50", "p50 ms", 2), ("p99", "p99 ms", 2)):
            summary.append((f"{n:,} x {rate}/s: {label}", m.get("centrifugo", {}).get(key), m.get("pusher", {}).get(key), d))
    print()

rs_all = [r for r in rows if r["figure"] == "sweep"]
if rs_all:
    print("#### Highest sustained rate (pass = all acknowledged and delivered, none lost, p99 <= 250 ms)\n")
    print("| subscribers | protocol | best rate, each round | median | steps of the median round: rate → pass, p99 ms, server CPU % | load | pusher / centrifugo |")
    print("|---:|---|---|---:|---|---|---:|")
    best = {}
    for p in P:
        rs = [r for r in rs_all if r["protocol"] == p]
        if not rs:
            continue
        bs = [r["result"].get("best_rate") for r in rs]
        best[p] = med(bs)
        mid = sorted(rs, key=lambda r: r["result"].get("best_rate") or 0)[len(rs) // 2]["result"]
        cells = "; ".join(
            f"{s['rate']} → {'✓' if s['pass'] else '✗'} {s['latency_us']['p99'] / 1000:.0f}"
            f"{'' if s['cpu']['server_cpu_pct'] is None else ', ' + format(s['cpu']['server_cpu_pct'], '.0f') + '%'}"
            for s in mid.get("steps", []))
        rt = ratio(best.get("pusher"), best.get("centrifugo")) if p == "pusher" else ""
        print(f"| {rs[0]['result']['subscribers']:,} | {p} | {', '.join(str(b) for b in bs)} | **{fmt(best[p])}** | {cells} | {load1(rs)} | {rt} |")
    summary.append(("sweep: highest sustained rate, pub/s", best.get("centrifugo"), best.get("pusher"), 0))
    print()

if summary:
    print("#### Pusher / Centrifugo, figure by figure (medians)\n")
    print("| figure | centrifugo | pusher | pusher / centrifugo |")
    print("|---|---:|---:|---:|")
    for name, c, p, d in summary:
        print(f"| {name} | {fmt(c, d)} | {fmt(p, d)} | {ratio(p, c)} |")
    print()
EOF
echo "raw results: $RESULTS" >&2
