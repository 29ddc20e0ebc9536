#include "metrics.h"

#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const ep_names[EP_COUNT] = {
    [EP_LIVE] = "health_live",       [EP_READY] = "health_ready",
    [EP_SERVER_META] = "server_metadata", [EP_MODEL_META] = "model_metadata",
    [EP_MODEL_READY] = "model_ready", [EP_MODEL_CONFIG] = "model_config",
    [EP_MODEL_STATS] = "model_stats",
    [EP_MODEL_GEOMETRY] = "model_geometry",
    [EP_INFER] = "infer",            [EP_METRICS] = "metrics",
    [EP_PING] = "ping",              [EP_OTHER] = "other",
};

static const char *const proto_names[MP_COUNT] = {[MP_HTTP] = "http", [MP_BINARY] = "binary"};

/* Statuses the server sends, each counted on its own; anything else
 * lands in the last slot. 0 = the client left before an answer. */
static const unsigned statuses[] = {200, 400, 401, 404, 405, 413, 500, 501, 503, 0};
#define N_STATUS (sizeof statuses / sizeof statuses[0] + 1)

/* Latency buckets, seconds (le). */
static const double lat_le[] = {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
                                1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_LAT (sizeof lat_le / sizeof lat_le[0])
/* Rows per request or per batch, jobs per batch: powers of 4. */
static const double rows_le[] = {1, 4, 16, 64, 256, 1024, 4096, 16384, 65536};
#define N_ROWS (sizeof rows_le / sizeof rows_le[0])

typedef atomic_uint_fast64_t counter;

typedef struct hist {
    counter bucket[N_LAT + 1]; /* non-cumulative; the last is +Inf */
    counter count;
    counter sum; /* ns for latency, rows for batch size */
} hist;

typedef struct batch_stat {
    size_t rows; /* 0 = slot unused */
    uint64_t count, decode_ns, compute_ns, encode_ns;
} batch_stat;

typedef struct model_stats {
    counter requests[MP_COUNT][EP_COUNT][N_STATUS];
    counter rows, bytes_in, bytes_out, infer_ok, executions;
    counter queue_ns, compute_ns, e2e_ns; /* Triton-style cumulative */
    counter decode_ns, encode_ns, fail, fail_ns;
    counter last_inference_ms; /* CLOCK_REALTIME */
    hist e2e, queue, compute, req_rows, batch;
    /* Per batch size, for Triton's batch_stats: a short table under a lock
     * (one uncontended lock per model execution; a lock-free map is not
     * worth it). */
    pthread_mutex_t batch_lock;
    batch_stat batches[METRICS_BATCH_SIZES];
} model_stats;

struct metrics {
    size_t n_models;
    char **names;        /* [n_models] */
    model_stats *stats;  /* [n_models + 1]; the last: no model */
    counter worker_busy_ns;
    hist batch_wait, batch_jobs; /* per worker batch, all models */
};

uint64_t metrics_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

metrics *metrics_create(const char *const *model_names, size_t n_models)
{
    metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->n_models = n_models;
    m->names = calloc(n_models, sizeof(char *));
    m->stats = calloc(n_models + 1, sizeof(model_stats));
    if (!m->names || !m->stats) {
        metrics_destroy(m);
        return NULL;
    }
    for (size_t i = 0; i <= n_models; i++)
        pthread_mutex_init(&m->stats[i].batch_lock, NULL);
    for (size_t i = 0; i < n_models; i++) {
        m->names[i] = strdup(model_names[i]);
        if (!m->names[i]) {
            metrics_destroy(m);
            return NULL;
        }
    }
    return m;
}

void metrics_destroy(metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->names && i < m->n_models; i++)
        free(m->names[i]);
    for (size_t i = 0; m->stats && i <= m->n_models; i++)
        pthread_mutex_destroy(&m->stats[i].batch_lock);
    free(m->names);
    free(m->stats);
    free(m);
}

static void add(counter *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static uint64_t get(const counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void hist_add(hist *h, const double *le, size_t n, double v, uint64_t sum)
{
    size_t i = 0;
    while (i < n && v > le[i])
        i++;
    add(&h->bucket[i], 1);
    add(&h->count, 1);
    add(&h->sum, sum);
}

static model_stats *stats_of(metrics *m, int model)
{
    return &m->stats[model >= 0 && (size_t)model < m->n_models ? (size_t)model : m->n_models];
}

void metrics_request(metrics *m, int model, metrics_endpoint ep, metrics_protocol proto,
                     unsigned status, uint64_t e2e_ns)
{
    model_stats *s = stats_of(m, model);
    size_t k = 0;
    while (k < N_STATUS - 1 && statuses[k] != status)
        k++;
    add(&s->requests[proto < MP_COUNT ? proto : MP_HTTP][ep < EP_COUNT ? ep : EP_OTHER][k], 1);
    if (ep == EP_INFER && status == 200) {
        hist_add(&s->e2e, lat_le, N_LAT, (double)e2e_ns * 1e-9, e2e_ns);
        add(&s->e2e_ns, e2e_ns);
    } else if (ep == EP_INFER) {
        add(&s->fail, 1);
        add(&s->fail_ns, e2e_ns);
    }
}

void metrics_infer(metrics *m, int model, const metrics_infer_sample *x)
{
    model_stats *s = stats_of(m, model);
    add(&s->infer_ok, 1);
    add(&s->rows, x->rows);
    add(&s->bytes_in, x->bytes_in);
    add(&s->bytes_out, x->bytes_out);
    add(&s->queue_ns, x->queue_ns);
    add(&s->compute_ns, x->compute_ns);
    add(&s->decode_ns, x->decode_ns);
    add(&s->encode_ns, x->encode_ns);
    hist_add(&s->queue, lat_le, N_LAT, (double)x->queue_ns * 1e-9, x->queue_ns);
    hist_add(&s->compute, lat_le, N_LAT, (double)x->compute_ns * 1e-9, x->compute_ns);
    hist_add(&s->req_rows, rows_le, N_ROWS, (double)x->rows, x->rows);

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    atomic_store_explicit(&s->last_inference_ms,
                          (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u,
                          memory_order_relaxed);
}

void metrics_batch(metrics *m, int model, const metrics_batch_sample *x)
{
    model_stats *s = stats_of(m, model);
    add(&s->executions, 1);
    hist_add(&s->batch, rows_le, N_ROWS, (double)x->rows, x->rows);
    pthread_mutex_lock(&s->batch_lock);
    for (size_t i = 0; i < METRICS_BATCH_SIZES; i++) {
        batch_stat *b = &s->batches[i];
        if (b->rows != x->rows && b->rows != 0)
            continue;
        b->rows = x->rows;
        b->count++;
        b->decode_ns += x->input_ns;
        b->compute_ns += x->infer_ns;
        b->encode_ns += x->output_ns;
        break;
    }
    pthread_mutex_unlock(&s->batch_lock);
}

void metrics_batch_gathered(metrics *m, size_t n_jobs, uint64_t waited_ns)
{
    hist_add(&m->batch_wait, lat_le, N_LAT, (double)waited_ns * 1e-9, waited_ns);
    hist_add(&m->batch_jobs, rows_le, N_ROWS, (double)n_jobs, n_jobs);
}

void metrics_worker_busy(metrics *m, uint64_t ns)
{
    add(&m->worker_busy_ns, ns);
}

/* ---- rendering ---------------------------------------------------------- */

typedef struct out {
    char *p;
    size_t len, cap;
    int failed;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *np = realloc(o->p, cap);
        if (!np) {
            o->failed = 1;
            return;
        }
        o->p = np;
        o->cap = cap;
    }
}

/* With model NULL, the series has no labels but le. */
static void put_hist(out *o, const char *name, const char *model, const hist *h,
                     const double *le, size_t n, double sum_scale)
{
    char lab[160] = "", sep[2] = "";
    if (model) {
        snprintf(lab, sizeof lab, "model=\"%s\"", model);
        sep[0] = ',';
    }
    uint64_t cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += get(&h->bucket[i]);
        put(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, lab, sep, le[i],
            (unsigned long long)cum);
    }
    cum += get(&h->bucket[n]);
    put(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, lab, sep, (unsigned long long)cum);
    put(o, "%s_sum%s%s%s %.9g\n", name, model ? "{" : "", lab, model ? "}" : "",
        (double)get(&h->sum) * sum_scale);
    put(o, "%s_count%s%s%s %llu\n", name, model ? "{" : "", lab, model ? "}" : "",
        (unsigned long long)get(&h->count));
}

#define FOR_MODELS(i) for (size_t i = 0; i < m->n_models; i++)

static void put_duration(out *o, const char *name, uint64_t count, uint64_t ns, int last)
{
    put(o, "\"%s\":{\"count\":%llu,\"ns\":%llu}%s", name, (unsigned long long)count,
        (unsigned long long)ns, last ? "" : ",");
}

char *metrics_render_triton_stats(metrics *m, int model)
{
    out o = {.cap = 4096};
    o.p = malloc(o.cap);
    if (!o.p)
        return NULL;
    o.p[0] = '\0';
    put(&o, "{\"model_stats\":[");
    int first = 1;
    FOR_MODELS(i) {
        if (model >= 0 && (size_t)model != i)
            continue;
        model_stats *s = &m->stats[i];
        uint64_t ok = get(&s->infer_ok);
        put(&o, "%s{\"name\":\"%s\",\"version\":\"1\",\"last_inference\":%llu,"
                "\"inference_count\":%llu,\"execution_count\":%llu,\"inference_stats\":{",
            first ? "" : ",", m->names[i], (unsigned long long)get(&s->last_inference_ms),
            (unsigned long long)get(&s->rows), (unsigned long long)get(&s->executions));
        first = 0;
        put_duration(&o, "success", ok, get(&s->e2e_ns), 0);
        put_duration(&o, "fail", get(&s->fail), get(&s->fail_ns), 0);
        put_duration(&o, "queue", ok, get(&s->queue_ns), 0);
        put_duration(&o, "compute_input", ok, get(&s->decode_ns), 0);
        put_duration(&o, "compute_infer", ok, get(&s->compute_ns), 0);
        put_duration(&o, "compute_output", ok, get(&s->encode_ns), 0);
        put_duration(&o, "cache_hit", 0, 0, 0);
        put_duration(&o, "cache_miss", 0, 0, 1);
        put(&o, "},\"batch_stats\":[");
        pthread_mutex_lock(&s->batch_lock);
        for (size_t k = 0; k < METRICS_BATCH_SIZES && s->batches[k].rows; k++) {
            const batch_stat *b = &s->batches[k];
            put(&o, "%s{\"batch_size\":%zu,", k ? "," : "", b->rows);
            put_duration(&o, "compute_input", b->count, b->decode_ns, 0);
            put_duration(&o, "compute_infer", b->count, b->compute_ns, 0);
            put_duration(&o, "compute_output", b->count, b->encode_ns, 1);
            put(&o, "}");
        }
        pthread_mutex_unlock(&s->batch_lock);
        put(&o, "]}");
    }
    put(&o, "]}");
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    return o.p;
}

char *metrics_render(metrics *m, size_t queue_depth, size_t queue_capacity,
                     unsigned open_connections, int n_workers)
{
    out o = {.cap = 16384};
    o.p = malloc(o.cap);
    if (!o.p)
        return NULL;
    o.p[0] = '\0';

    put(&o, "# HELP lnserve_requests_total Requests answered, by model, endpoint, status and"
            " protocol (http, or binary with the HTTP code of its status; code 0: the client"
            " left first).\n# TYPE lnserve_requests_total counter\n");
    for (size_t i = 0; i <= m->n_models; i++) {
        const char *name = i < m->n_models ? m->names[i] : "";
        for (int pr = 0; pr < MP_COUNT; pr++)
            for (int ep = 0; ep < EP_COUNT; ep++)
                for (size_t k = 0; k < N_STATUS; k++) {
                    uint64_t v = get(&m->stats[i].requests[pr][ep][k]);
                    if (!v)
                        continue;
                    char code[16];
                    if (k < N_STATUS - 1)
                        snprintf(code, sizeof code, "%u", statuses[k]);
                    else
                        snprintf(code, sizeof code, "other");
                    put(&o,
                        "lnserve_requests_total{model=\"%s\",endpoint=\"%s\",code=\"%s\","
                        "protocol=\"%s\"} %llu\n",
                        name, ep_names[ep], code, proto_names[pr], (unsigned long long)v);
                }
    }

    static const struct {
        const char *name, *help;
        size_t off;
        double scale;
    } sums[] = {
        {"lnserve_rows_total", "Rows normalized.", offsetof(model_stats, rows), 1},
        {"lnserve_request_bytes_total", "Infer request body bytes.", offsetof(model_stats, bytes_in), 1},
        {"lnserve_response_bytes_total", "Infer response body bytes.", offsetof(model_stats, bytes_out), 1},
        /* Triton's names, same meaning as in its metrics documentation. */
        {"nv_inference_request_success", "Successful infer requests (Triton name).",
         offsetof(model_stats, infer_ok), 1},
        {"nv_inference_count", "Inferences performed, one per row (Triton name).",
         offsetof(model_stats, rows), 1},
        {"nv_inference_exec_count", "Model executions: worker batches holding the model (Triton name).",
         offsetof(model_stats, executions), 1},
        {"nv_inference_request_duration_us", "Cumulative end-to-end infer time, us (Triton name).",
         offsetof(model_stats, e2e_ns), 1e-3},
        {"nv_inference_queue_duration_us", "Cumulative queue wait, us (Triton name).",
         offsetof(model_stats, queue_ns), 1e-3},
        {"nv_inference_compute_infer_duration_us", "Cumulative compute time, us (Triton name).",
         offsetof(model_stats, compute_ns), 1e-3},
    };
    for (size_t k = 0; k < sizeof sums / sizeof sums[0]; k++) {
        put(&o, "# HELP %s %s\n# TYPE %s counter\n", sums[k].name, sums[k].help, sums[k].name);
        FOR_MODELS(i) {
            const counter *c = (const counter *)((const char *)&m->stats[i] + sums[k].off);
            if (sums[k].scale == 1)
                put(&o, "%s{model=\"%s\",version=\"1\"} %llu\n", sums[k].name, m->names[i],
                    (unsigned long long)get(c));
            else
                put(&o, "%s{model=\"%s\",version=\"1\"} %.3f\n", sums[k].name, m->names[i],
                    (double)get(c) * sums[k].scale);
        }
    }

    static const struct {
        const char *name, *help;
        size_t off;
        int rows;
    } hists[] = {
        {"lnserve_request_duration_seconds", "Infer time from headers to response sent.",
         offsetof(model_stats, e2e), 0},
        {"lnserve_queue_wait_seconds",
         "Time from a request's push to its first job's start (queue and batching delay).",
         offsetof(model_stats, queue), 0},
        {"lnserve_compute_seconds", "Kernel time of a request, summed over its jobs.",
         offsetof(model_stats, compute), 0},
        {"lnserve_request_rows", "Rows per infer request.", offsetof(model_stats, req_rows), 1},
        {"lnserve_batch_rows", "Rows of the model per worker batch (one model execution).",
         offsetof(model_stats, batch), 1},
    };
    for (size_t k = 0; k < sizeof hists / sizeof hists[0]; k++) {
        put(&o, "# HELP %s %s\n# TYPE %s histogram\n", hists[k].name, hists[k].help,
            hists[k].name);
        FOR_MODELS(i) {
            const hist *h = (const hist *)((const char *)&m->stats[i] + hists[k].off);
            if (hists[k].rows)
                put_hist(&o, hists[k].name, m->names[i], h, rows_le, N_ROWS, 1);
            else
                put_hist(&o, hists[k].name, m->names[i], h, lat_le, N_LAT, 1e-9);
        }
    }

    put(&o, "# HELP lnserve_batch_jobs Jobs per worker batch, all models.\n"
            "# TYPE lnserve_batch_jobs histogram\n");
    put_hist(&o, "lnserve_batch_jobs", NULL, &m->batch_jobs, rows_le, N_ROWS, 1);
    put(&o, "# HELP lnserve_batch_wait_seconds Time a worker waited for more jobs after the"
            " first of a batch (server.max_queue_delay_us).\n"
            "# TYPE lnserve_batch_wait_seconds histogram\n");
    put_hist(&o, "lnserve_batch_wait_seconds", NULL, &m->batch_wait, lat_le, N_LAT, 1e-9);
    put(&o, "# HELP lnserve_worker_busy_seconds_total Time workers spent computing.\n"
            "# TYPE lnserve_worker_busy_seconds_total counter\n"
            "lnserve_worker_busy_seconds_total %.9f\n",
        (double)get(&m->worker_busy_ns) * 1e-9);
    put(&o, "# HELP lnserve_workers Worker threads.\n# TYPE lnserve_workers gauge\n"
            "lnserve_workers %d\n", n_workers);
    put(&o, "# HELP lnserve_queue_depth Jobs queued or reserved now.\n"
            "# TYPE lnserve_queue_depth gauge\nlnserve_queue_depth %zu\n", queue_depth);
    put(&o, "# HELP lnserve_queue_capacity Jobs the queue admits.\n"
            "# TYPE lnserve_queue_capacity gauge\nlnserve_queue_capacity %zu\n", queue_capacity);
    put(&o, "# HELP lnserve_open_connections Open HTTP connections.\n"
            "# TYPE lnserve_open_connections gauge\nlnserve_open_connections %u\n",
        open_connections);
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    return o.p;
}
