/*
 * lnctl -- the lnserve command-line client and load generator.
 *
 *   lnctl [--url URL] [--protocol P] [--addr ADDR] [--api-key KEY] [--timeout S] COMMAND ...
 *
 *   health            GET /v2/health/live and /ready; binary: PING
 *   models            every model (from GET /v2/models/stats), its input and outputs;
 *                     binary: METADATA of the models named
 *   geometry MODEL    GET /v2/models/MODEL/geometry, pretty-printed (HTTP only)
 *   infer MODEL       rows from stdin (JSON lines, CSV or .npy) -> results on stdout
 *   bench             the load generator (bench.h)
 *
 * Protocols: http-json, http-binary (the OIP binary tensor extension),
 * binary-tcp and binary-unix (the frame protocol, proto/frame.md, through
 * the client library lnbin.h).
 *
 * Exit status: 0 success, 1 a failed request or a wrong response, 2 usage.
 * The code that talks HTTP is httpc.c; frames lnbin.c; row formats
 * rowio.c; bench bench.c.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../proto/f32text.h"
#include "bench.h"
#include "httpc.h"
#include "lnbin.h"
#include "rowio.h"

static const char USAGE[] =
    "usage: lnctl [global options] COMMAND ...\n"
    "\n"
    "global options (--protocol and --addr may also follow the command):\n"
    "  --url URL              the HTTP server (default http://127.0.0.1:8000)\n"
    "  --protocol P           http-json (default), http-binary (OIP binary tensor extension:\n"
    "                         Inference-Header-Content-Length, raw FP32 rows and outputs),\n"
    "                         binary-tcp or binary-unix (lnserve's frame protocol)\n"
    "  --addr ADDR            binary-tcp: HOST:PORT (the server's --binary-port);\n"
    "                         binary-unix: the socket PATH (the server's --unix-socket)\n"
    "  --api-key KEY          sent as Authorization: Bearer KEY (HTTP; default $LNCTL_API_KEY)\n"
    "  --timeout S            per request (default 30)\n"
    "\n"
    "  health                 is the server live and ready (exit 0 when both); binary: PING\n"
    "  models [MODEL ...]     list models: name, input, outputs. Binary: the protocol has no\n"
    "                         list, so name the models; prints each one's METADATA\n"
    "  geometry MODEL         the model's geometry (GET /v2/models/MODEL/geometry; HTTP only)\n"
    "  infer MODEL [--in json|csv|npy] [--out json|csv|npy] [--batch ROWS]\n"
    "                         rows on stdin -> results on stdout. Input format from the data\n"
    "                         (.npy magic, '[' = JSON lines, else CSV) unless --in; output\n"
    "                         like the input unless --out. JSON lines out: one object per row\n"
    "                         with output, mean, rstd, radius; CSV and .npy: the output rows.\n"
    "                         --batch rows per request (default 64). Same output on every\n"
    "                         protocol.\n"
    "  bench [options]        load generator (keep-alive connections, epoll, one thread)\n"
    "      --model M          default layernorm\n"
    "      --concurrency C    connections (default 16)\n"
    "      --pipeline D       binary-tcp/-unix: requests in flight per connection, matched\n"
    "                         by request id (default 1, at most 4096); HTTP: 1 only\n"
    "      --rate R           open loop: R requests/s on schedule, latency from the scheduled\n"
    "                         time (default: closed loop, each connection back to back)\n"
    "      --duration S       measured seconds (default 10 unless --requests)\n"
    "      --requests N       stop after N requests instead\n"
    "      --rows B --n N     rows per request and row length (default 1 x 768)\n"
    "      --warmup S         unmeasured seconds first (default 1)\n"
    "      --check-every K    check every K-th response against ln_rows_ref (default 1,\n"
    "                         0 = status only)\n"
    "      --variants V       distinct request bodies (default 8)\n"
    "      --seed S           random rows (default from the clock; printed with --json)\n"
    "      --quiet            no progress line;  --json  one JSON object on stdout\n"
    "      --print-body       print the first request body (the frame for binary) and exit\n"
    "\n"
    "Exit status: 0 success, 1 a failed request or a wrong response, 2 usage.\n";

typedef struct globals {
    const char *url;
    const char *api_key;
    double timeout_s;
    bench_proto proto;
    const char *addr_arg; /* --addr as given */
    char addr[512];       /* the frame wires: what lnbin_dial takes */
} globals;

static int frames(const globals *g)
{
    return g->proto == BENCH_BINARY_TCP || g->proto == BENCH_BINARY_UNIX;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lnctl: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(lnctl --help for usage)\n");
    return 2;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (!*s || *e || errno || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *e;
    errno = 0;
    if (!*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &e, 10);
    if (*e || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* --protocol or --addr at argv[*i] (anywhere on the line): 1 when taken,
 * 0 when not one of them, 2 (printed) for a bad value. */
static int wire_option(globals *g, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (strcmp(a, "--protocol") && strcmp(a, "--addr"))
        return 0;
    if (*i + 1 >= argc)
        return usage_error("%s needs a value", a);
    const char *v = argv[++*i];
    if (!strcmp(a, "--addr")) {
        g->addr_arg = v;
        return 1;
    }
    if (bench_proto_parse(v, &g->proto))
        return usage_error("--protocol %s: expected http-json, http-binary, binary-tcp or "
                           "binary-unix",
                           v);
    return 1;
}

/* After all options: g->addr for the frame wires. 0, or 2 (printed). */
static int wire_finish(globals *g)
{
    if (!frames(g)) {
        if (g->addr_arg)
            return usage_error("--addr is for binary-tcp and binary-unix; --protocol %s uses "
                               "--url",
                               bench_proto_name(g->proto));
        return 0;
    }
    const char *a = g->addr_arg;
    if (!a || !*a)
        return usage_error("--protocol %s needs --addr %s", bench_proto_name(g->proto),
                           g->proto == BENCH_BINARY_TCP
                               ? "HOST:PORT (the server's --binary-port)"
                               : "PATH (the server's --unix-socket)");
    if (g->proto == BENCH_BINARY_UNIX) {
        if (!strncmp(a, "unix:", 5))
            a += 5;
        if (!*a || strlen(a) >= 108)
            return usage_error("--addr %s: expected a Unix socket path of 1..107 bytes",
                               g->addr_arg);
        snprintf(g->addr, sizeof g->addr, "unix:%s", a);
        return 0;
    }
    if (!strncmp(a, "tcp:", 4))
        a += 4;
    const char *colon = strrchr(a, ':');
    uint64_t port;
    if (!strncmp(a, "unix:", 5) || !colon || colon == a || parse_u64(colon + 1, 1, 65535, &port))
        return usage_error("--addr %s: binary-tcp expects HOST:PORT (e.g. 127.0.0.1:8001)",
                           g->addr_arg);
    if (strlen(a) >= sizeof g->addr)
        return usage_error("%s", "--addr: too long");
    snprintf(g->addr, sizeof g->addr, "%s", a);
    return 0;
}

/* A frame-protocol connection with the request timeout on its socket. */
static int bin_open(const globals *g, lnbin **c)
{
    int rc = lnbin_connect(g->addr, c);
    if (rc) {
        fprintf(stderr, "lnctl: connect to %s: %s\n", g->addr, strerror(-rc));
        return 1;
    }
    struct timeval tv = {.tv_sec = (time_t)g->timeout_s,
                         .tv_usec = (suseconds_t)((g->timeout_s - (double)(time_t)g->timeout_s) * 1e6)};
    setsockopt(lnbin_fd(*c), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(lnbin_fd(*c), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return 0;
}

/* Flushes and reads the response to request id; 0, or 1 (printed). */
static int bin_roundtrip(lnbin *c, const globals *g, uint64_t id, unsigned opcode,
                         lnbin_response *r)
{
    int rc = lnbin_flush(c);
    if (!rc)
        rc = lnbin_recv(c, r);
    if (rc) {
        fprintf(stderr, "lnctl: %s: %s\n", g->addr,
                rc == -EAGAIN || rc == -EWOULDBLOCK ? "timed out"
                : rc == -ECONNRESET                 ? "connection closed by the server"
                : rc == -EPROTO                     ? "malformed response frame"
                                                    : strerror(-rc));
        return 1;
    }
    if (r->h.id != id || (r->h.opcode != opcode && r->h.opcode != FRAME_OP_ERROR)) {
        fprintf(stderr, "lnctl: %s: a response to id %llu (opcode 0x%02x) where id %llu "
                        "(opcode 0x%02x) was expected\n",
                g->addr, (unsigned long long)r->h.id, r->h.opcode, (unsigned long long)id,
                opcode);
        return 1;
    }
    return 0;
}

static int client_open(httpc_client *c, const globals *g)
{
    char err[512];
    if (httpc_client_init(c, g->url, g->api_key, (int)(g->timeout_s * 1000), err, sizeof err)) {
        fprintf(stderr, "lnctl: %s\n", err);
        return 2;
    }
    return 0;
}

/* GET path; on a transport failure prints why and returns -1. */
static int get(httpc_client *c, const char *path, int *status, const char **body, size_t *len)
{
    char err[512];
    if (httpc_client_request(c, "GET", path, NULL, NULL, NULL, 0, status, body, len, err,
                             sizeof err)) {
        fprintf(stderr, "lnctl: %s\n", err);
        return -1;
    }
    return 0;
}

/* The "error" of an error body, or the body itself. */
static void print_http_error(const char *what, int status, const char *body)
{
    json_t *doc = json_loads(body, 0, NULL);
    const char *msg = doc ? json_string_value(json_object_get(doc, "error")) : NULL;
    fprintf(stderr, "lnctl: %s: HTTP %d: %s\n", what, status, msg ? msg : body);
    json_decref(doc);
}

/* ---- health, models, geometry ------------------------------------------- */

static int bin_health(const globals *g)
{
    lnbin *c;
    if (bin_open(g, &c))
        return 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lnbin_response r;
    int rc = lnbin_queue_ping(c, 1);
    if (rc) {
        fprintf(stderr, "lnctl: %s\n", strerror(-rc));
        lnbin_close(c);
        return 1;
    }
    rc = bin_roundtrip(c, g, 1, FRAME_OP_PONG, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!rc) {
        double us = (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
        printf("ping   %s (%s, %.0f us)\n", r.r.status == LNS_OK ? "yes" : "no",
               lns_status_name(r.r.status), us);
        rc = r.r.status == LNS_OK ? 0 : 1;
    }
    lnbin_close(c);
    return rc;
}

static int cmd_health(const globals *g)
{
    if (frames(g))
        return bin_health(g);
    httpc_client c;
    int rc = client_open(&c, g);
    if (rc)
        return rc;
    int ok = 1;
    static const char *const what[2] = {"live", "ready"};
    for (int i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v2/health/%s", what[i]);
        int st;
        const char *body;
        size_t len;
        if (get(&c, path, &st, &body, &len)) {
            ok = 0;
            break;
        }
        printf("%-6s %s (HTTP %d)\n", what[i], st == 200 ? "yes" : "no", st);
        ok &= st == 200;
    }
    httpc_client_fini(&c);
    return ok ? 0 : 1;
}

/* "[-1, 768]" into buf. */
static void shape_str(json_t *shape, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    size_t i;
    json_t *d;
    json_array_foreach(shape, i, d)
    {
        if (n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "",
                                  (long long)json_integer_value(d));
    }
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static int bin_models(const globals *g, int argc, char **argv)
{
    lnbin *c;
    if (bin_open(g, &c))
        return 1;
    int rc = 0;
    for (int i = 0; i < argc; i++) {
        lnbin_response r;
        int qrc = lnbin_queue_metadata(c, (uint64_t)i + 1, argv[i]);
        if (qrc) {
            fprintf(stderr, "lnctl: model name %s: %s\n", argv[i],
                    qrc == -EINVAL ? "expected 1..63 bytes" : strerror(-qrc));
            rc = 1;
            continue;
        }
        if (bin_roundtrip(c, g, (uint64_t)i + 1, FRAME_OP_METADATA_RESP, &r)) {
            rc = 1;
            break;
        }
        if (r.r.status != LNS_OK) {
            fprintf(stderr, "lnctl: %s: %s: %.*s\n", argv[i], lns_status_name(r.r.status),
                    (int)r.r.msg_len, r.r.msg);
            rc = 1;
            continue;
        }
        const frame_model_meta *m = &r.r.meta;
        char dim[16];
        snprintf(dim, sizeof dim, m->dim ? "%u" : "any", m->dim);
        printf("%s\n", argv[i]);
        printf("  kind    %-9s  dim %s  groups %u  eps %g\n", m->kind ? "rmsnorm" : "layernorm",
               dim, m->groups, (double)m->eps);
        printf("  dtypes ");
        for (unsigned d = FRAME_DTYPE_FP32; d <= FRAME_DTYPE_FP64; d++)
            if (m->dtypes & (1u << (d - 1)))
                printf(" %s", frame_dtype_name(d));
        printf("  max_rows %u  max_cols %u\n", m->max_rows, m->max_cols);
    }
    lnbin_close(c);
    return rc;
}

static int cmd_models(const globals *g)
{
    httpc_client c;
    int rc = client_open(&c, g);
    if (rc)
        return rc;
    int st;
    const char *body;
    size_t len;
    json_t *stats = NULL, *meta = NULL;
    rc = 1;
    if (get(&c, "/v2/models/stats", &st, &body, &len))
        goto out;
    if (st != 200) {
        print_http_error("GET /v2/models/stats", st, body);
        goto out;
    }
    stats = json_loadb(body, len, 0, NULL);
    json_t *list = json_object_get(stats, "model_stats");
    if (!json_is_array(list)) {
        fprintf(stderr, "lnctl: GET /v2/models/stats: no model_stats array in the answer\n");
        goto out;
    }
    size_t i;
    json_t *ms;
    rc = 0;
    json_array_foreach(list, i, ms)
    {
        const char *name = json_string_value(json_object_get(ms, "name"));
        if (!name)
            continue;
        char path[512];
        snprintf(path, sizeof path, "/v2/models/%s", name);
        if (get(&c, path, &st, &body, &len)) {
            rc = 1;
            break;
        }
        if (st != 200) {
            print_http_error(path, st, body);
            rc = 1;
            continue;
        }
        json_decref(meta);
        meta = json_loadb(body, len, 0, NULL);
        printf("%s\n", name);
        size_t j;
        json_t *t;
        char sh[256];
        json_array_foreach(json_object_get(meta, "inputs"), j, t)
        {
            shape_str(json_object_get(t, "shape"), sh, sizeof sh);
            printf("  input   %-12s %-5s %s\n", json_string_value(json_object_get(t, "name")),
                   json_string_value(json_object_get(t, "datatype")), sh);
        }
        json_array_foreach(json_object_get(meta, "outputs"), j, t)
        {
            shape_str(json_object_get(t, "shape"), sh, sizeof sh);
            printf("  output  %-12s %-5s %s\n", json_string_value(json_object_get(t, "name")),
                   json_string_value(json_object_get(t, "datatype")), sh);
        }
    }
out:
    json_decref(stats);
    json_decref(meta);
    httpc_client_fini(&c);
    return rc;
}

static int cmd_geometry(const globals *g, const char *model)
{
    httpc_client c;
    int rc = client_open(&c, g);
    if (rc)
        return rc;
    rc = 1;
    char path[512];
    snprintf(path, sizeof path, "/v2/models/%s/geometry", model);
    int st;
    const char *body;
    size_t len;
    if (get(&c, path, &st, &body, &len))
        goto out;
    if (st == 200) {
        json_t *doc = json_loadb(body, len, 0, NULL);
        if (!doc) {
            fprintf(stderr, "lnctl: %s: the answer is not JSON\n", path);
            goto out;
        }
        char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        json_decref(doc);
        if (s)
            printf("%s\n", s);
        free(s);
        rc = 0;
        goto out;
    }
    if (st == 404) {
        /* an unknown model, or a server without the endpoint? */
        char mpath[512];
        snprintf(mpath, sizeof mpath, "/v2/models/%s", model);
        int st2;
        if (!get(&c, mpath, &st2, &body, &len) && st2 == 200) {
            fprintf(stderr, "lnctl: model %s exists, but this server has no geometry endpoint "
                            "(GET %s answered 404)\n",
                    model, path);
            goto out;
        }
        fprintf(stderr, "lnctl: no model named %s on this server\n", model);
        goto out;
    }
    print_http_error(path, st, body);
out:
    httpc_client_fini(&c);
    return rc;
}

/* ---- infer -------------------------------------------------------------- */

/* Reads all of stdin. */
static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) {
            if (ferror(f)) {
                free(buf);
                return NULL;
            }
            *len = n;
            return buf;
        }
        char *nb = realloc(buf, cap * 2);
        if (!nb)
            free(buf);
        buf = nb;
        cap *= 2;
    }
    return NULL;
}

/* Copies output tensor `name`'s data (want values) into dst; 0 or -1. */
static int get_tensor(json_t *outs, const char *name, float *dst, size_t want, size_t *width)
{
    size_t i;
    json_t *t;
    json_array_foreach(outs, i, t)
    {
        const char *n = json_string_value(json_object_get(t, "name"));
        if (!n || strcmp(n, name))
            continue;
        json_t *data = json_object_get(t, "data");
        if (!json_is_array(data))
            return -1;
        size_t cnt = json_array_size(data);
        if (width) { /* [B, G]: G from the count */
            if (want == 0 || cnt % want)
                return -1;
            *width = cnt / want;
            want = cnt;
        }
        if (cnt != want)
            return -1;
        for (size_t k = 0; k < cnt; k++) {
            json_t *v = json_array_get(data, k);
            if (!json_is_number(v))
                return -1;
            dst[k] = (float)json_number_value(v);
        }
        return 0;
    }
    return -1;
}

/* One client for the batches of an infer, on whichever wire. */
typedef struct infer_ctx {
    const globals *g;
    char path[512]; /* HTTP: /v2/models/MODEL/infer */
    const char *model;
    httpc_client http;
    lnbin *bin;
    char *body; /* HTTP request body, sized for the largest batch */
    json_t *doc;
    /* results of one batch: [bmax * N] each (mean and rstd: G <= N) */
    float *y, *mean, *rstd, *radius;
} infer_ctx;

static void print_rows_error(size_t r0, size_t B, int status, const char *body)
{
    char what[64];
    snprintf(what, sizeof what, "rows %zu..%zu", r0 + 1, r0 + B);
    print_http_error(what, status, body);
}

/* http-json: x[B * N] -> o. 0, or 1 (printed). */
static int infer_http_json(infer_ctx *ic, const float *x, size_t B, size_t N, size_t r0,
                           rowio_out *o)
{
    char err[512];
    char *body = ic->body;
    size_t bl = (size_t)sprintf(body, "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
                                      "\"shape\":[%zu,%zu],\"data\":[",
                                B, N);
    for (size_t i = 0; i < B * N; i++) {
        if (i)
            body[bl++] = ',';
        bl += f32text_print(body + bl, x[i]);
    }
    bl += (size_t)sprintf(body + bl, "]}]}");
    int st;
    const char *resp;
    size_t resp_len;
    if (httpc_client_request(&ic->http, "POST", ic->path, NULL, "application/json", body, bl, &st,
                             &resp, &resp_len, err, sizeof err)) {
        fprintf(stderr, "lnctl: %s\n", err);
        return 1;
    }
    if (st != 200) {
        print_rows_error(r0, B, st, resp);
        return 1;
    }
    json_decref(ic->doc);
    ic->doc = json_loadb(resp, resp_len, 0, NULL);
    json_t *outs = json_object_get(ic->doc, "outputs");
    size_t G = 0, G2 = 0;
    if (get_tensor(outs, "output", ic->y, B * N, NULL)) {
        fprintf(stderr, "lnctl: rows %zu..%zu: no output tensor of %zu values in the answer\n",
                r0 + 1, r0 + B, B * N);
        return 1;
    }
    if (!get_tensor(outs, "mean", ic->mean, B, &G))
        o->mean = ic->mean;
    if (!get_tensor(outs, "rstd", ic->rstd, B, &G2))
        o->rstd = ic->rstd;
    if (o->mean && o->rstd && G != G2)
        o->rstd = NULL;
    o->groups = o->mean ? G : o->rstd ? G2 : 1;
    if (!get_tensor(outs, "radius", ic->radius, B, NULL))
        o->radius = ic->radius;
    return 0;
}

/* http-binary: the row as raw FP32 after a JSON header, every output back
 * as binary data (the binary parts follow the JSON header in the order of
 * its outputs, each parameters.binary_data_size bytes). */
static int infer_http_binary(infer_ctx *ic, const float *x, size_t B, size_t N, size_t r0,
                             rowio_out *o)
{
    char err[512], extra[96];
    size_t bl = httpc_binary_infer_body(ic->body, x, B, N, extra, sizeof extra);
    int st;
    const char *resp;
    size_t resp_len;
    if (httpc_client_request(&ic->http, "POST", ic->path, extra, NULL, ic->body, bl, &st, &resp,
                             &resp_len, err, sizeof err)) {
        fprintf(stderr, "lnctl: %s\n", err);
        return 1;
    }
    if (st != 200) {
        print_rows_error(r0, B, st, resp);
        return 1;
    }
    uint64_t hl = httpc_client_infer_header_len(&ic->http);
    if (hl == UINT64_MAX || hl > resp_len) {
        fprintf(stderr, "lnctl: rows %zu..%zu: the answer has no binary part "
                        "(Inference-Header-Content-Length %s)\n",
                r0 + 1, r0 + B, hl == UINT64_MAX ? "missing" : "past the body");
        return 1;
    }
    json_decref(ic->doc);
    ic->doc = json_loadb(resp, (size_t)hl, 0, NULL);
    size_t off = (size_t)hl, i;
    json_t *t;
    int have_y = 0;
    size_t G = 0;
    json_array_foreach(json_object_get(ic->doc, "outputs"), i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *dt = json_string_value(json_object_get(t, "datatype"));
        json_t *sz = json_object_get(json_object_get(t, "parameters"), "binary_data_size");
        if (!name || !json_is_integer(sz) || json_integer_value(sz) < 0 ||
            (size_t)json_integer_value(sz) > resp_len - off) {
            fprintf(stderr, "lnctl: rows %zu..%zu: output %zu has no valid binary_data_size\n",
                    r0 + 1, r0 + B, i);
            return 1;
        }
        size_t n = (size_t)json_integer_value(sz), cnt = n / sizeof(float);
        const char *p = resp + off;
        off += n;
        if (!dt || strcmp(dt, "FP32") || n % sizeof(float))
            continue; /* not one lnctl prints */
        float *dst = NULL;
        if (!strcmp(name, "output") && cnt == B * N) {
            dst = ic->y;
            have_y = 1;
        } else if ((!strcmp(name, "mean") || !strcmp(name, "rstd")) && cnt % B == 0 &&
                   cnt / B <= N && cnt && (!G || G == cnt / B)) {
            G = cnt / B;
            dst = name[0] == 'm' ? ic->mean : ic->rstd;
            if (name[0] == 'm')
                o->mean = dst;
            else
                o->rstd = dst;
        } else if (!strcmp(name, "radius") && cnt == B) {
            dst = ic->radius;
            o->radius = dst;
        }
        if (dst)
            memcpy(dst, p, n);
    }
    if (!have_y) {
        fprintf(stderr, "lnctl: rows %zu..%zu: no binary output tensor of %zu FP32 values in the "
                        "answer\n",
                r0 + 1, r0 + B, B * N);
        return 1;
    }
    o->groups = G ? G : 1;
    return 0;
}

static void copy_f32(float *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = frame_get_f32(src + 4 * i);
}

/* binary-tcp/-unix: one INFER frame per batch, id = the batch's first row. */
static int infer_frames(infer_ctx *ic, const float *x, size_t B, size_t N, size_t r0,
                        rowio_out *o)
{
    uint64_t id = r0 + 1;
    int rc = lnbin_queue_infer(ic->bin, id, ic->model, FRAME_OUT_ALL, (uint32_t)B, (uint32_t)N, x);
    if (rc) {
        fprintf(stderr, "lnctl: rows %zu..%zu: %s\n", r0 + 1, r0 + B,
                rc == -EINVAL ? "the request cannot be framed (model name of 1..63 bytes, "
                                "under 4 GiB)"
                              : strerror(-rc));
        return 1;
    }
    lnbin_response r;
    if (bin_roundtrip(ic->bin, ic->g, id, FRAME_OP_INFER_RESP, &r))
        return 1;
    if (r.r.status != LNS_OK) {
        fprintf(stderr, "lnctl: rows %zu..%zu: %s: %.*s\n", r0 + 1, r0 + B,
                lns_status_name(r.r.status), (int)r.r.msg_len, r.r.msg);
        return 1;
    }
    if (r.r.rows != B || r.r.cols != N || r.r.dtype != FRAME_DTYPE_FP32 || !r.r.output ||
        r.r.groups == 0 || r.r.groups > N) {
        fprintf(stderr, "lnctl: rows %zu..%zu: the answer is not %zu x %zu FP32 rows\n", r0 + 1,
                r0 + B, B, N);
        return 1;
    }
    copy_f32(ic->y, r.r.output, B * N);
    o->groups = r.r.groups;
    if (r.r.mean) {
        copy_f32(ic->mean, r.r.mean, B * o->groups);
        o->mean = ic->mean;
    }
    if (r.r.rstd) {
        copy_f32(ic->rstd, r.r.rstd, B * o->groups);
        o->rstd = ic->rstd;
    }
    if (r.r.radius) {
        copy_f32(ic->radius, r.r.radius, B);
        o->radius = ic->radius;
    }
    return 0;
}

static int cmd_infer(const globals *g0, int argc, char **argv)
{
    globals gl = *g0, *g = &gl;
    const char *model = NULL;
    int have_in = 0, have_out = 0;
    rowio_fmt in_fmt = ROWIO_JSON, out_fmt = ROWIO_JSON;
    uint64_t batch = 64;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int w = wire_option(g, argc, argv, &i);
        if (w == 1)
            continue;
        if (w)
            return w;
        if ((!strcmp(a, "--in") || !strcmp(a, "--out") || !strcmp(a, "--batch")) && i + 1 >= argc)
            return usage_error("%s needs a value", a);
        if (!strcmp(a, "--in")) {
            if (rowio_fmt_parse(argv[++i], &in_fmt))
                return usage_error("--in %s: expected json, csv or npy", argv[i]);
            have_in = 1;
        } else if (!strcmp(a, "--out")) {
            if (rowio_fmt_parse(argv[++i], &out_fmt))
                return usage_error("--out %s: expected json, csv or npy", argv[i]);
            have_out = 1;
        } else if (!strcmp(a, "--batch")) {
            if (parse_u64(argv[++i], 1, 1u << 24, &batch))
                return usage_error("--batch %s: expected 1..16777216 rows", argv[i]);
        } else if (a[0] == '-' && a[1]) {
            return usage_error("infer: unknown option %s", a);
        } else if (!model) {
            model = a;
        } else {
            return usage_error("infer: one model only (got %s too)", a);
        }
    }
    if (!model)
        return usage_error("%s", "infer: which model? (lnctl infer MODEL < rows)");
    int rc = wire_finish(g);
    if (rc)
        return rc;

    size_t len;
    char *input = read_all(stdin, &len);
    if (!input) {
        fprintf(stderr, "lnctl: reading stdin: %s\n", strerror(errno));
        return 1;
    }
    if (!have_in)
        in_fmt = rowio_detect(input, len);
    if (!have_out)
        out_fmt = in_fmt;
    rowio_mat m;
    char err[512];
    if (rowio_read(input, len, in_fmt, &m, err, sizeof err)) {
        fprintf(stderr, "lnctl: stdin (%s): %s\n", rowio_fmt_name(in_fmt), err);
        free(input);
        return 1;
    }
    free(input);

    infer_ctx ic = {.g = g, .model = model};
    snprintf(ic.path, sizeof ic.path, "/v2/models/%s/infer", model);
    if (frames(g)) {
        rc = bin_open(g, &ic.bin);
        if (rc) {
            free(m.data);
            return rc;
        }
    } else {
        rc = client_open(&ic.http, g);
        if (rc) {
            free(m.data);
            return rc;
        }
    }
    rc = 1;
    size_t N = m.cols, bmax = batch < m.rows ? (size_t)batch : m.rows;
    ic.body = frames(g) ? NULL : malloc(512 + bmax * N * (F32TEXT_MAX + 1));
    ic.y = malloc(bmax * N * sizeof(float));
    ic.mean = malloc(bmax * N * sizeof(float));
    ic.rstd = malloc(bmax * N * sizeof(float));
    ic.radius = malloc(bmax * sizeof(float));
    rowio_writer w;
    if ((!frames(g) && !ic.body) || !ic.y || !ic.mean || !ic.rstd || !ic.radius) {
        fprintf(stderr, "lnctl: out of memory\n");
        goto out;
    }
    if (rowio_writer_begin(&w, stdout, out_fmt, m.rows, N)) {
        fprintf(stderr, "lnctl: writing stdout: %s\n", strerror(errno));
        goto out;
    }
    for (size_t r0 = 0; r0 < m.rows; r0 += bmax) {
        size_t B = m.rows - r0 < bmax ? m.rows - r0 : bmax;
        const float *x = m.data + r0 * N;
        rowio_out o = {.y = ic.y, .rows = B, .cols = N, .groups = 1};
        int brc = g->proto == BENCH_HTTP_JSON     ? infer_http_json(&ic, x, B, N, r0, &o)
                  : g->proto == BENCH_HTTP_BINARY ? infer_http_binary(&ic, x, B, N, r0, &o)
                                                  : infer_frames(&ic, x, B, N, r0, &o);
        if (brc)
            goto out;
        if (rowio_writer_rows(&w, &o)) {
            fprintf(stderr, "lnctl: writing stdout: %s\n", strerror(errno));
            goto out;
        }
    }
    if (rowio_writer_end(&w)) {
        fprintf(stderr, "lnctl: writing stdout: %s\n", strerror(errno));
        goto out;
    }
    rc = 0;
out:
    json_decref(ic.doc);
    free(ic.body);
    free(ic.y);
    free(ic.mean);
    free(ic.rstd);
    free(ic.radius);
    free(m.data);
    if (frames(g))
        lnbin_close(ic.bin);
    else
        httpc_client_fini(&ic.http);
    return rc;
}

/* ---- bench -------------------------------------------------------------- */

static int cmd_bench(const globals *g0, int argc, char **argv)
{
    globals gl = *g0, *g = &gl;
    bench_opts o = {
        .api_key = g->api_key,
        .model = "layernorm",
        .pipeline = 1,
        .connections = 16,
        .rows = 1,
        .n = 768,
        .warmup_s = 1,
        .check_every = 1,
        .variants = 8,
        .timeout_s = g->timeout_s,
    };
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    o.seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
    int have_duration = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u;
        int w = wire_option(g, argc, argv, &i);
        if (w == 1)
            continue;
        if (w)
            return w;
        if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
            continue;
        }
        if (!strcmp(a, "--json")) {
            o.json = 1;
            continue;
        }
        if (!strcmp(a, "--print-body")) {
            o.print_body = 1;
            continue;
        }
        if (!v)
            return usage_error("bench: %s needs a value (or is unknown)", a);
        i++;
        if (!strcmp(a, "--pipeline")) {
            if (parse_u64(v, 1, BENCH_PIPELINE_MAX, &u))
                return usage_error("--pipeline %s: expected 1..%d requests in flight per "
                                   "connection",
                                   v, BENCH_PIPELINE_MAX);
            o.pipeline = (unsigned)u;
        } else if (!strcmp(a, "--model")) {
            o.model = v;
        } else if (!strcmp(a, "--concurrency") || !strcmp(a, "-c")) {
            if (parse_u64(v, 1, 100000, &u))
                return usage_error("--concurrency %s: expected 1..100000", v);
            o.connections = (unsigned)u;
        } else if (!strcmp(a, "--rate")) {
            if (parse_double(v, 1e-3, 1e8, &o.rate))
                return usage_error("--rate %s: expected requests per second > 0", v);
        } else if (!strcmp(a, "--duration") || !strcmp(a, "-d")) {
            if (parse_double(v, 1e-3, 1e6, &o.duration_s))
                return usage_error("--duration %s: expected seconds > 0", v);
            have_duration = 1;
        } else if (!strcmp(a, "--requests")) {
            if (parse_u64(v, 1, UINT64_MAX / 2, &o.requests))
                return usage_error("--requests %s: expected a count >= 1", v);
        } else if (!strcmp(a, "--rows")) {
            if (parse_u64(v, 1, 1u << 20, &u))
                return usage_error("--rows %s: expected 1..1048576", v);
            o.rows = (unsigned)u;
        } else if (!strcmp(a, "--n")) {
            if (parse_u64(v, 1, 1u << 24, &u))
                return usage_error("--n %s: expected 1..16777216", v);
            o.n = (unsigned)u;
        } else if (!strcmp(a, "--warmup")) {
            if (parse_double(v, 0, 1e6, &o.warmup_s))
                return usage_error("--warmup %s: expected seconds >= 0", v);
        } else if (!strcmp(a, "--check-every")) {
            if (parse_u64(v, 0, UINT32_MAX, &u))
                return usage_error("--check-every %s: expected K >= 0", v);
            o.check_every = (unsigned)u;
        } else if (!strcmp(a, "--variants")) {
            if (parse_u64(v, 1, 1024, &u))
                return usage_error("--variants %s: expected 1..1024", v);
            o.variants = (unsigned)u;
        } else if (!strcmp(a, "--seed")) {
            if (parse_u64(v, 0, UINT64_MAX, &o.seed))
                return usage_error("--seed %s: expected an integer", v);
        } else {
            return usage_error("bench: unknown option %s", a);
        }
    }
    int rc = wire_finish(g);
    if (rc)
        return rc;
    o.proto = g->proto;
    o.protocol = bench_proto_name(g->proto);
    o.addr = g->addr;
    if (o.pipeline > 1 && !frames(g))
        return usage_error("--pipeline %u: HTTP/1.1 keeps one request in flight per connection; "
                           "pipelining is for binary-tcp and binary-unix (use --concurrency)",
                           o.pipeline);
    if (!have_duration && !o.requests)
        o.duration_s = 10;
    if ((size_t)o.rows * o.n > (64u << 20) / 16)
        return usage_error("%s", "bench: --rows x --n too large for a 64 MiB request");
    const char *why;
    if (!frames(g) && httpc_url_parse(&o.url, g->url, &why))
        return usage_error("--url: %s", why);
    if (o.print_body && o.json)
        return usage_error("%s", "bench: --print-body and --json exclude each other");
    return bench_run(&o);
}

int main(int argc, char **argv)
{
    globals g = {.url = "http://127.0.0.1:8000", .api_key = getenv("LNCTL_API_KEY"),
                 .timeout_s = 30};
    if (g.api_key && !*g.api_key)
        g.api_key = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        }
        int w = wire_option(&g, argc, argv, &i);
        if (w == 1)
            continue;
        if (w)
            return w;
        if (i + 1 >= argc)
            return usage_error("%s needs a value (or is unknown)", a);
        if (!strcmp(a, "--url"))
            g.url = argv[++i];
        else if (!strcmp(a, "--api-key"))
            g.api_key = argv[++i];
        else if (!strcmp(a, "--timeout")) {
            if (parse_double(argv[++i], 1e-3, 86400, &g.timeout_s))
                return usage_error("--timeout %s: expected seconds > 0", argv[i]);
        } else
            return usage_error("unknown option %s", a);
    }
    if (i >= argc) {
        fputs(USAGE, stderr);
        return 2;
    }
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **rv = argv + i;
    if (!strcmp(cmd, "health") || !strcmp(cmd, "models") || !strcmp(cmd, "geometry")) {
        /* --protocol and --addr may follow the command; the rest are names */
        char **names = rv;
        int n_names = 0;
        for (int k = 0; k < rest; k++) {
            int w = wire_option(&g, rest, rv, &k);
            if (w == 1)
                continue;
            if (w)
                return w;
            if (rv[k][0] == '-' && rv[k][1])
                return usage_error("%s: unknown option %s", cmd, rv[k]);
            names[n_names++] = rv[k];
        }
        int rc = wire_finish(&g);
        if (rc)
            return rc;
        if (!strcmp(cmd, "health")) {
            if (n_names)
                return usage_error("%s", "health takes no arguments");
            return cmd_health(&g);
        }
        if (!strcmp(cmd, "geometry")) {
            if (n_names != 1)
                return usage_error("%s", "geometry MODEL");
            if (frames(&g))
                return usage_error("geometry is served over HTTP only (GET "
                                   "/v2/models/%s/geometry); --protocol %s has no such request",
                                   names[0], bench_proto_name(g.proto));
            return cmd_geometry(&g, names[0]);
        }
        if (frames(&g)) {
            if (!n_names)
                return usage_error("models --protocol %s: the binary protocol has no model "
                                   "list; name the models (lnctl --protocol %s --addr %s models "
                                   "layernorm rmsnorm)",
                                   bench_proto_name(g.proto), bench_proto_name(g.proto),
                                   g.addr_arg);
            return bin_models(&g, n_names, names);
        }
        if (n_names)
            return usage_error("%s", "models over HTTP lists every model: it takes no names");
        return cmd_models(&g);
    }
    if (!strcmp(cmd, "infer"))
        return cmd_infer(&g, rest, rv);
    if (!strcmp(cmd, "bench"))
        return cmd_bench(&g, rest, rv);
    if (!strcmp(cmd, "help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    return usage_error("unknown command %s", cmd);
}
