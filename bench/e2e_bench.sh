#!/usr/bin/env bash
# End-to-end benchmark, one table: lnserve over every protocol against nginx
# serving the same response bytes, in the same run, on loopback only.
#
#   bench/e2e_bench.sh            (make bench-e2e; settings from the environment:)
#     NS="768 4096"   row lengths N (1 row per request)
#     CONNS=16        connections, the same for every row
#     SECS=5          measured seconds per row (plus WARMUP=1 unmeasured)
#     DEPTH=8         requests in flight per connection for the pipelined binary rows
#
# One load generator for every row: lnctl bench (tools/bench.h), pinned to
# one core, the server under test (lnserve: 1 I/O thread + 1 worker; nginx:
# 1 worker) pinned to the other. lnctl checks every lnserve response
# against its reference; against nginx it checks the status only (the file
# is filler of the right size). For each N:
#
#   nginx     POST answered with a static file (bench/lib.sh) of exactly
#             the size of lnserve's response body for that protocol: the
#             JSON body (for http-json), the binary-extension body (for
#             http-binary) or the whole response frame (for binary-*).
#             The request is the same bytes as lnserve gets (JSON, or the
#             binary-extension body for the binary rows).
#   lnserve   http-json, http-binary, binary-tcp x1 (no pipelining, like
#             HTTP/1.1), binary-tcp xDEPTH, binary-unix xDEPTH; each row's
#             ratio is against the nginx row of the same response size.
#   nginx     GET with wrk -t1 on the JSON-size file: how much of nginx the
#             lnctl load generator itself can reach (a check, no ratio).
#
# Rows alternate nginx and lnserve so that the drift of a shared machine
# spreads over both. Every run is bounded (--duration, and timeout(1)
# around it); the script stops by itself and cleans up on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
NS=${NS:-"768 4096"}
CONNS=${CONNS:-16}
SECS=${SECS:-5}
WARMUP=${WARMUP:-1}
DEPTH=${DEPTH:-8}
BIN=build/release/lnserve
LNCTL=build/release/lnctl
[ -x "$BIN" ] && [ -x "$LNCTL" ] || { echo "build first: make build/release/lnserve build/release/lnctl" >&2; exit 1; }
. bench/lib.sh
nginx_deps
bench_init

# lnserve: HTTP, binary TCP and the Unix socket, all on 127.0.0.1 / in $tmp.
sock="$tmp/lnserve.sock"
taskset -c $SRV_CPU "$BIN" --address 127.0.0.1 --port 0 --binary-port 0 --unix-socket "$sock" \
    --workers 1 --cpus $SRV_CPU --io-threads 1 --queue-capacity 65536 \
    > "$tmp/srv.out" 2> "$tmp/srv.err" &
srv_pid=$!
for _ in $(seq 100); do grep -q "unix:" "$tmp/srv.out" 2>/dev/null && break; sleep 0.05; done
hport=$(sed -n 's/^lnserve listening on http:.*:\([0-9]*\)$/\1/p' "$tmp/srv.out")
bport=$(sed -n 's/^lnserve binary listening on tcp:.*:\([0-9]*\)$/\1/p' "$tmp/srv.out")
[ -n "$hport" ] && [ -n "$bport" ] || { echo "lnserve did not start: $(cat "$tmp/srv.err")" >&2; exit 1; }
ln_url="http://127.0.0.1:$hport"

wire() { # protocol -> lnctl options for lnserve
    case $1 in
        binary-tcp) echo "--protocol binary-tcp --addr 127.0.0.1:$bport" ;;
        binary-unix) echo "--protocol binary-unix --addr $sock" ;;
        *) echo "--protocol $1" ;;
    esac
}

# One lnctl bench run; appends "N<TAB>label<TAB>ref<TAB>json" to results.
results="$tmp/results.tsv"
: > "$results"
run() { # N label ref url wire-options... -- bench-options...
    local n=$1 label=$2 ref=$3 url=$4 out
    shift 4
    out=$(taskset -c $LOAD_CPU timeout $(( ${SECS%.*} + ${WARMUP%.*} + 60 )) "$LNCTL" --url "$url" "$@" \
          --n "$n" --concurrency "$CONNS" --duration "$SECS" --warmup "$WARMUP" --seed 1 \
          --json --quiet) || true
    [ -n "$out" ] || out='{"req_s":0,"errors_total":-1}'
    printf '%s\t%s\t%s\t%s\n' "$n" "$label" "$ref" "$out" >> "$results"
    echo "  $label: $(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f req/s, %s errors" % (d["req_s"], d["errors_total"]))')" >&2
}

# The response sizes lnserve answers with, one request each: nginx serves
# files of exactly those sizes under /<tag>/v2/models/layernorm/infer.
declare -A size
for n in $NS; do
    for p in http-json http-binary binary-tcp; do
        # shellcheck disable=SC2046
        b=$("$LNCTL" --url "$ln_url" $(wire $p) bench --n "$n" --requests 1 --concurrency 1 --seed 1 \
            --warmup 0 --json --quiet | python3 -c 'import json,sys; print(json.load(sys.stdin)["response_bytes"])')
        size[$n,$p]=$b
        file_of_size "$tmp/www/n$n-$p/v2/models/layernorm/infer" "$b"
    done
done
nginx_start "$tmp/www" "$tmp/ngx" $SRV_CPU
ngx_url() { echo "http://127.0.0.1:$NGX_PORT/n$1-$2"; }

for n in $NS; do
    echo "N=$n" >&2
    # nginx JSON-size reference, checked by status only
    run "$n" "nginx (JSON body size)" "ref-json" "$(ngx_url "$n" http-json)" \
        bench --protocol http-json --check-every 0
    # shellcheck disable=SC2046
    run "$n" "lnserve http-json" "ref-json" "$ln_url" $(wire http-json) bench
    run "$n" "nginx (binary-ext body size)" "ref-hbin" "$(ngx_url "$n" http-binary)" \
        bench --protocol http-binary --check-every 0
    # shellcheck disable=SC2046
    run "$n" "lnserve http-binary" "ref-hbin" "$ln_url" $(wire http-binary) bench
    run "$n" "nginx (frame size)" "ref-frame" "$(ngx_url "$n" binary-tcp)" \
        bench --protocol http-binary --check-every 0
    # shellcheck disable=SC2046
    run "$n" "lnserve binary-tcp x1" "ref-frame" "$ln_url" $(wire binary-tcp) bench --pipeline 1
    # shellcheck disable=SC2046
    run "$n" "lnserve binary-tcp x$DEPTH" "ref-frame" "$ln_url" $(wire binary-tcp) bench \
        --pipeline "$DEPTH"
    # shellcheck disable=SC2046
    run "$n" "lnserve binary-unix x$DEPTH" "ref-frame" "$ln_url" $(wire binary-unix) bench \
        --pipeline "$DEPTH"
    # the load generator's own reach: wrk GET on the JSON-size file
    wout=$(taskset -c $LOAD_CPU timeout $(( ${SECS%.*} + 30 )) wrk -t1 -c"$CONNS" -d"${SECS}s" --latency \
           "$(ngx_url "$n" http-json)/v2/models/layernorm/infer" || true)
    printf '%s\t%s\t%s\t%s\n' "$n" "nginx GET, wrk -t1 (check)" "wrk" \
        "$(echo "$wout" | awk '/Requests\/sec/ {r=$2} /^ +50%/ {a=$2} /^ +99%/ {b=$2}
                               END {printf "{\"req_s\":%s,\"p50\":\"%s\",\"p99\":\"%s\"}", r+0, a, b}')" >> "$results"
done

echo
echo "bench-e2e: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p' | head -1))"
echo "servers on cpu $SRV_CPU (lnserve: 1 I/O thread + 1 worker; nginx: 1 worker), lnctl bench on cpu $LOAD_CPU;"
echo "1 row per request, $CONNS connections, ${SECS} s measured after ${WARMUP} s warmup per row, 127.0.0.1 only."
echo "ratio = lnserve req/s / nginx req/s for a file of the same response size, measured in this run."
python3 - "$results" <<'PY'
import json, sys
rows = [l.rstrip("\n").split("\t", 3) for l in open(sys.argv[1]) if l.strip()]
ref = {}
for n, label, key, js in rows:
    if label.startswith("nginx ("):
        ref[(n, key)] = json.loads(js)["req_s"]
fmt = "%-6s %-30s %8s %10s %10s %10s %7s %8s"
print(fmt % ("N", "server / protocol", "resp B", "req/s", "p50 us", "p99 us", "errors", "ratio"))
for n, label, key, js in rows:
    d = json.loads(js)
    if key == "wrk":
        print(fmt % (n, label, "", "%.0f" % d["req_s"], d["p50"], d["p99"], "", ""))
        continue
    lat = d.get("latency_us", {})
    r = ref.get((n, key)) or 0
    ratio = "" if label.startswith("nginx") else ("%.2f" % (d["req_s"] / r) if r else "n/a")
    print(fmt % (n, label, d.get("response_bytes", ""), "%.0f" % d["req_s"],
                 "%.0f" % lat.get("p50", 0), "%.0f" % lat.get("p99", 0),
                 d.get("errors_total", "?"), ratio))
bad = [label for n, label, key, js in rows if key != "wrk" and json.loads(js).get("errors_total") != 0]
if bad:
    print("rows with errors: " + ", ".join(sorted(set(bad))))
    sys.exit(1)
PY
