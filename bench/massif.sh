#!/usr/bin/env bash
# bench/massif.sh [BIN] [CONNECTIONS]: where the bytes of idle connections go.
# Runs `BIN serve` (default target/release/wshub, the memory config of
# bench/configs/) under valgrind's massif, opens CONNECTIONS (default 2000)
# idle connections that each hold one subscription (`wshub bench idle
# --subscribe`), holds them, stops the server cleanly (SIGINT) and prints
# the heap at massif's peak snapshot grouped by allocation site: the first
# frame on each allocation's stack that is wshub's own code (or the first
# outside the allocator and the std/hashbrown/bytes containers), bytes and
# bytes per connection. The raw massif file is kept for `ms_print`.
#
# Environment: BENCH_CLIENT (the `wshub` that opens the connections; default
# BIN), BENCH_TRANSPORT (`websocket`, the default, or `sse`: the connections
# are SSE sessions subscribed through /emulation, the server runs
# bench/configs/fallback.json), MASSIF_OUT (default a temp file), MASSIF_TOP
# (20 sites).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/wshub}")
N=${2:-2000}
CLIENT=$(realpath "${BENCH_CLIENT:-$BIN}")
OUTF=${MASSIF_OUT:-$(mktemp "${TMPDIR:-/tmp}/wshub-massif.XXXXXX")}
TOP=${MASSIF_TOP:-20}
TRANSPORT=${BENCH_TRANSPORT:-websocket}
case $TRANSPORT in
    websocket) CONFIG=bench/configs/memory.json; URL_OF() { echo "ws://$1/connection/websocket"; }; TARGS=() ;;
    sse) CONFIG=bench/configs/fallback.json; URL_OF() { echo "http://$1/connection/sse"; }; TARGS=(--transport sse) ;;
    *) echo "bench/massif.sh: BENCH_TRANSPORT is websocket or sse" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "bench/massif.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
LOG=$OUTF.server.log
valgrind --tool=massif --massif-out-file="$OUTF" --depth=40 --threshold=0.1 --max-snapshots=200 \
    "$BIN" serve -c "$CONFIG" --listen 127.0.0.1:0 >"$LOG" 2>&1 &
VPID=$!
trap 'kill "$VPID" 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    grep -q "listening on" "$LOG" && break
    sleep 0.1
done
grep -q "listening on" "$LOG" || { echo "bench/massif.sh: server did not start" >&2; cat "$LOG" >&2; exit 1; }
ADDR=$(grep -m1 -o 'listening on http://[0-9.:]*' "$LOG" | sed 's|^listening on http://||')
"$CLIENT" bench idle "${TARGS[@]}" --url "$(URL_OF "$ADDR")" --connections "$N" \
    --source-ips 127.0.0.2-127.0.0.5 --subscribe iso:idle --concurrency 16 --hold 5 \
    >"$OUTF.idle.json" 2>"$OUTF.idle.log"
echo "clients: $(tail -n 1 "$OUTF.idle.json")" >&2
kill -INT "$VPID"
wait "$VPID" || true
trap - EXIT
python3 - "$OUTF" "$N" "$TOP" <<'EOF'
import re, sys
path, n, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lines = open(path).read().split("\n")
# Snapshots: "snapshot=K", "mem_heap_B=", "heap_tree=peak|detailed|empty", then the tree.
snaps, cur = [], None
for i, l in enumerate(lines):
    if l.startswith("snapshot="):
        cur = {"start": i}
        snaps.append(cur)
    elif cur is not None and l.startswith("mem_heap_B="):
        cur["heap"] = int(l.split("=")[1])
    elif cur is not None and l.startswith("heap_tree="):
        cur["tree"] = l.split("=")[1]
        cur["tree_at"] = i + 1
detailed = [s for s in snaps if s.get("tree") in ("peak", "detailed")]
peak = next((s for s in detailed if s["tree"] == "peak"), None) or max(detailed, key=lambda s: s["heap"])
node_re = re.compile(r"^( *)n(\d+): (\d+) (.*)$")
GENERIC = re.compile(r"^(0x[0-9A-F]+: )?(alloc::|<alloc::|core::|<core::|hashbrown::|<hashbrown::|std::|<std::|"
                     r"bytes::|<bytes::|__rust|__rdl|__rg|malloc|calloc|realloc|operator new|"
                     r"smallvec::|<smallvec::|slab::|<slab::|indexmap::|<indexmap::|\?\?\?|in \d+ places)")
# Parse the peak tree into (depth, bytes, label) and attribute each leaf's
# bytes to its first interesting frame.
tree = []
i = peak["tree_at"]
while i < len(lines):
    m = node_re.match(lines[i])
    if not m:
        break
    tree.append((len(m.group(1)), int(m.group(3)), m.group(4)))
    i += 1
sites = {}
stack = []
for k, (d, b, label) in enumerate(tree):
    stack = stack[:d]
    stack.append(label)
    is_leaf = k + 1 >= len(tree) or tree[k + 1][0] <= d
    if not is_leaf or d == 0:
        continue
    frames = stack[1:]
    pick = next((f for f in frames if "wshub" in f), None) \
        or next((f for f in frames if not GENERIC.match(f)), frames[-1] if frames else "?")
    pick = re.sub(r"^0x[0-9A-F]+: ", "", pick)
    pick = re.sub(r" \(in /.*\)$", "", pick)
    sites[pick] = sites.get(pick, 0) + b
total = peak["heap"]
print(f"massif peak snapshot: heap {total:,} B for {n} connections = {total / n:,.0f} B per connection (includes the server's fixed heap)")
print(f"| bytes | per connection | share | allocation site (first wshub frame, else first non-container frame) |")
print("|---:|---:|---:|---|")
for site, b in sorted(sites.items(), key=lambda kv: -kv[1])[:top]:
    print(f"| {b:,} | {b / n:,.0f} | {100 * b / max(total, 1):.1f}% | `{site[:160]}` |")
print(f"\nmassif file: {path} (ms_print {path})")
EOF
