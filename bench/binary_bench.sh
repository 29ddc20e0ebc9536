#!/usr/bin/env bash
# Binary protocol benchmark: lnserve answering 1-row INFER frames over
# io_uring against nginx serving a static file of the same size as
# lnserve's response frame, over keep-alive HTTP, in the same run. Servers
# on one core, the load generator on the other.
#
#   bench/binary_bench.sh [N] [connections] [seconds] [depth]   (make bench-binary)
#
# Load: lnctl bench (one epoll thread, tools/bench.h) for lnserve, wrk -t1
# for nginx's peak. Prints
#   - nginx's peak and lnserve's pipelined peak (depth requests in flight
#     per connection), and the ratio;
#   - lnserve without pipelining (depth 1);
#   - open loop (latency counted from each request's scheduled time, so a
#     stall cannot hide queueing) at half the pipelined peak and at half the
#     depth-1 peak, and nginx open loop at half its own peak (lnctl, HTTP),
#     the same-run reference for latency.
# Every lnctl row says how busy lnctl itself was ("client cpu"): a load
# generator near 100 % of its core, not the server, sets the pace, and its
# latencies are its own queueing. On loopback the sender also pays for the
# receiver's TCP processing, so an open loop (one write per request, on
# schedule) costs the generator far more per request than the server.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-768}
CONNS=${2:-16}
SECS=${3:-10}
DEPTH=${4:-32}
BIN=build/release/lnserve
LNCTL=build/release/lnctl
[ -x "$BIN" ] && [ -x "$LNCTL" ] || { echo "build first: make" >&2; exit 1; }
. bench/lib.sh
nginx_deps
bench_init

# lnserve: the io_uring thread and one worker share the server core.
taskset -c $SRV_CPU "$BIN" --port 0 --binary-port 0 --workers 1 --cpus $SRV_CPU \
    --queue-capacity 65536 > "$tmp/srv.out" 2> "$tmp/srv.err" &
srv_pid=$!
for _ in $(seq 100); do grep -q "binary listening" "$tmp/srv.out" 2>/dev/null && break; sleep 0.05; done
bport=$(sed -n 's/^lnserve binary listening on tcp:.*:\([0-9]*\)$/\1/p' "$tmp/srv.out")
[ -n "$bport" ] || { echo "lnserve did not start: $(cat "$tmp/srv.err")" >&2; exit 1; }

# One lnctl bench run (JSON on stdout); bounded by --duration and timeout(1).
lnctl_run() { # url-or-addr options... -- bench options...
    taskset -c $LOAD_CPU timeout $(( ${SECS%.*} + 60 )) "$LNCTL" "$@" --n "$N" \
        --concurrency "$CONNS" --duration "$SECS" --seed 1 --json --quiet
}
ln_run() { lnctl_run --protocol binary-tcp --addr "127.0.0.1:$bport" bench "$@"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, d))' "$1"; }
line() { # a one-line summary of an lnctl bench JSON result
    python3 -c 'import json,sys
d = json.load(sys.stdin); l = d["latency_us"]
print("%9.0f req/s  p50 %7.1f us  p99 %8.1f us  p99.9 %8.1f us  client cpu %3.0f %%  errors %d"
      % (d["req_s"], l["p50"], l["p99"], l["p99_9"], 100 * d["client_cpu"], d["errors_total"]))'
}

resp_bytes=$("$LNCTL" --protocol binary-tcp --addr "127.0.0.1:$bport" bench --n "$N" --requests 1 \
             --concurrency 1 --warmup 0 --seed 1 --json --quiet | field response_bytes)

# nginx: one worker on the server core, serving a file of the same size
# (under the infer path too, so lnctl can POST to it: bench/lib.sh).
file_of_size "$tmp/www/resp.bin" "$resp_bytes"
file_of_size "$tmp/www/v2/models/layernorm/infer" "$resp_bytes"
nginx_start "$tmp/www" "$tmp/ngx" $SRV_CPU
nport=$NGX_PORT

taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$nport/resp.bin" > "$tmp/ngx.txt"
ngx_rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/ngx.txt")
ngx_p99=$(awk '/^ +99%/ {print $2}' "$tmp/ngx.txt")

peak_js=$(ln_run --pipeline "$DEPTH" --check-every 64)
d1_js=$(ln_run --pipeline 1 --check-every 64)
peak=$(echo "$peak_js" | field 'int(req_s)')
d1=$(echo "$d1_js" | field 'int(req_s)')
half_js=$(ln_run --pipeline "$DEPTH" --check-every 64 --rate $(( peak / 2 )))
halfd1_js=$(ln_run --pipeline "$DEPTH" --check-every 64 --rate $(( d1 / 2 )))
ngx_half=$(python3 -c "print(int($ngx_rps / 2))")
ngx_half_js=$(lnctl_run --url "http://127.0.0.1:$nport" bench --protocol http-binary \
              --check-every 0 --rate "$ngx_half")

echo "binary bench: N=$N, 1 row, $CONNS connections, ${SECS}s each; servers on cpu $SRV_CPU, load on cpu $LOAD_CPU"
echo "response $resp_bytes B (nginx serves a file of the same size over HTTP keep-alive)"
printf '%-46s %9.0f req/s  p99 %s\n' "nginx static file, wrk -t1 (peak)" "$ngx_rps" "$ngx_p99"
printf '%-46s %s\n' "lnserve binary, pipelined x$DEPTH (peak)" "$(echo "$peak_js" | line)"
printf '%-46s %s\n' "lnserve binary, no pipelining" "$(echo "$d1_js" | line)"
printf '%-46s %s\n' "lnserve open loop at $(( peak / 2 ))/s (half the peak)" "$(echo "$half_js" | line)"
printf '%-46s %s\n' "lnserve open loop at $(( d1 / 2 ))/s (half of x1)" "$(echo "$halfd1_js" | line)"
printf '%-46s %s\n' "nginx open loop at $ngx_half/s (half its peak)" "$(echo "$ngx_half_js" | line)"
python3 -c "print('lnserve pipelined / nginx requests/s: %.2f' % ($peak / $ngx_rps))"
