#!/usr/bin/env bash
# End-to-end HTTP benchmark: lnserve answering a 1-row JSON infer against
# nginx serving a static file of the same size as lnserve's response, in
# the same run, with wrk (1 thread) on another core than the server.
#
#   bench/http_bench.sh [N] [connections] [seconds] [json|binary]   (make bench-http)
#
# binary: the request is Triton's binary tensor data extension (a small JSON
# header, then the row as raw FP32, Inference-Header-Content-Length) and
# asks for every output as binary (parameters.binary_data_output); nginx
# then serves a file of the same size as that binary response.
#
# Prints requests/s and p50/p99 for both and lnserve/nginx as a ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-768}
CONNS=${2:-16}
SECS=${3:-10}
MODE=${4:-json}
case "$MODE" in json|binary) ;; *) echo "mode: json or binary, got $MODE" >&2; exit 2 ;; esac
BIN=build/release/lnserve
[ -x "$BIN" ] || { echo "build first: make" >&2; exit 1; }
. bench/lib.sh
nginx_deps
bench_init

python3 - "$N" "$MODE" "$tmp/body.json" "$tmp/hlen" <<'PY'
import json, random, struct, sys
n = int(sys.argv[1]); r = random.Random(1)
vals = [round(r.gauss(0, 1), 6) for _ in range(n)]
if sys.argv[2] == "json":
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, n],
                                   "data": vals}]}).encode()
    hlen = ""
else:
    hdr = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, n],
                                  "parameters": {"binary_data_size": 4 * n}}],
                      "parameters": {"binary_data_output": True}}).encode()
    body = hdr + struct.pack(f"<{n}f", *vals)
    hlen = str(len(hdr))
open(sys.argv[3], "wb").write(body)
open(sys.argv[4], "w").write(hlen)
PY
hlen=$(cat "$tmp/hlen")
hdr_args=(-H "Content-Type: application/json")
lua_hdr='wrk.headers["Content-Type"] = "application/json"'
if [ "$MODE" = binary ]; then
    hdr_args=(-H "Inference-Header-Content-Length: $hlen")
    lua_hdr="wrk.headers[\"Inference-Header-Content-Length\"] = \"$hlen\""
fi
cat > "$tmp/post.lua" <<LUA
wrk.method = "POST"
$lua_hdr
local f = io.open("$tmp/body.json", "rb"); wrk.body = f:read("*a"); f:close()
LUA

# lnserve: one I/O thread and one worker share the server core.
taskset -c $SRV_CPU "$BIN" --port 0 --workers 1 --cpus $SRV_CPU --io-threads 1 \
    > "$tmp/srv.out" 2> "$tmp/srv.err" &
srv_pid=$!
for _ in $(seq 100); do grep -q listening "$tmp/srv.out" 2>/dev/null && break; sleep 0.05; done
port=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$tmp/srv.out" | head -1)
url="http://127.0.0.1:$port/v2/models/layernorm/infer"
curl -s -o "$tmp/resp.json" "${hdr_args[@]}" --data-binary @"$tmp/body.json" "$url"
resp_bytes=$(stat -c %s "$tmp/resp.json")

# nginx: one worker on the server core, serving a file of the same size.
file_of_size "$tmp/www/resp.json" "$resp_bytes"
nginx_start "$tmp/www" "$tmp/ngx" $SRV_CPU
nport=$NGX_PORT

run_wrk() { taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$@"; }
parse() { # prints: req/s p50 p99
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
         /Non-2xx/ {bad=$NF} END {print rps, p50, p99, (bad==""?0:bad)}'
}
run_wrk "http://127.0.0.1:$nport/resp.json" > "$tmp/ngx.txt"
run_wrk -s "$tmp/post.lua" "$url" > "$tmp/ln.txt"
read -r ngx_rps ngx_p50 ngx_p99 ngx_bad < <(parse < "$tmp/ngx.txt")
read -r ln_rps ln_p50 ln_p99 ln_bad < <(parse < "$tmp/ln.txt")

echo "http bench: $MODE, N=$N, 1 row, $CONNS connections, ${SECS}s, wrk -t1 on cpu $LOAD_CPU, servers on cpu $SRV_CPU"
echo "request body $(stat -c %s "$tmp/body.json") B, response $resp_bytes B"
printf '%-34s %12s %10s %10s %8s\n' "server" "req/s" "p50" "p99" "non-2xx"
printf '%-34s %12s %10s %10s %8s\n' "nginx static file (same bytes)" "$ngx_rps" "$ngx_p50" "$ngx_p99" "$ngx_bad"
printf '%-34s %12s %10s %10s %8s\n' "lnserve $MODE infer" "$ln_rps" "$ln_p50" "$ln_p99" "$ln_bad"
python3 -c "print('lnserve / nginx requests/s: %.3f' % ($ln_rps / $ngx_rps))"
