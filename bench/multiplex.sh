#!/usr/bin/env bash
# bench/multiplex.sh [BIN]: N WebSockets as streams of one HTTP/2
# connection (RFC 8441) beside N HTTP/1.1 connections, against a fresh
# `BIN echo --threads 1` per run (pinned to core 0; the generator, `BIN bench
# multiplex`, to core 1), the modes interleaved run by run. A third mode,
# h2-node, is the same HTTP/2 load from a client not built on wshub: Node's
# `http2` (bench/node/h2_multiplex.js; `npm ci` in bench/node is not needed,
# it has no dependencies). Figures:
# the echo server's VmRSS growth per WebSocket (0.5 s after the last
# opened), closed-loop echo messages/s (one 100 B message in flight per
# socket) and round-trip p50/p99, server CPU. About a minute.
#
# Environment: BENCH_SOCKETS (1000), BENCH_ROUNDS (3), BENCH_DURATION (5 s).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/wshub}")
N=${BENCH_SOCKETS:-1000}
ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-5}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/wshub-multiplex.XXXXXX")
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SPID=
trap '[ -n "$SPID" ] && kill "$SPID" 2>/dev/null || true' EXIT
echo "multiplex: $BIN, $N sockets, $ROUNDS rounds, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq "$ROUNDS"); do
    for mode in h2 h1 h2-node; do
        taskset -c 0 "$BIN" echo --threads 1 --http2-max-streams "$N" --listen 127.0.0.1:0 >"$OUT/echo.out" 2>"$OUT/echo.err" &
        SPID=$!
        for _ in $(seq 100); do grep -q listening "$OUT/echo.out" && break; sleep 0.05; done
        url=$(grep -m1 -o 'ws://[0-9.:]*' "$OUT/echo.out")
        sleep 0.3
        if [ "$mode" = h2-node ]; then
            taskset -c 1 node bench/node/h2_multiplex.js "${url/ws:/http:}" "$N" "$DURATION" "$SPID" \
                2>>"$OUT/bench.err" | tail -n 1 | tee -a "$OUT/results.jsonl"
        else
            taskset -c 1 "$BIN" bench multiplex --url "$url/" --mode "$mode" --sockets "$N" \
                --duration "$DURATION" --server-pid "$SPID" 2>>"$OUT/bench.err" | tail -n 1 | tee -a "$OUT/results.jsonl"
        fi
        kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=
    done
done
python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| mode | sockets | server bytes per WebSocket | echo messages/s | RTT p50 ms | RTT p99 ms | server CPU % | errors | rounds |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
med = lambda k, rs: statistics.median(r[k] for r in rs if r.get(k) is not None)
names = {"h2": "HTTP/2, one connection (wshub client)", "h1": "HTTP/1.1, one connection each (wshub client)",
         "h2-node": "HTTP/2, one connection (Node http2 client)"}
for mode in ("h2", "h1", "h2-node"):
    rs = [r for r in rows if r["mode"] == mode]
    if not rs:
        continue
    print(f"| {names[mode]} | {rs[0]['sockets']:,} | "
          f"{med('server_bytes_per_socket', rs):,.0f} | {med('messages_per_s', rs):,.0f} | {med('rtt_p50_ms', rs):.2f} | "
          f"{med('rtt_p99_ms', rs):.2f} | {med('server_cpu_pct', rs):.1f} | {sum(r['errors'] for r in rs)} | {len(rs)} |")
PY
echo "raw: $OUT/results.jsonl" >&2
