/*
 * lnctl -- the lnserve command-line client and load generator.
 *
 *   lnctl [--url URL] [--api-key KEY] [--timeout S] COMMAND [options]
 *
 *   health            GET /v2/health/live and /ready
 *   models            every model (from GET /v2/models/stats), its input and outputs
 *   geometry MODEL    GET /v2/models/MODEL/geometry, pretty-printed
 *   infer MODEL       rows from stdin (JSON lines, CSV or .npy) -> results on stdout
 *   bench             the load generator (bench.h)
 *
 * Exit status: 0 success, 1 a failed request or a wrong response, 2 usage.
 * The code that talks HTTP is httpc.c; row formats rowio.c; bench bench.c.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../proto/f32text.h"
#include "bench.h"
#include "httpc.h"
#include "rowio.h"

static const char USAGE[] =
    "usage: lnctl [--url http://127.0.0.1:8000] [--api-key KEY] [--timeout S] COMMAND ...\n"
    "\n"
    "  health                 is the server live and ready (exit 0 when both)\n"
    "  models                 list models: name, input, outputs\n"
    "  geometry MODEL         the model's geometry (GET /v2/models/MODEL/geometry)\n"
    "  infer MODEL [--in json|csv|npy] [--out json|csv|npy] [--batch ROWS]\n"
    "                         rows on stdin -> results on stdout. Input format from the data\n"
    "                         (.npy magic, '[' = JSON lines, else CSV) unless --in; output\n"
    "                         like the input unless --out. JSON lines out: one object per row\n"
    "                         with output, mean, rstd, radius; CSV and .npy: the output rows.\n"
    "                         --batch rows per request (default 64)\n"
    "  bench [options]        load generator (HTTP/1.1 keep-alive, epoll, one thread)\n"
    "      --protocol P       http-json (default); http-binary, binary-tcp, binary-unix: not yet\n"
    "      --model M          default layernorm\n"
    "      --concurrency C    connections (default 16)\n"
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
    "      --print-body       print the first request body (JSON) and exit: feed it to wrk\n"
    "\n"
    "--api-key defaults to $LNCTL_API_KEY (sent as Authorization: Bearer KEY).\n"
    "Exit status: 0 success, 1 a failed request or a wrong response, 2 usage.\n";

typedef struct globals {
    const char *url;
    const char *api_key;
    double timeout_s;
} globals;

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
    if (httpc_client_request(c, "GET", path, NULL, NULL, 0, status, body, len, err, sizeof err)) {
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

static int cmd_health(const globals *g)
{
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

static int cmd_infer(const globals *g, int argc, char **argv)
{
    const char *model = NULL;
    int have_in = 0, have_out = 0;
    rowio_fmt in_fmt = ROWIO_JSON, out_fmt = ROWIO_JSON;
    uint64_t batch = 64;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
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

    httpc_client c;
    int rc = client_open(&c, g);
    if (rc) {
        free(m.data);
        return rc;
    }
    rc = 1;
    size_t N = m.cols, bmax = batch < m.rows ? (size_t)batch : m.rows;
    char *body = malloc(128 + bmax * N * (F32TEXT_MAX + 1));
    float *y = malloc(bmax * N * sizeof(float));
    float *mean = malloc(bmax * N * sizeof(float)), *rstd = malloc(bmax * N * sizeof(float));
    float *radius = malloc(bmax * sizeof(float));
    json_t *doc = NULL;
    rowio_writer w;
    char path[512];
    snprintf(path, sizeof path, "/v2/models/%s/infer", model);
    if (!body || !y || !mean || !rstd || !radius) {
        fprintf(stderr, "lnctl: out of memory\n");
        goto out;
    }
    if (rowio_writer_begin(&w, stdout, out_fmt, m.rows, N)) {
        fprintf(stderr, "lnctl: writing stdout: %s\n", strerror(errno));
        goto out;
    }
    for (size_t r0 = 0; r0 < m.rows; r0 += bmax) {
        size_t B = m.rows - r0 < bmax ? m.rows - r0 : bmax;
        size_t bl = (size_t)sprintf(body, "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
                                          "\"shape\":[%zu,%zu],\"data\":[",
                                    B, N);
        const float *x = m.data + r0 * N;
        for (size_t i = 0; i < B * N; i++) {
            if (i)
                body[bl++] = ',';
            bl += f32text_print(body + bl, x[i]);
        }
        bl += (size_t)sprintf(body + bl, "]}]}");
        int st;
        const char *resp;
        size_t resp_len;
        if (httpc_client_request(&c, "POST", path, "application/json", body, bl, &st, &resp,
                                 &resp_len, err, sizeof err)) {
            fprintf(stderr, "lnctl: %s\n", err);
            goto out;
        }
        if (st != 200) {
            char what[600];
            snprintf(what, sizeof what, "rows %zu..%zu", r0 + 1, r0 + B);
            print_http_error(what, st, resp);
            goto out;
        }
        json_decref(doc);
        doc = json_loadb(resp, resp_len, 0, NULL);
        json_t *outs = json_object_get(doc, "outputs");
        size_t G = 0, G2 = 0;
        if (get_tensor(outs, "output", y, B * N, NULL)) {
            fprintf(stderr, "lnctl: rows %zu..%zu: no output tensor of %zu values in the answer\n",
                    r0 + 1, r0 + B, B * N);
            goto out;
        }
        rowio_out o = {.y = y, .rows = B, .cols = N, .groups = 1};
        if (!get_tensor(outs, "mean", mean, B, &G))
            o.mean = mean;
        if (!get_tensor(outs, "rstd", rstd, B, &G2))
            o.rstd = rstd;
        if (o.mean && o.rstd && G != G2)
            o.rstd = NULL;
        o.groups = o.mean ? G : o.rstd ? G2 : 1;
        if (!get_tensor(outs, "radius", radius, B, NULL))
            o.radius = radius;
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
    json_decref(doc);
    free(body);
    free(y);
    free(mean);
    free(rstd);
    free(radius);
    free(m.data);
    httpc_client_fini(&c);
    return rc;
}

/* ---- bench -------------------------------------------------------------- */

static int cmd_bench(const globals *g, int argc, char **argv)
{
    bench_opts o = {
        .api_key = g->api_key,
        .protocol = "http-json",
        .model = "layernorm",
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
        if (!strcmp(a, "--protocol")) {
            o.protocol = v;
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
    if (strcmp(o.protocol, "http-json")) {
        if (!strcmp(o.protocol, "http-binary") || !strcmp(o.protocol, "binary-tcp") ||
            !strcmp(o.protocol, "binary-unix")) {
            fprintf(stderr, "lnctl bench: --protocol %s is not supported by this server yet "
                            "(only http-json)\n",
                    o.protocol);
            return 2;
        }
        return usage_error("--protocol %s: expected http-json, http-binary, binary-tcp or "
                           "binary-unix",
                           o.protocol);
    }
    if (!have_duration && !o.requests)
        o.duration_s = 10;
    if ((size_t)o.rows * o.n > (64u << 20) / 16)
        return usage_error("%s", "bench: --rows x --n too large for a 64 MiB request");
    const char *why;
    if (httpc_url_parse(&o.url, g->url, &why))
        return usage_error("--url: %s", why);
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
    if (!strcmp(cmd, "health") || !strcmp(cmd, "models")) {
        if (rest)
            return usage_error("%s takes no arguments", cmd);
        return !strcmp(cmd, "health") ? cmd_health(&g) : cmd_models(&g);
    }
    if (!strcmp(cmd, "geometry")) {
        if (rest != 1)
            return usage_error("%s", "geometry MODEL");
        return cmd_geometry(&g, rv[0]);
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
