#!/usr/bin/env bash
# bench/issue11.sh BASE_BIN NEW_BIN: every figure of issue 11 ("gateway
# core", section "Done when") for two `wshub` binaries side by side, in one
# run on this machine, the binaries interleaved figure by figure (A, B, A, B
# ...), each run against a fresh `wshub serve`. Bounded in time: about
# 12 minutes with the defaults (BENCH_DURATION=10), about 5 with --quick.
#
# Figures (configs in bench/configs/: namespaces with history + recovery,
# anonymous subscribe/publish, no command rate limit):
#   isolation      a 1-subscriber channel publishing 20/s alone, then beside
#                  a 10,000-subscriber channel receiving 50 publications/s of
#                  100 B (memory broker, then Redis at 127.0.0.1:6379):
#                  publish-to-deliver p50/p99/max of both, big delivered ratio
#                  (`wshub bench isolation`)
#   fanout sweep   10,000 subscribers, 100 B: the highest rate at which every
#                  publication is acknowledged and delivered and p99 <= 250 ms
#                  (`wshub bench fanout --sweep`)
#   join_leave     3,000 subscribers of a join_leave + force_push_join_leave
#                  channel: how many open within 30 s (reported apart: the
#                  other figures use channels without join_leave)
#   memory         RSS growth per idle connection holding one subscription,
#                  15,000 connections from two `wshub bench idle` processes
#   commands       publish and presence round trips on one connection, alone,
#                  with a 10/s /metrics scraper, and under fan-out load
#                  (10,000 subscribers x 50/s in the background), with and
#                  without the scraper
#   node           the isolation and command figures again with a client not
#                  built on wshub (Node.js `ws`, bench/node/issue11.js),
#                  under the same background fan-out
#
# Usage: bench/issue11.sh [--quick] [--only "isolation sweep ..."] BASE_BIN NEW_BIN
# Environment: BENCH_CLIENT (the binary whose `bench` subcommands drive the
# load; default NEW_BIN: BASE_BIN may predate `bench isolation`),
# BENCH_DURATION (10 s per measured window), BENCH_PIN (`none`: server and
# generators share both cores, the default; `split`: server on core 0,
# generators on core 1), BENCH_OUT (a directory; default a new temp dir),
# BENCH_SUBSCRIBERS (10000), BENCH_IDLE (15000), BENCH_REDIS (auto: use a
# redis-server on 127.0.0.1:6379, starting a private one if none answers
# and redis-server is installed; 0 skips the Redis figures).
# Sections (--only): isolation redis sweep joinleave memory commands node.
# Servers listen on ports the OS picks (127.0.0.1:0).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
ONLY="isolation redis sweep joinleave memory commands node"
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1; shift ;;
        --only) ONLY=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
[ $# -eq 2 ] || { echo "usage: bench/issue11.sh [--quick] [--only SECTIONS] BASE_BIN NEW_BIN" >&2; exit 2; }
BASE_BIN=$(realpath "$1")
NEW_BIN=$(realpath "$2")
CLIENT=$(realpath "${BENCH_CLIENT:-$NEW_BIN}")
# The same binary twice: its figures once (bench/run --gateway).
if [ "$BASE_BIN" = "$NEW_BIN" ]; then BINS=("$NEW_BIN"); else BINS=("$BASE_BIN" "$NEW_BIN"); fi
DURATION=${BENCH_DURATION:-10}
SUBS=${BENCH_SUBSCRIBERS:-10000}
IDLE=${BENCH_IDLE:-15000}
PIN=${BENCH_PIN:-none}
REDIS=${BENCH_REDIS:-auto}
SWEEP_RATES=${BENCH_SWEEP:-10,25,50,100,150,200,300,400,600,800,1200,1600,2400,3200}
if [ "$QUICK" = 1 ]; then
    DURATION=3
    SWEEP_RATES=${BENCH_SWEEP:-25,50,100,200,300,400,600,800,1200,1600,2400}
fi
OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/wshub-issue11.XXXXXX")}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
for b in "$BASE_BIN" "$NEW_BIN" "$CLIENT"; do
    [ -x "$b" ] || { echo "bench/issue11.sh: $b is not executable" >&2; exit 2; }
done
"$CLIENT" bench isolation --help >/dev/null 2>&1 || {
    echo "bench/issue11.sh: $CLIENT has no \`bench isolation\`; set BENCH_CLIENT to a newer wshub" >&2
    exit 2
}
NODE_OK=0
if command -v node >/dev/null; then
    if [ -d bench/node/node_modules/ws ] || (cd bench/node && npm ci --no-audit --no-fund >/dev/null 2>&1); then
        NODE_OK=1
    fi
fi
[ "$NODE_OK" = 1 ] || echo "bench/issue11.sh: no node or no \`ws\` package (cd bench/node && npm ci); skipping the Node figures" >&2

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
case $PIN in
    split) SRV_PIN=(taskset -c 0); GEN_PIN=(taskset -c 1) ;;
    none) SRV_PIN=(); GEN_PIN=() ;;
    *) echo "bench/issue11.sh: BENCH_PIN is none or split" >&2; exit 2 ;;
esac

SPID=
BGPIDS=()
REDIS_PID=
cleanup() {
    for p in "${BGPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null || true; fi
    if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

want() { [[ " $ONLY " == *" $1 "* ]]; }
step() { printf '\n==> %s\n' "$*" >&2; }
name_of() { if [ "${#BINS[@]}" = 1 ]; then echo this; elif [ "$1" = "$BASE_BIN" ]; then echo base; else echo new; fi; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

RUN=0
start_server() { # BIN CONFIG; sets SPID, PORT, WS, HTTP (the OS picks the port)
    RUN=$((RUN + 1))
    local log=$OUT/server-$RUN.log
    "${SRV_PIN[@]}" "$1" serve -c "$2" --listen 127.0.0.1:0 >"$log" 2>&1 &
    SPID=$!
    for _ in $(seq 300); do
        if grep -q "listening on" "$log"; then
            HTTP=$(grep -m1 -o 'listening on http://[0-9.:]*' "$log" | sed 's/^listening on //')
            PORT=${HTTP##*:}
            WS=ws://${HTTP#http://}/connection/websocket
            return 0
        fi
        sleep 0.05
    done
    echo "bench/issue11.sh: $1 serve did not start:" >&2
    cat "$log" >&2
    exit 1
}
stop_server() {
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}

record() { # FIGURE BIN JSON
    local json=${3:-null}
    [ -n "$json" ] || json=null
    printf '{"figure":"%s","bin":"%s","load":"%s","pin":"%s","result":%s}\n' \
        "$1" "$(name_of "$2")" "$(loadavg)" "$PIN" "$json" >>"$RESULTS"
    printf '  %-28s %-4s %s\n' "$1" "$(name_of "$2")" "$(cut -c1-160 <<<"$json")" >&2
}

gen() { # LOG ARGS...: runs the bench client; prints its last stdout line
    local log=$1
    shift
    "${GEN_PIN[@]}" "$CLIENT" bench "$@" 2>"$log" | tail -n 1 || true
}

# Background fan-out load: SUBS subscribers of iso:load at 50/s for S seconds;
# returns once the subscribers are open.
start_load() { # SECONDS
    local log=$OUT/load-$PORT.log
    "${GEN_PIN[@]}" "$CLIENT" bench fanout --url "$WS" --subscribers "$SUBS" --rate 50 \
        --duration "$1" --channel iso:load >"$OUT/load-$PORT.json" 2>"$log" &
    BGPIDS+=($!)
    LOAD_PID=$!
    for _ in $(seq 1200); do
        if grep -q "subscribers of iso:load open" "$log" || ! kill -0 "$LOAD_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    sleep 1.5 # the 1 s warm-up of the load's publisher
}
stop_load() {
    kill "$LOAD_PID" 2>/dev/null || true
    wait "$LOAD_PID" 2>/dev/null || true
}

REDIS_OK=0
if want redis && [ "$REDIS" != 0 ]; then
    if redis-cli -p 6379 ping >/dev/null 2>&1; then
        REDIS_OK=1
    elif command -v redis-server >/dev/null; then
        redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
        REDIS_PID=$!
        for _ in $(seq 100); do
            if redis-cli -p 6379 ping >/dev/null 2>&1; then REDIS_OK=1; break; fi
            sleep 0.05
        done
    fi
    [ "$REDIS_OK" = 1 ] || echo "bench/issue11.sh: no Redis at 127.0.0.1:6379; skipping the Redis figures" >&2
fi

MEM=bench/configs/memory.json
RED=bench/configs/redis.json
step "issue 11 figures: base=$BASE_BIN new=$NEW_BIN client=$CLIENT; ${DURATION}s windows; pin=$PIN; load $(loadavg); results in $OUT"

if want isolation; then
    step "isolation, memory broker: small channel alone, then beside $SUBS subscribers x 50/s"
    for bin in "${BINS[@]}"; do
        start_server "$bin" "$MEM"
        record isolation-alone "$bin" "$(gen "$OUT/gen.log" isolation --url "$WS" --subscribers 0 --duration "$DURATION")"
        stop_server
    done
    for bin in "${BINS[@]}"; do
        start_server "$bin" "$MEM"
        record isolation-memory "$bin" "$(gen "$OUT/gen.log" isolation --url "$WS" --subscribers "$SUBS" --rate 50 --duration "$DURATION")"
        stop_server
    done
fi

if want redis && [ "$REDIS_OK" = 1 ]; then
    step "isolation, Redis broker: beside $SUBS subscribers x 50/s"
    for bin in "${BINS[@]}"; do
        start_server "$bin" "$RED"
        record isolation-redis "$bin" "$(gen "$OUT/gen.log" isolation --url "$WS" --subscribers "$SUBS" --rate 50 --duration "$DURATION")"
        stop_server
    done
fi

if want sweep; then
    step "sustained fan-out: $SUBS subscribers, 100 B, rates $SWEEP_RATES ($((DURATION / 2 > 3 ? DURATION / 2 : 3)) s per step)"
    for bin in "${BINS[@]}"; do
        start_server "$bin" "$MEM"
        record fanout-sweep "$bin" "$(gen "$OUT/gen.log" fanout --url "$WS" --subscribers "$SUBS" --channel iso:fan \
            --sweep "$SWEEP_RATES" --duration $((DURATION / 2 > 3 ? DURATION / 2 : 3)) --max-p99-ms 250)"
        stop_server
    done
fi

if want joinleave; then
    step "join_leave + force_push_join_leave: 3,000 subscribers, 30 s to open"
    for bin in "${BINS[@]}"; do
        start_server "$bin" "$MEM"
        record joinleave-3000 "$bin" "$(timeout 60 "${GEN_PIN[@]}" "$CLIENT" bench fanout --url "$WS" --subscribers 3000 \
            --channel jl:room --open-timeout 30 --rate 10 --duration 2 2>"$OUT/gen.log" | tail -n 1 || true)"
        stop_server
    done
fi

if want memory; then
    step "memory: $IDLE idle connections with one subscription, two client processes"
    half=$((IDLE / 2))
    for bin in "${BINS[@]}"; do
        start_server "$bin" "$MEM"
        sleep 0.5
        before=$(rss_kib "$SPID")
        pids=()
        i=0
        for ips in 127.0.0.2-127.0.0.5 127.0.0.6-127.0.0.9; do
            i=$((i + 1))
            n=$half
            [ "$i" = 2 ] && n=$((IDLE - half))
            "${GEN_PIN[@]}" "$CLIENT" bench idle --url "$WS" --connections "$n" --source-ips "$ips" \
                --subscribe iso:idle --hold 600 >"$OUT/idle$i.json" 2>"$OUT/idle$i.log" &
            pids+=($!)
            BGPIDS+=($!)
        done
        for _ in $(seq 1800); do
            done_n=0
            for j in 1 2; do
                if grep -q "connections open" "$OUT/idle$j.log" || ! kill -0 "${pids[$((j - 1))]}" 2>/dev/null; then
                    done_n=$((done_n + 1))
                fi
            done
            [ "$done_n" = 2 ] && break
            sleep 0.1
        done
        sleep 2
        after=$(rss_kib "$SPID")
        for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
        for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
        o1=$(tail -n 1 "$OUT/idle1.json"); o2=$(tail -n 1 "$OUT/idle2.json")
        record memory-idle "$bin" "$(python3 - "$before" "$after" "${o1:-{\}}" "${o2:-{\}}" <<'EOF'
import json, sys
before, after = int(sys.argv[1]), int(sys.argv[2])
parts = [json.loads(p or "{}") for p in sys.argv[3:]]
opened = sum(p.get("opened", 0) for p in parts)
errors = sum(p.get("errors", 0) for p in parts)
print(json.dumps({"rss_before_kib": before, "rss_after_kib": after, "opened": opened,
    "errors": errors, "processes": len(parts),
    "bytes_per_connection": round((after - before) * 1024 / opened) if opened else None}))
EOF
)"
        stop_server
    done
fi

if want commands; then
    step "commands: publish + presence round trips, 100/s each, on one connection"
    for bin in "${BINS[@]}"; do
        start_server "$bin" "$MEM"
        record commands-alone "$bin" "$(gen "$OUT/gen.log" commands --url "$WS" --duration "$DURATION")"
        record commands-scrape "$bin" "$(gen "$OUT/gen.log" commands --url "$WS" --duration "$DURATION" --scrape "$HTTP/metrics")"
        stop_server
    done
    step "commands under fan-out load ($SUBS subscribers x 50/s in the background)"
    for bin in "${BINS[@]}"; do
        start_server "$bin" "$MEM"
        start_load $((2 * DURATION + 8))
        record commands-load "$bin" "$(gen "$OUT/gen.log" commands --url "$WS" --duration "$DURATION")"
        record commands-load-scrape "$bin" "$(gen "$OUT/gen.log" commands --url "$WS" --duration "$DURATION" --scrape "$HTTP/metrics")"
        stop_load
        stop_server
    done
fi

if want node && [ "$NODE_OK" = 1 ]; then
    step "Node.js ws client: small channel and commands, alone and beside $SUBS subscribers x 50/s"
    for bin in "${BINS[@]}"; do
        start_server "$bin" "$MEM"
        record node-isolation-alone "$bin" "$(node bench/node/issue11.js small "$WS" iso:small 20 "$DURATION" 2>"$OUT/node.log" | tail -n 1 || true)"
        record node-commands-alone "$bin" "$(node bench/node/issue11.js commands "$WS" cmd:rtt 100 "$DURATION" 2>"$OUT/node.log" | tail -n 1 || true)"
        start_load $((2 * DURATION + 8))
        record node-isolation-load "$bin" "$(node bench/node/issue11.js small "$WS" iso:small 20 "$DURATION" 2>"$OUT/node.log" | tail -n 1 || true)"
        record node-commands-load "$bin" "$(node bench/node/issue11.js commands "$WS" cmd:rtt 100 "$DURATION" 2>"$OUT/node.log" | tail -n 1 || true)"
        stop_load
        stop_server
    done
fi

step "report"
export RESULTS PIN DURATION SUBS IDLE
python3 "$ROOT/bench/issue11_report.py" "$RESULTS" | tee "$OUT/report.md"
echo "raw results: $RESULTS" >&2
