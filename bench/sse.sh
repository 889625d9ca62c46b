#!/usr/bin/env bash
# bench/sse.sh [--quick] [--only "memory fanout sweep"] [BIN]: the HTTP
# fallback transports' figures, SSE beside WebSocket, in one run on this
# machine, the transports interleaved run by run (websocket, sse,
# websocket, sse ...), each run against a fresh `BIN serve -c
# bench/configs/fallback.json` (bench/configs/memory.json plus `sse`,
# `http_stream` and `uni_sse` enabled). BIN defaults to
# target/release/wshub; its `bench` subcommands drive the load. Bounded in
# time: about 6 minutes with the defaults, 2 with --quick.
#
# Figures:
#   memory   RSS growth per idle connection holding one subscription
#            (`wshub bench idle --subscribe iso:idle [--transport sse]`,
#            one client process, source addresses 127.0.0.2-127.0.0.9), at
#            each count of BENCH_IDLE: the server's VmRSS 0.5 s after it
#            started and 2 s after the last connection opened, delta /
#            connections. An SSE session subscribes through /emulation
#            (8 keep-alive connections shared by all sessions, included in
#            the delta) and answers pings there.
#   fanout   deliveries/s and publish-to-deliver p50/p99 to N subscribers
#            of one channel at a fixed publication rate of 100 B
#            publications (`wshub bench fanout --rate R --server-pid`), for
#            each N:R of BENCH_FANOUT; the publisher speaks WebSocket
#            either way; server and generator CPU over the window.
#   sweep    the highest rate every subscriber keeps up with (all
#            acknowledged and delivered, p99 <= 250 ms), N of BENCH_FANOUT,
#            rates BENCH_SWEEP_<N> (one round).
# Each memory and fanout figure is taken BENCH_ROUNDS times (3); the report
# gives medians and the SSE / WebSocket ratio.
#
# Environment: BENCH_ROUNDS (3), BENCH_IDLE ("5000 10000"), BENCH_FANOUT
# ("1000:100 5000:20"), BENCH_DURATION (10 s windows after 1 s of warm-up),
# BENCH_PIN (`split`, the default: server on core 0, generator on core 1;
# `none`: both unpinned), BENCH_OUT (a directory; default a new temp dir).
# Servers listen on ports the OS picks (127.0.0.1:0).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
ONLY="memory fanout sweep"
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1; shift ;;
        --only) ONLY=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
[ $# -le 1 ] || { echo "usage: bench/sse.sh [--quick] [--only SECTIONS] [BIN]" >&2; exit 2; }
BIN=$(realpath "${1:-target/release/wshub}")
ROUNDS=${BENCH_ROUNDS:-3}
IDLE=${BENCH_IDLE:-5000 10000}
FANOUT=${BENCH_FANOUT:-1000:100 5000:20}
DURATION=${BENCH_DURATION:-10}
PIN=${BENCH_PIN:-split}
if [ "$QUICK" = 1 ]; then
    ROUNDS=${BENCH_ROUNDS:-1}
    DURATION=${BENCH_DURATION:-3}
fi
OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/wshub-sse.XXXXXX")}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
CONFIG=bench/configs/fallback.json
[ -x "$BIN" ] || { echo "bench/sse.sh: $BIN is not executable" >&2; exit 2; }
"$BIN" bench idle --help 2>/dev/null | grep -q -- --transport || {
    echo "bench/sse.sh: $BIN has no \`bench idle --transport\`" >&2
    exit 2
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
case $PIN in
    split) SRV_PIN=(taskset -c 0); GEN_PIN=(taskset -c 1) ;;
    none) SRV_PIN=(); GEN_PIN=() ;;
    *) echo "bench/sse.sh: BENCH_PIN is none or split" >&2; exit 2 ;;
esac

SPID=
GPID=
cleanup() {
    if [ -n "$GPID" ]; then kill "$GPID" 2>/dev/null || true; fi
    if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null || true; fi
}
trap cleanup EXIT

want() { [[ " $ONLY " == *" $1 "* ]]; }
step() { printf '\n==> %s\n' "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

RUN=0
start_server() { # sets SPID, ADDR (the OS picks the port)
    RUN=$((RUN + 1))
    local log=$OUT/server-$RUN.log
    "${SRV_PIN[@]}" "$BIN" serve -c "$CONFIG" --listen 127.0.0.1:0 >"$log" 2>&1 &
    SPID=$!
    for _ in $(seq 300); do
        if grep -q "listening on" "$log"; then
            ADDR=$(grep -m1 -o 'listening on http://[0-9.:]*' "$log" | sed 's|^listening on http://||')
            return 0
        fi
        sleep 0.05
    done
    echo "bench/sse.sh: $BIN serve did not start:" >&2
    cat "$log" >&2
    exit 1
}
stop_server() {
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}
url_of() { # TRANSPORT
    if [ "$1" = sse ]; then echo "http://$ADDR/connection/sse"; else echo "ws://$ADDR/connection/websocket"; fi
}

record() { # FIGURE TRANSPORT ROUND JSON
    local json=${4:-null}
    [ -n "$json" ] || json=null
    printf '{"figure":"%s","transport":"%s","round":%s,"load":"%s","pin":"%s","result":%s}\n' \
        "$1" "$2" "$3" "$(loadavg)" "$PIN" "$json" >>"$RESULTS"
    printf '  %-14s %-9s %s %s\n' "$1" "$2" "$3" "$(cut -c1-150 <<<"$json")" >&2
}

step "SSE vs WebSocket: $BIN; $ROUNDS round(s); pin=$PIN; load $(loadavg); results in $OUT"

if want memory; then
    for n in $IDLE; do
        step "memory: $n idle connections holding one subscription"
        for r in $(seq "$ROUNDS"); do
            for t in websocket sse; do
                start_server
                sleep 0.5
                before=$(rss_kib "$SPID")
                log=$OUT/idle-$t-$n-$r.log
                "${GEN_PIN[@]}" "$BIN" bench idle --transport "$t" --url "$(url_of "$t")" \
                    --connections "$n" --source-ips 127.0.0.2-127.0.0.9 --subscribe iso:idle \
                    --hold 600 >"$OUT/idle.json" 2>"$log" &
                GPID=$!
                for _ in $(seq 1200); do
                    if grep -q "connections open" "$log" || ! kill -0 "$GPID" 2>/dev/null; then break; fi
                    sleep 0.1
                done
                sleep 2
                after=$(rss_kib "$SPID")
                kill -INT "$GPID" 2>/dev/null || true
                wait "$GPID" 2>/dev/null || true
                GPID=
                record memory "$t" "$r" "$(python3 - "$before" "$after" "$(tail -n 1 "$OUT/idle.json")" <<'EOF'
import json, sys
before, after = int(sys.argv[1]), int(sys.argv[2])
try:
    p = json.loads(sys.argv[3])
except ValueError:
    p = {}
opened = p.get("opened", 0)
print(json.dumps({"rss_before_kib": before, "rss_after_kib": after, "connections": p.get("connections"),
    "opened": opened, "errors": p.get("errors"), "open_s": p.get("open_s"),
    "emulation_failed": p.get("emulation_failed"),
    "bytes_per_connection": round((after - before) * 1024 / opened) if opened else None}))
EOF
)"
                stop_server
            done
        done
    done
fi

fanout() { # TRANSPORT SUBSCRIBERS ARGS...: one `bench fanout` against a fresh server
    local t=$1 n=$2
    shift 2
    start_server
    "${GEN_PIN[@]}" timeout 600 "$BIN" bench fanout --transport "$t" --url "$(url_of "$t")" \
        --subscribers "$n" --channel iso:fan --server-pid "$SPID" "$@" 2>"$OUT/fanout.log" | tail -n 1 || true
    stop_server
}

if want fanout; then
    for nr in $FANOUT; do
        n=${nr%%:*}
        rate=${nr##*:}
        step "fan-out: $n subscribers, $rate publications/s of 100 B, ${DURATION}s windows"
        for r in $(seq "$ROUNDS"); do
            for t in websocket sse; do
                record fanout "$t" "$r" "$(fanout "$t" "$n" --rate "$rate" --duration "$DURATION")"
            done
        done
    done
fi

if want sweep; then
    for nr in $FANOUT; do
        n=${nr%%:*}
        var=BENCH_SWEEP_$n
        default=10,20,30,40,50,60,80,100,125,150,200
        [ "$n" -le 1000 ] && default=100,200,300,400,500,600,800,1000,1200
        rates=${!var:-$default}
        step "sweep: $n subscribers, rates $rates ($((DURATION / 2 > 3 ? DURATION / 2 : 3)) s per step)"
        for t in websocket sse; do
            record sweep "$t" 1 "$(fanout "$t" "$n" --sweep "$rates" --sweep-failures 2 \
                --duration $((DURATION / 2 > 3 ? DURATION / 2 : 3)) --max-p99-ms 250)"
        done
    done
fi

step "report"
python3 "$ROOT/bench/sse_report.py" "$RESULTS" | tee "$OUT/report.md"
echo "raw results: $RESULTS" >&2
