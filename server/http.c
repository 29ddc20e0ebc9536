/*
 * http.c -- see http.h. One http_req per request, created on the handler's
 * first call and freed in the request-completed callback. Ownership:
 *   handler (MHD thread) -> jobs in the queue -> workers; the worker that
 *   finishes the last job owns the request until it resumes the connection,
 *   then the handler owns it again and queues the response; MHD frees it
 *   through request_completed.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/diag.h"
#include "../proto/geojson.h"
#include "../proto/oip.h"
#include "../proto/triton.h"
#include "auth.h"
#include "log.h"
#include "metrics.h"
#include "workers.h"

#define LNSERVE_VERSION "0.1.0"

/* A job smaller than this many elements is not worth a second worker:
 * at ~50 GB/s in cache 64 K floats take ~10 us, a wake-up costs a few. */
#define JOB_MIN_ELEMS 65536

struct http_server {
    struct MHD_Daemon *d;
    const model_table *models;
    queue *q;
    metrics *mx; /* main's */
    const auth *auth;
    int auth_open_health;
    size_t max_elements;
    char *tls_cert, *tls_key; /* PEM, read at start; MHD keeps pointers */
    uint64_t started_ns; /* CLOCK_REALTIME at start, for request ids */
    size_t max_body_bytes;
    int access_log;
    int n_workers;
    triton_batching batching; /* for /config */
    int port;
    /* Requests between the handler's first call and request_completed.
     * Incremented on an MHD thread, decremented in request_completed;
     * read by http_drain. */
    atomic_long active;
    /* Requests whose connection is suspended while workers compute. */
    atomic_long suspended;
    /* Set once by http_drain; read by the handler (acquire/release). */
    atomic_int draining;
    /* The deadline watchdog (see conn_deadline): every open connection,
     * under conns_lock; the thread wakes every WATCHDOG_TICK_MS. */
    pthread_mutex_t conns_lock;
    struct conn_deadline *conns;
    uint64_t request_timeout_ns;
    pthread_t watchdog;
    int watchdog_started;
    atomic_int stopping;
};

/*
 * libmicrohttpd's connection timeout is an idle timeout: a client that
 * sends one byte every 100 ms keeps its connection, and a thousand such
 * clients (slowloris) hold every connection slot. So each connection also
 * gets a deadline by which the request it is sending must be complete:
 * set when the connection opens and again when a response has been sent,
 * cleared while the server itself holds the request (computing, answering).
 * A watchdog thread shuts down the socket of a connection past its
 * deadline; libmicrohttpd then sees the error and closes it. The entry
 * leaves the list in the CLOSED notification, which libmicrohttpd sends
 * before it closes the socket, so the watchdog never touches a reused fd.
 */
#define WATCHDOG_TICK_MS 200

typedef struct conn_deadline {
    struct conn_deadline *prev, *next;
    int fd;
    _Atomic uint64_t deadline_ns; /* 0 = none */
} conn_deadline;

/* Routes are the metrics endpoints (metrics.h); EP_OTHER = no such path. */
typedef metrics_endpoint route;

typedef enum req_state {
    ST_DISCARD = 0,   /* not an infer: drop any body, then answer */
    ST_RECEIVING, /* collecting the body of an infer request */
    ST_TOO_LARGE,     /* body over the limit: discard the rest, then 413 */
    ST_COMPUTING,     /* suspended; jobs in the queue or running */
    ST_DONE,          /* resumed with resp set */
} req_state;

typedef struct http_req http_req;

typedef struct infer_job {
    job base;
    http_req *r;
    size_t row0, row1; /* rows [row0, row1) */
} infer_job;

struct http_req {
    http_server *s;
    struct MHD_Connection *conn;
    req_state state;
    route ep;           /* for metrics; EP_OTHER until routed */
    unsigned status;    /* HTTP status queued; 0 = none yet */
    uint64_t t_start_ns; /* first call of the handler */
    uint64_t queue_ns;   /* written by the worker running jobs[0]: push to start */
    uint64_t decode_ns;
    atomic_uint_fast64_t compute_ns; /* summed over jobs */
    const model *m;
    char *body; /* malloc'd, grows while receiving */
    size_t body_len, body_cap;
    oip_request req;  /* decoded; req.data is normalized in place */
    ln_params params; /* the model's, with n set to the request's N */
    float *diag;      /* every per-row result but y, one block: diag_at() */
    unsigned char want[OIP_OUT_COUNT]; /* outputs the request asked for */
    infer_job *jobs;
    size_t n_jobs;
    atomic_size_t jobs_left;
    struct MHD_Response *resp; /* built by the last worker */
    unsigned resp_status;
    char request_id[65]; /* the client's X-Request-Id, or one we made */
    char method[12];     /* for the access log */
    char path[128];      /* for the access log, cut */
};

/* ---- responses ---------------------------------------------------------- */

/* A response that owns buf (malloc'd; freed here on failure). */
static struct MHD_Response *make_response(char *buf, size_t len, const char *content_type)
{
    if (!buf)
        return NULL;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(buf);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    return resp;
}

/* Queues resp with the headers every response carries and releases our
 * reference. The one place a response leaves the server. */
static enum MHD_Result respond(http_req *r, unsigned status, struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    /* Pairs with the release store in http_drain. */
    if (atomic_load_explicit(&r->s->draining, memory_order_acquire))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    return ret;
}

static enum MHD_Result send_buffer(http_req *r, unsigned status, char *buf, size_t len,
                                   const char *retry_after)
{
    struct MHD_Response *resp = make_response(buf, len, "application/json");
    if (resp && retry_after)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    return respond(r, status, resp);
}

/* buf is malloc'd and NUL-terminated (or NULL on allocation failure). */
static enum MHD_Result send_json(http_req *r, unsigned status, char *buf)
{
    if (!buf)
        return MHD_NO;
    return send_buffer(r, status, buf, strlen(buf), NULL);
}

static enum MHD_Result send_error(http_req *r, lns_status st, const char *fmt,
                                  ...) __attribute__((format(printf, 3, 4)));

static enum MHD_Result send_error(http_req *r, lns_status st, const char *fmt, ...)
{
    char msg[OIP_ERR_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len;
    char *body = oip_encode_error(msg, &len);
    if (!body)
        return MHD_NO;
    const char *retry = (st == LNS_EBUSY || st == LNS_ESHUTDOWN) ? "1" : NULL;
    return send_buffer(r, (unsigned)lns_status_http(st), body, len, retry);
}

/* ---- routing ------------------------------------------------------------ */


/* Splits "/v2/models/{m}[/versions/{v}][/ready|/infer]" and the fixed
 * paths. On a model route, *name and *name_len point into url. */
static route route_parse(const char *url, const char **name, size_t *name_len)
{
    if (!strcmp(url, "/v2") || !strcmp(url, "/v2/"))
        return EP_SERVER_META;
    if (!strcmp(url, "/v2/health/live"))
        return EP_LIVE;
    if (!strcmp(url, "/v2/health/ready"))
        return EP_READY;
    if (!strcmp(url, "/metrics"))
        return EP_METRICS;
    /* Triton's statistics of every model; a model named "stats" is still
     * reachable as /v2/models/stats/versions/1. */
    if (!strcmp(url, "/v2/models/stats"))
        return EP_MODEL_STATS;
    static const char prefix[] = "/v2/models/";
    if (strncmp(url, prefix, sizeof prefix - 1))
        return EP_OTHER;
    const char *p = url + sizeof prefix - 1;
    const char *end = strchr(p, '/');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == 0)
        return EP_OTHER;
    *name = p;
    *name_len = len;
    if (!end)
        return EP_MODEL_META;
    p = end;
    static const char versions[] = "/versions/";
    if (!strncmp(p, versions, sizeof versions - 1)) {
        p += sizeof versions - 1;
        end = strchr(p, '/');
        size_t vlen = end ? (size_t)(end - p) : strlen(p);
        if (vlen == 0)
            return EP_OTHER;
        if (!end)
            return EP_MODEL_META;
        p = end;
    }
    if (!strcmp(p, "/ready"))
        return EP_MODEL_READY;
    if (!strcmp(p, "/infer"))
        return EP_INFER;
    if (!strcmp(p, "/config"))
        return EP_MODEL_CONFIG;
    if (!strcmp(p, "/stats"))
        return EP_MODEL_STATS;
    if (!strcmp(p, "/geometry"))
        return EP_MODEL_GEOMETRY;
    if (!strcmp(p, "/"))
        return EP_MODEL_META;
    return EP_OTHER;
}

/* ---- infer -------------------------------------------------------------- */

static int model_index(const http_req *r)
{
    return r->m ? (int)(r->m - r->s->models->models) : -1;
}

/* r->diag holds, for B rows, G groups and K axes: mean [B*G], rstd [B*G],
 * radius [B], depth [B], condition [B], plane_residual [B*G], axes [B*G*K],
 * jacobian_fro [B], nonlinearity [B]. diag_at(r, row) points at row's
 * entries of each. */
typedef struct diag_view {
    float *mean, *rstd, *radius, *depth, *condition, *plane, *axes, *jac, *nonlin;
} diag_view;

static size_t diag_floats(size_t B, size_t G, size_t K)
{
    return B * (3 * G + 5 + G * K);
}

static diag_view diag_at(const http_req *r, size_t row)
{
    size_t B = r->req.n_rows, G = r->params.groups, K = r->req.axes_k;
    float *base = r->diag;
    diag_view v;
    v.mean = base + row * G;
    base += B * G;
    v.rstd = base + row * G;
    base += B * G;
    v.radius = base + row;
    base += B;
    v.depth = base + row;
    base += B;
    v.condition = base + row;
    base += B;
    v.plane = base + row * G;
    base += B * G;
    v.axes = base + row * G * K;
    base += B * G * K;
    v.jac = base + row;
    base += B;
    v.nonlin = base + row;
    return v;
}

/* Runs on the worker that finished the request's last job: encode, then
 * hand the request back to MHD. Nothing may touch r after the resume. */
static void infer_finish(http_req *r, job_times *t)
{
    size_t B = r->req.n_rows;
    diag_view v = diag_at(r, 0);
    oip_result res = {
        .y = r->req.data,
        .mean = v.mean,
        .rstd = v.rstd,
        .radius = v.radius,
        .depth = v.depth,
        .condition = v.condition,
        .plane_residual = v.plane,
        .axes = v.axes,
        .jacobian_fro = v.jac,
        .nonlinearity = v.nonlin,
    };
    char *out = NULL;
    size_t out_len = 0, json_len = 0;
    uint64_t t0 = metrics_now_ns();
    lns_status st = oip_encode_infer(&r->m->info, &r->req, &res, &out, &out_len, &json_len);
    uint64_t encode_ns = metrics_now_ns() - t0;
    t->output_ns += encode_ns;
    int binary = st == LNS_OK && json_len < out_len;
    if (st != LNS_OK) {
        /* LNS_EBADREQ: a JSON output is not finite in its datatype (a large
         * gain or bias overflowed FP32, or "output" went past FP16's
         * 65504), which JSON cannot carry; binary outputs carry inf. */
        char msg[200];
        snprintf(msg, sizeof msg,
                 "output: a result overflowed %s (check the model's gain and bias; binary "
                 "outputs carry it as inf)",
                 r->req.dtype == OIP_DT_FP16 || r->req.dtype == OIP_DT_BF16
                     ? oip_dtype_name(r->req.dtype)
                     : "FP32");
        out = oip_encode_error(st == LNS_EBADREQ ? msg : "could not encode the response",
                               &out_len);
        r->resp_status = (unsigned)lns_status_http(st);
    } else {
        r->resp_status = MHD_HTTP_OK;
    }
    /* Binary tensor data extension: the JSON header's length, then the
     * blobs; Triton sends application/octet-stream for such a body. */
    r->resp = make_response(out, out_len, binary ? "application/octet-stream" : "application/json");
    if (r->resp && binary) {
        char hl[24];
        snprintf(hl, sizeof hl, "%zu", json_len);
        MHD_add_response_header(r->resp, "Inference-Header-Content-Length", hl);
    }
    if (st == LNS_OK)
        metrics_infer(r->s->mx, model_index(r),
                      &(metrics_infer_sample){
                          .rows = B,
                          .bytes_in = r->body_len,
                          .bytes_out = out_len,
                          .decode_ns = r->decode_ns,
                          .queue_ns = r->queue_ns,
                          .compute_ns = atomic_load_explicit(&r->compute_ns, memory_order_relaxed),
                          .encode_ns = encode_ns,
                      });
    r->state = ST_DONE;
    /* The mutex inside MHD_resume_connection orders the writes above
     * before the handler's next call on the MHD thread. */
    MHD_resume_connection(r->conn);
}

static void infer_job_run(job *j, job_times *t)
{
    infer_job *ij = (infer_job *)j;
    http_req *r = ij->r;
    const model *m = r->m;
    size_t N = r->params.n, rows = ij->row1 - ij->row0;
    float *x = r->req.data + ij->row0 * N;
    diag_view v = diag_at(r, ij->row0);
    /* plane_residual comes out of the kernel's output pass (fused in the
     * AVX-512 kernel, core/ln.h). */
    ln_diag d = {.mean = v.mean, .rstd = v.rstd, .radius = v.radius,
                 .plane = r->want[OIP_OUT_PLANE_RESIDUAL] ? v.plane : NULL,
                 .plane_w = m->inv_gain, .plane_c = m->plane_c};
    uint64_t t0 = metrics_now_ns();
    if (ij == &r->jobs[0])
        r->queue_ns = t0 - j->queued_ns;
    /* The opt-in diagnostics (core/diag.h): depth and condition from the
     * inputs, before the kernel overwrites them in place ... */
    if (r->want[OIP_OUT_DEPTH] || r->want[OIP_OUT_CONDITION])
        ln_depth_condition(&r->params, x, rows, v.depth, v.condition);
    if (r->want[OIP_OUT_JACOBIAN_FRO] || r->want[OIP_OUT_NONLINEARITY])
        ln_jacobian_nonlinearity(&r->params, x, rows, v.jac, v.nonlin);
    ln_rows(&r->params, x, x, rows, &d);
    /* ... the others from what the kernel returned. */
    if (r->want[OIP_OUT_AXES])
        ln_axis_coords(&r->params, m->axes, m->semi_axes, r->req.axes_k, x, rows, v.axes);
    uint64_t dt = metrics_now_ns() - t0;
    atomic_fetch_add_explicit(&r->compute_ns, dt, memory_order_relaxed);
    t->infer_ns += dt;
    /* acq_rel: our writes to data/diag/queue_ns/compute_ns are released to
     * the last worker, which acquires everyone's before encoding. */
    if (atomic_fetch_sub_explicit(&r->jobs_left, 1, memory_order_acq_rel) == 1)
        infer_finish(r, t);
}

/* Inference-Header-Content-Length (binary tensor data extension): the
 * length of the body's JSON part; OIP_JSON_ALL when absent. -1 when the
 * value is not a plain decimal byte count. */
static int header_json_len(http_req *r, size_t *json_len)
{
    const char *v =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    *json_len = OIP_JSON_ALL;
    if (!v)
        return 0;
    if (*v < '0' || *v > '9') /* strtoull would take "-1", " 7", "+7" */
        return -1;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || n >= OIP_JSON_ALL)
        return -1;
    *json_len = (size_t)n;
    return 0;
}

static enum MHD_Result infer_start(http_req *r)
{
    http_server *s = r->s;
    char err[OIP_ERR_MAX];
    size_t json_len;
    if (header_json_len(r, &json_len) != 0) {
        free(r->body);
        r->body = NULL;
        const char *v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                    "Inference-Header-Content-Length");
        return send_error(r, LNS_EBADREQ,
                          "Inference-Header-Content-Length: expected the JSON part's length in "
                          "bytes (a non-negative integer), got '%.32s'",
                          v ? v : "");
    }
    uint64_t t0 = metrics_now_ns();
    lns_status st =
        oip_decode_infer(r->body, r->body_len, json_len, &r->m->info, &r->req, err);
    r->decode_ns = metrics_now_ns() - t0;
    free(r->body);
    r->body = NULL;
    if (st != LNS_OK)
        return send_error(r, st, "%s", err);

    size_t B = r->req.n_rows, N = r->req.n_cols;
    if (B * N > s->max_elements) /* B, N <= 2^30 each: no overflow */
        return send_error(r, LNS_EBADREQ,
                          "inputs[0].shape: %zu x %zu = %zu elements is over the limit of %zu "
                          "(server.max_elements)", B, N, B * N, s->max_elements);
    r->params = r->m->params;
    r->params.n = N;
    size_t G = r->params.groups;
    r->diag = malloc(diag_floats(B, G, r->req.axes_k) * sizeof(float));
    for (size_t i = 0; i < r->req.n_outputs; i++)
        r->want[r->req.outputs[i]] = 1;

    size_t n_jobs = (B * N) / JOB_MIN_ELEMS;
    if (n_jobs > (size_t)s->n_workers)
        n_jobs = (size_t)s->n_workers;
    if (n_jobs > B)
        n_jobs = B;
    if (n_jobs == 0)
        n_jobs = 1;
    r->jobs = calloc(n_jobs, sizeof(infer_job));
    if (!r->diag || !r->jobs)
        return send_error(r, LNS_ENOMEM, "out of memory for %zu rows", B);
    r->n_jobs = n_jobs;
    for (size_t i = 0; i < n_jobs; i++) {
        size_t row0 = B * i / n_jobs, row1 = B * (i + 1) / n_jobs;
        r->jobs[i] = (infer_job){
            .base = {.run = infer_job_run,
                     .n_rows = row1 - row0,
                     .model = model_index(r),
                     .input_ns = i == 0 ? r->decode_ns : 0},
            .r = r,
            .row0 = row0,
            .row1 = row1,
        };
    }
    atomic_init(&r->jobs_left, n_jobs);

    if (queue_reserve(s->q, n_jobs) != 0)
        return send_error(r, LNS_EBUSY, "server busy: queue full (%zu jobs queued), retry later",
                          queue_depth(s->q));

    r->state = ST_COMPUTING;
    uint64_t t_push = metrics_now_ns();
    for (size_t i = 0; i < n_jobs; i++)
        r->jobs[i].base.queued_ns = t_push;
    atomic_fetch_add_explicit(&s->suspended, 1, memory_order_relaxed);
    MHD_suspend_connection(r->conn);
    /* The queue's release/acquire pair publishes r to the workers. After
     * the last push r may already be finished and resumed: don't touch it. */
    for (size_t i = 0; i < n_jobs; i++)
        queue_push(s->q, &r->jobs[i].base, r->jobs[i].base.n_rows);
    return MHD_YES;
}

/* ---- request deadlines ---------------------------------------------------- */

static conn_deadline *conn_deadline_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Arms (now + timeout) or clears (0) the connection's deadline. */
static void conn_deadline_set(http_server *s, struct MHD_Connection *conn, int arm)
{
    conn_deadline *d = conn_deadline_of(conn);
    if (d)
        atomic_store_explicit(&d->deadline_ns, arm ? metrics_now_ns() + s->request_timeout_ns : 0,
                              memory_order_relaxed);
}

static void notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_deadline *d = calloc(1, sizeof *d);
        if (!d || !ci) { /* no deadline for this one: only the idle timeout */
            free(d);
            *socket_context = NULL;
            return;
        }
        d->fd = ci->connect_fd;
        atomic_init(&d->deadline_ns, metrics_now_ns() + s->request_timeout_ns);
        pthread_mutex_lock(&s->conns_lock);
        d->next = s->conns;
        if (s->conns)
            s->conns->prev = d;
        s->conns = d;
        pthread_mutex_unlock(&s->conns_lock);
        *socket_context = d;
    } else if (*socket_context) {
        conn_deadline *d = *socket_context;
        pthread_mutex_lock(&s->conns_lock);
        if (d->prev)
            d->prev->next = d->next;
        else
            s->conns = d->next;
        if (d->next)
            d->next->prev = d->prev;
        pthread_mutex_unlock(&s->conns_lock);
        free(d);
        *socket_context = NULL;
    }
}

static void *watchdog_main(void *arg)
{
    http_server *s = arg;
    /* Pairs with the release store in http_stop. */
    while (!atomic_load_explicit(&s->stopping, memory_order_acquire)) {
        struct timespec tick = {0, WATCHDOG_TICK_MS * 1000000L};
        nanosleep(&tick, NULL);
        uint64_t now = metrics_now_ns();
        pthread_mutex_lock(&s->conns_lock);
        for (conn_deadline *d = s->conns; d; d = d->next) {
            uint64_t dl = atomic_load_explicit(&d->deadline_ns, memory_order_relaxed);
            if (dl && now > dl) {
                atomic_store_explicit(&d->deadline_ns, 0, memory_order_relaxed);
                shutdown(d->fd, SHUT_RDWR);
            }
        }
        pthread_mutex_unlock(&s->conns_lock);
    }
    return NULL;
}

/* ---- the handler -------------------------------------------------------- */

/* Honours the client's X-Request-Id when it is 1..64 printable ASCII
 * characters (it goes back in a header); otherwise makes one that is
 * unique within this process: start time and a counter. */
static void request_id_set(http_req *r)
{
    static atomic_uint_fast64_t next_id;
    const char *id = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = id ? strlen(id) : 0;
    int ok = n >= 1 && n < sizeof r->request_id;
    for (size_t i = 0; ok && i < n; i++)
        ok = id[i] > 0x20 && id[i] < 0x7f;
    if (ok) {
        memcpy(r->request_id, id, n + 1);
        return;
    }
    uint64_t k = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    snprintf(r->request_id, sizeof r->request_id, "%08llx-%llu",
             (unsigned long long)(r->s->started_ns & 0xffffffffu), (unsigned long long)k);
}

static enum MHD_Result method_not_allowed(http_req *r, const char *allow,
                                          const char *method, const char *url)
{
    char msg[512];
    snprintf(msg, sizeof msg, "method %s not allowed on %s; use %s", method, url, allow);
    size_t len = 0;
    char *body = oip_encode_error(msg, &len);
    struct MHD_Response *resp = make_response(body, len, "application/json");
    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    return respond(r, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *dup_printf(const char *fmt, ...)
{
    char *out = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : out;
}

/* GET /v2/models/{m}/geometry[?axes=K]: the region the model's outputs lie
 * in, solved at load; K principal axes per group are computed here on
 * request (O(n^2) per group: 17 ms at n = 4096, see core/geometry.h). */
static enum MHD_Result send_geometry(http_req *r)
{
    const model *m = r->m;
    size_t G = m->params.groups, gs = m->params.n ? m->params.n / G : 0;
    const char *q = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "axes");
    size_t k = 0;
    if (q) {
        char *end;
        errno = 0;
        long long v = strtoll(q, &end, 10);
        if (errno || end == q || *end || v < 0 || !m->geo || (size_t)v > gs - 1)
            return send_error(r, LNS_EBADREQ,
                              "axes: expected an integer in 0..%zu (the semi-axes per group) "
                              "on a layernorm model with a fixed dim, got '%.32s'",
                              m->geo ? gs - 1 : 0, q);
        k = (size_t)v;
    }
    geojson_group *groups = calloc(G, sizeof *groups);
    double *axes = k ? malloc(G * k * gs * sizeof(double)) : NULL;
    char *doc = NULL;
    if (!groups || (k && !axes))
        goto out;
    for (size_t g = 0; g < G; g++) {
        groups[g].geo = m->geo ? m->geo[g] : NULL;
        groups[g].gain = m->gain ? m->gain + g * gs : NULL;
        if (k) {
            groups[g].axes = axes + g * k * gs;
            groups[g].k = k;
            if (geometry_axes(m->geo[g], k, axes + g * k * gs))
                goto out;
        }
    }
    doc = geojson_encode(&m->info, groups);
out:
    free(groups);
    free(axes);
    if (!doc)
        return send_error(r, LNS_ENOMEM, "out of memory encoding the geometry");
    return send_json(r, MHD_HTTP_OK, doc);
}

/* Answers every request that is not a well-formed infer, once its body (if
 * any) has been read and dropped: answering before that makes
 * libmicrohttpd close the connection. */
static enum MHD_Result handle_other(http_req *r, const char *url, const char *method)
{
    http_server *s = r->s;
    const char *name = NULL;
    size_t name_len = 0;
    route rt = route_parse(url, &name, &name_len);
    r->ep = rt;
    int is_get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
    int is_post = !strcmp(method, MHD_HTTP_METHOD_POST);
    size_t len = 0;

    if (rt == EP_OTHER)
        return send_error(r, LNS_ENOTFOUND, "no such path: %s", url);
    if (rt == EP_INFER && !is_post)
        return method_not_allowed(r, "POST", method, url);
    if (rt != EP_INFER && !is_get)
        return method_not_allowed(r, "GET, HEAD", method, url);
    if (atomic_load_explicit(&s->draining, memory_order_acquire) && rt != EP_LIVE)
        return send_error(r, LNS_ESHUTDOWN, "server is shutting down");

    if (name) {
        r->m = models_find(s->models, name, name_len);
        if (!r->m)
            return send_error(r, LNS_ENOTFOUND, "unknown model '%.*s'",
                              (int)(name_len > 128 ? 128 : name_len), name);
    }

    switch (rt) {
    case EP_LIVE:
        return send_json(r, MHD_HTTP_OK, dup_printf("{\"live\":true}"));
    case EP_READY:
        return send_json(r, MHD_HTTP_OK, dup_printf("{\"ready\":true}"));
    case EP_SERVER_META:
        return send_json(r, MHD_HTTP_OK, oip_encode_server_metadata(LNSERVE_VERSION, &len));
    case EP_MODEL_META:
        return send_json(r, MHD_HTTP_OK, oip_encode_model_metadata(&r->m->info, &len));
    case EP_MODEL_READY:
        return send_json(r, MHD_HTTP_OK,
                         dup_printf("{\"name\":\"%s\",\"ready\":true}", r->m->name));
    case EP_MODEL_GEOMETRY:
        return send_geometry(r);
    case EP_MODEL_STATS:
        return send_json(r, MHD_HTTP_OK,
                         metrics_render_triton_stats(s->mx, r->m ? model_index(r) : -1));
    case EP_MODEL_CONFIG:
        return send_json(r, MHD_HTTP_OK,
                         triton_encode_model_config(&r->m->info, s->n_workers, &s->batching));
    case EP_METRICS: {
        /* The daemon from the connection, not s->d: s->d is written by
         * main after MHD_start_daemon returns, when this thread may
         * already be serving. */
        const union MHD_ConnectionInfo *di =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_DAEMON);
        const union MHD_DaemonInfo *ci =
            di ? MHD_get_daemon_info(di->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;
        char *text = metrics_render(s->mx, queue_depth(s->q), queue_capacity(s->q),
                                    ci ? ci->num_connections : 0, s->n_workers);
        return respond(r, MHD_HTTP_OK,
                       make_response(text, text ? strlen(text) : 0,
                                     "text/plain; version=0.0.4; charset=utf-8"));
    }
    case EP_INFER: /* a well-formed infer was started in handle_headers */
    case EP_PING:  /* binary protocol only */
    case EP_OTHER:
    case EP_COUNT:
        break;
    }
    return send_error(r, LNS_EINTERNAL, "unrouted path %s", url);
}

/* MHD_get_connection_values iterator: *cls ends as the one Content-Length
 * value, or as CL_CONFLICT when two differ. */
static const char cl_conflict_mark;
#define CL_CONFLICT (&cl_conflict_mark)

static enum MHD_Result content_length_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                         const char *value)
{
    const char **seen = cls;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
        return MHD_YES;
    if (*seen && (*seen == CL_CONFLICT || strcmp(*seen, value))) {
        *seen = CL_CONFLICT;
        return MHD_NO;
    }
    *seen = value;
    return MHD_YES;
}

/* First call of a request: headers only. A well-formed infer goes to
 * ST_RECEIVING, unless its Content-Length is over the limit: that is
 * refused now (the connection closes; the body is never read). Anything
 * else stays in ST_DISCARD for handle_other. */
static enum MHD_Result handle_headers(http_req *r, const char *url, const char *method)
{
    http_server *s = r->s;
    const char *name = NULL;
    size_t name_len = 0;
    route rt = route_parse(url, &name, &name_len);
    /* Framing first (RFC 9112 6.1, 6.3): libmicrohttpd takes the first of
     * several Content-Length headers, and waits forever for the body of a
     * transfer coding it does not know. Answered at once, connection closed. */
    const char *te =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (te && strcasecmp(te, "chunked"))
        return send_error(r, LNS_ENOTIMPL,
                          "Transfer-Encoding '%.40s' is not supported (expected chunked or none)",
                          te);
    const char *cl0 = NULL;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, content_length_cb, &cl0);
    if (cl0 == CL_CONFLICT)
        return send_error(r, LNS_EBADREQ,
                          "Content-Length: given more than once with different values");
    if (auth_enabled(s->auth) && !(s->auth_open_health && (rt == EP_LIVE || rt == EP_READY)) &&
        !auth_check(s->auth, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                           MHD_HTTP_HEADER_AUTHORIZATION))) {
        /* Answered before the body is read: the connection closes, so an
         * unauthenticated client cannot make us read its upload. */
        size_t len = 0;
        char *body = oip_encode_error(
            "missing or unknown API key (expected the header Authorization: Bearer KEY)", &len);
        struct MHD_Response *resp = make_response(body, len, "application/json");
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        return respond(r, MHD_HTTP_UNAUTHORIZED, resp);
    }
    if (rt != EP_INFER || strcmp(method, MHD_HTTP_METHOD_POST) ||
        atomic_load_explicit(&s->draining, memory_order_acquire))
        return MHD_YES;
    r->m = models_find(s->models, name, name_len);
    if (!r->m)
        return MHD_YES;
    r->ep = EP_INFER;
    const char *cl =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && v > s->max_body_bytes)
            return send_error(r, LNS_ETOOLARGE,
                              "body of %llu bytes is over the limit of %zu bytes "
                              "(server.max_body_bytes)",
                              v, s->max_body_bytes);
    }
    r->state = ST_RECEIVING;
    return MHD_YES;
}

static enum MHD_Result body_append(http_req *r, const char *data, size_t n)
{
    size_t max = r->s->max_body_bytes;
    if (r->state == ST_TOO_LARGE)
        return MHD_YES;
    if (n > max - r->body_len) {
        /* Chunked or lying Content-Length: drop what we have, discard the
         * rest, answer 413 at the end of the upload. */
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        r->state = ST_TOO_LARGE;
        return MHD_YES;
    }
    if (r->body_len + n > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 16384;
        while (cap < r->body_len + n)
            cap *= 2;
        if (cap > max)
            cap = max;
        char *nb = realloc(r->body, cap);
        if (!nb)
            return MHD_NO;
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    return MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn,
                               const char *url, const char *method,
                               const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls)
{
    http_server *s = cls;
    http_req *r = *con_cls;

    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        r->s = s;
        r->conn = conn;
        r->state = ST_DISCARD;
        r->ep = EP_OTHER;
        r->t_start_ns = metrics_now_ns();
        request_id_set(r);
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        *con_cls = r;
        atomic_fetch_add_explicit(&s->active, 1, memory_order_relaxed);
        return handle_headers(r, url, method);
    }

    switch (r->state) {
    case ST_DISCARD:
        if (*upload_data_size) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        conn_deadline_set(s, conn, 0);
        r->state = ST_DONE;
        return handle_other(r, url, method);
    case ST_RECEIVING:
    case ST_TOO_LARGE:
        if (*upload_data_size) {
            enum MHD_Result ret = body_append(r, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return ret;
        }
        conn_deadline_set(s, conn, 0); /* the request is in; ours now */
        if (r->state == ST_TOO_LARGE)
            return send_error(r, LNS_ETOOLARGE,
                              "body is over the limit of %zu bytes (server.max_body_bytes)",
                              s->max_body_bytes);
        return infer_start(r);
    case ST_COMPUTING:
        /* Not reached: a suspended connection is not processed. */
        return MHD_YES;
    case ST_DONE:
        if (r->n_jobs == 0) /* answered on the first call */
            return MHD_YES;
        /* Resumed by infer_finish: send what it built, once. */
        r->n_jobs = 0;
        atomic_fetch_sub_explicit(&s->suspended, 1, memory_order_relaxed);
        if (!r->resp)
            return send_error(r, LNS_ENOMEM, "out of memory building the response");
        struct MHD_Response *resp = r->resp;
        r->resp = NULL;
        return respond(r, r->resp_status, resp);
    }
    return MHD_NO;
}

static void request_completed(void *cls, struct MHD_Connection *conn,
                              void **con_cls, enum MHD_RequestTerminationCode toe)
{
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    conn_deadline_set(s, conn, 1); /* the next request must arrive in time */
    /* A request that ended with no status queued: the client left. */
    unsigned status = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? r->status : 0;
    uint64_t e2e_ns = metrics_now_ns() - r->t_start_ns;
    metrics_request(s->mx, model_index(r), r->ep, MP_HTTP, status, e2e_ns);
    if (s->access_log) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        char peer[INET6_ADDRSTRLEN] = "-";
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            const void *a = sa->sa_family == AF_INET6
                                ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
            inet_ntop(sa->sa_family, a, peer, sizeof peer);
        }
        log_msg(LOG_INFO, "access id=%s peer=%s %s %s status=%u in=%zu us=%llu", r->request_id,
                peer, r->method, r->path, status, r->body_len,
                (unsigned long long)(e2e_ns / 1000));
    }
    if (r->resp)
        MHD_destroy_response(r->resp);
    oip_request_fini(&r->req);
    free(r->body);
    free(r->diag);
    free(r->jobs);
    free(r);
    atomic_fetch_sub_explicit(&s->active, 1, memory_order_release);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_msg(LOG_WARN, "libmicrohttpd: %s", msg);
}

/* The whole file, NUL-terminated, or NULL with the reason in err. */
static char *read_file(const char *key, const char *path, char *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    if (!f) {
        snprintf(err, CONFIG_ERR_MAX, "server.%s: %s: %s", key, path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n < (1L << 24) && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)))
            len = fread(buf, 1, (size_t)n, f);
        if (buf && len != (size_t)n) {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    if (!buf)
        snprintf(err, CONFIG_ERR_MAX, "server.%s: %s: cannot read (or over 16 MiB)", key, path);
    else
        buf[len] = '\0';
    return buf;
}

static void server_free(http_server *s)
{
    if (s->watchdog_started) {
        /* Pairs with the acquire load in watchdog_main. */
        atomic_store_explicit(&s->stopping, 1, memory_order_release);
        pthread_join(s->watchdog, NULL);
    }
    pthread_mutex_destroy(&s->conns_lock);
    free(s->tls_cert);
    free(s->tls_key);
    free(s);
}

http_server *http_start(const config *c, const model_table *models, queue *q,
                        const auth *a, int n_workers, metrics *mx, char *err)
{
    http_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, CONFIG_ERR_MAX, "out of memory");
        return NULL;
    }
    s->models = models;
    s->q = q;
    s->mx = mx;
    s->max_body_bytes = c->max_body_bytes;
    s->max_elements = c->max_elements;
    s->request_timeout_ns = (uint64_t)c->connection_timeout_s * 1000000000u;
    pthread_mutex_init(&s->conns_lock, NULL);
    atomic_init(&s->stopping, 0);
    s->auth = a;
    s->auth_open_health = c->auth_open_health;
    s->access_log = c->access_log;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->started_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    s->n_workers = n_workers;
    s->batching = (triton_batching){.max_batch_rows = c->max_batch_rows,
                                    .max_queue_delay_us = (unsigned long long)c->max_queue_delay_us};
    atomic_init(&s->active, 0);
    atomic_init(&s->suspended, 0);
    atomic_init(&s->draining, 0);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                     MHD_USE_TURBO;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, c->address, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)c->port);
    } else if (inet_pton(AF_INET6, c->address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)c->port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, CONFIG_ERR_MAX,
                 "server.address: '%s' is not an IPv4 or IPv6 address", c->address);
        server_free(s);
        return NULL;
    }

    struct MHD_OptionItem opts[16];
    size_t n_opts = 0;
#define OPT(o, v, p) (opts[n_opts++] = (struct MHD_OptionItem){(o), (intptr_t)(v), (p)})
    OPT(MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL);
    OPT(MHD_OPTION_SOCK_ADDR, 0, &ss);
    OPT(MHD_OPTION_NOTIFY_COMPLETED, request_completed, s);
    OPT(MHD_OPTION_NOTIFY_CONNECTION, notify_connection, s);
    OPT(MHD_OPTION_CONNECTION_LIMIT, c->max_connections, NULL);
    OPT(MHD_OPTION_CONNECTION_TIMEOUT, c->connection_timeout_s, NULL);
    /* The pool option only when asked for: a pool of 1 makes MHD warn. */
    if (c->io_threads > 1)
        OPT(MHD_OPTION_THREAD_POOL_SIZE, c->io_threads, NULL);
    if (c->max_connections_per_ip > 0)
        OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, c->max_connections_per_ip, NULL);
    if (c->tls_cert_file[0]) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            snprintf(err, CONFIG_ERR_MAX,
                     "server.tls_cert_file: this libmicrohttpd was built without TLS");
            server_free(s);
            return NULL;
        }
        s->tls_cert = read_file("tls_cert_file", c->tls_cert_file, err);
        s->tls_key = s->tls_cert ? read_file("tls_key_file", c->tls_key_file, err) : NULL;
        if (!s->tls_key) {
            server_free(s);
            return NULL;
        }
        flags |= MHD_USE_TLS;
        OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert);
        OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key);
    }
    OPT(MHD_OPTION_END, 0, NULL);
#undef OPT

    s->d = MHD_start_daemon(flags, (uint16_t)c->port, NULL, NULL, handler, s,
                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, CONFIG_ERR_MAX, "cannot listen on %s:%d: %s", c->address,
                 c->port, errno ? strerror(errno) : "libmicrohttpd failed to start");
        server_free(s);
        return NULL;
    }
    int rc = pthread_create(&s->watchdog, NULL, watchdog_main, s);
    if (rc) {
        snprintf(err, CONFIG_ERR_MAX, "watchdog thread: %s", strerror(rc));
        MHD_stop_daemon(s->d);
        server_free(s);
        return NULL;
    }
    s->watchdog_started = 1;
    pthread_setname_np(s->watchdog, "lnserve-wdog");
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : c->port;
    return s;
}

int http_port(const http_server *s)
{
    return s->port;
}

int http_drain(http_server *s, int timeout_s)
{
    /* Pairs with the acquire loads in the handler. */
    atomic_store_explicit(&s->draining, 1, memory_order_release);
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);

    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        /* Pairs with the release decrement in request_completed. */
        long active = atomic_load_explicit(&s->active, memory_order_acquire);
        long suspended = atomic_load_explicit(&s->suspended, memory_order_relaxed);
        if (active == 0)
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (suspended == 0 && now.tv_sec - start.tv_sec >= timeout_s)
            return (int)active;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

void http_stop(http_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->d);
    server_free(s);
}
