#!/usr/bin/env bash
# Binary protocol benchmark: lnserve answering 1-row INFER frames over
# io_uring (pipelined, bench/bench_binary.c) against nginx serving a static
# file of the same size as lnserve's response frame, over keep-alive HTTP
# with wrk, in the same run. Servers on one core, load on the other.
#
#   bench/binary_bench.sh [N] [connections] [seconds] [depth]   (make bench-binary)
#
# Prints nginx req/s, lnserve pipelined peak req/s and the ratio, lnserve
# without pipelining (depth 1), then lnserve open loop at half its peak:
# p50/p99 counted from each request's scheduled send time.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-768}
CONNS=${2:-16}
SECS=${3:-10}
DEPTH=${4:-32}
BIN=build/release/lnserve
BB=build/release/bench/bench_binary
[ -x "$BIN" ] && [ -x "$BB" ] || { echo "build first: make" >&2; exit 1; }
. bench/lib.sh
nginx_deps
bench_init

# lnserve: the io_uring thread and one worker share the server core.
taskset -c $SRV_CPU "$BIN" --port 0 --binary-port 0 --workers 1 --cpus $SRV_CPU \
    --queue-capacity 65536 > "$tmp/srv.out" 2> "$tmp/srv.err" &
srv_pid=$!
for _ in $(seq 100); do grep -q "binary listening" "$tmp/srv.out" 2>/dev/null && break; sleep 0.05; done
bport=$(sed -n 's/^lnserve binary listening on tcp:.*:\([0-9]*\)$/\1/p' "$tmp/srv.out")
addr="127.0.0.1:$bport"
# Response frame: header 24 + status 4 + fixed 16 + output N + mean + rstd + radius (f32).
resp_bytes=$(( 24 + 4 + 16 + 4 * (N + 3) ))

# nginx: one worker on the server core, serving a file of the same size.
file_of_size "$tmp/www/resp.bin" "$resp_bytes"
nginx_start "$tmp/www" "$tmp/ngx" $SRV_CPU
nport=$NGX_PORT

taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$nport/resp.bin" > "$tmp/ngx.txt"
ngx_rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/ngx.txt")
ngx_p99=$(awk '/^ +99%/ {print $2}' "$tmp/ngx.txt")
# One load thread per connection; all pinned to the load core, like wrk -t1.
run_bb() { taskset -c $LOAD_CPU "$BB" "$addr" --n "$N" --conns "$CONNS" --secs "$SECS" "$@"; }
peak_line=$(run_bb --depth "$DEPTH")
peak=$(echo "$peak_line" | sed -n 's/.*: \([0-9]*\) req\/s.*/\1/p' | head -1)
d1_line=$(run_bb --depth 1)
half=$(( peak / 2 ))
half_line=$(run_bb --rate "$half")

echo "binary bench: N=$N, 1 row, $CONNS connections, ${SECS}s each; servers on cpu $SRV_CPU, load on cpu $LOAD_CPU"
echo "response $resp_bytes B (nginx serves a file of the same size over HTTP keep-alive)"
echo "nginx static file, wrk -t1:         $ngx_rps req/s, p99 $ngx_p99"
echo "lnserve binary, pipelined x$DEPTH:    $peak_line"
echo "lnserve binary, no pipelining:      $d1_line"
echo "lnserve binary, open loop at half:  $half_line"
python3 -c "print('lnserve pipelined / nginx requests/s: %.2f' % ($peak / $ngx_rps))"
