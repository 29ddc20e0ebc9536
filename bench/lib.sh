# bench/lib.sh -- what the end-to-end benchmarks share, in one place:
# sourced (not run) by http_bench.sh, binary_bench.sh and e2e_bench.sh.
#
#   bench_init      SRV_CPU (the servers' core) and LOAD_CPU (the load
#                   generator's), a temporary directory $tmp (mode 755, so
#                   nginx's workers can read under it), srv_pid="" for the
#                   caller's server, and an EXIT trap that stops that server
#                   and nginx and removes $tmp
#
# and the reference server:
#
# nginx (Debian's nginx-light, installed with wrk by tools/install-deps.sh
# when missing) runs one worker pinned to a CPU, on 127.0.0.1 only, with
# keep-alive kept open for the whole run and no access log, serving static
# files from a root the caller fills. A POST to a file answers with the file
# too (405 turned into 200 by error_page, nginx's internal redirect to GET),
# so a load generator that POSTs an inference request gets the same bytes
# as a GET would: lnctl bench can drive nginx exactly as it drives lnserve.
#
#   . bench/lib.sh
#   nginx_deps                       install wrk and nginx if missing
#   nginx_start ROOT DIR CPU         serve ROOT; config, pid and logs in DIR;
#                                    sets NGX_PORT and NGX_PID; 1 if it fails
#   nginx_stop                       (also safe when never started)
#   free_port                        prints a free TCP port on 127.0.0.1
#   file_of_size PATH BYTES          writes a file of BYTES '1' bytes

bench_init() {
    local ncpu
    ncpu=$(nproc)
    SRV_CPU=0
    LOAD_CPU=$(( ncpu > 1 ? 1 : 0 ))
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    srv_pid=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    if [ -n "$srv_pid" ]; then
        kill "$srv_pid" 2>/dev/null || true
        wait "$srv_pid" 2>/dev/null || true
    fi
    nginx_stop
    rm -rf "$tmp"
}

nginx_deps() {
    command -v wrk >/dev/null && command -v nginx >/dev/null || tools/install-deps.sh wrk nginx-light
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

file_of_size() {
    mkdir -p "$(dirname "$1")"
    head -c "$2" /dev/zero | tr '\0' '1' > "$1"
    chmod 644 "$1"
}

NGX_PID=""
NGX_PORT=""

nginx_start() {
    local root=$1 dir=$2 cpu=$3
    mkdir -p "$dir"
    # nginx workers drop root and must read the files (the caller makes the
    # directories above ROOT searchable: chmod 755 on its mktemp -d)
    chmod -R a+rX "$root"
    NGX_PORT=$(free_port)
    cat > "$dir/nginx.conf" <<NGX
worker_processes 1;
worker_cpu_affinity 1;
daemon off;
error_log $dir/error.log;
pid $dir/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir; proxy_temp_path $dir;
    fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    client_max_body_size 64m;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$NGX_PORT;
        root $root;
        error_page 405 =200 \$uri;
    }
}
NGX
    taskset -c "$cpu" nginx -c "$dir/nginx.conf" -p "$dir" &
    NGX_PID=$!
    # up when it answers (at most 5 s)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$NGX_PORT") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nginx did not start: $(cat "$dir/error.log" 2>/dev/null)" >&2
    return 1
}

nginx_stop() {
    if [ -n "$NGX_PID" ]; then
        kill "$NGX_PID" 2>/dev/null || true
        wait "$NGX_PID" 2>/dev/null || true
        NGX_PID=""
    fi
}
