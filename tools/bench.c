/* bench.c -- see bench.h. */
#include "bench.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "../core/ln.h"
#include "../proto/f32text.h"
#include "hist.h"
#include "lnbin.h"

/* Relative tolerance of the check: 16 float32 ulps of max(1, |ref|). */
#define CHECK_TOL (16.0 / 16777216.0)
#define RX_INITIAL (64 * 1024)
#define CONNECT_RETRY_NS 100000000ull /* 100 ms between tries on a refused connect */

enum err_kind { E_CONNECT, E_IO, E_TIMEOUT, E_PROTOCOL, E_HTTP4XX, E_HTTP5XX, E_BUSY, E_WRONG, E_N };
static const char *const ERR_NAME[E_N] = {"connect", "io",       "timeout", "protocol",
                                          "http_4xx", "http_5xx", "busy",    "wrong"};

typedef struct variant {
    char *req; /* the whole HTTP request, or the INFER frame (request id 0) */
    size_t req_len;
    size_t body_off; /* where the HTTP body starts in req (--print-body) */
    float *x;     /* [rows * n] the inputs, as sent */
    float *y_ref; /* [rows * n] ln_rows_ref of x */
    char *good;   /* a body (HTTP) or output bytes (frames) already checked right, or NULL */
    size_t good_len;
} variant;

/* HTTP: a connection is IDLE, SENDING or WAITING for its one request.
 * Frames: a connected connection is IDLE whatever it has in flight; its
 * slots say which requests those are. */
enum { C_CONNECTING, C_IDLE, C_SENDING, C_WAITING, C_RETRY };

/* A request in flight on a frame connection. Its id is (seq << 16) | slot,
 * so a response finds its slot at once and a stale or foreign id fails the
 * comparison with the slot's id. */
typedef struct slot {
    uint64_t id;
    uint64_t t_start;
    unsigned variant;
    int used;
} slot;
#define SLOT_BITS 16

typedef struct conn {
    int fd;
    int state;
    unsigned variant;
    size_t sent;
    uint64_t t_start; /* ns: sent (closed loop) or due (open loop) */
    uint64_t retry_at;
    int want_out; /* EPOLLOUT registered */
    int in_idle;  /* on the idle stack (which may hold it stale: see pop_idle) */
    char *rx;
    size_t rx_len, rx_cap;
    httpc_resp resp;
    /* frames only */
    slot *slots;          /* [pipeline] */
    unsigned *free_slots; /* stack of free slot indexes */
    unsigned n_free, n_inflight;
    uint64_t seq;
    uint8_t *tx; /* requests not yet written: [tx_off, tx_len) */
    size_t tx_off, tx_len, tx_cap;
} conn;

typedef struct bench {
    const bench_opts *o;
    int ep;
    int check; /* a reference exists for this model */
    conn *c;
    variant *v;
    int frames; /* the frame protocol (binary-tcp, binary-unix) */
    unsigned next_variant;
    unsigned *idle; /* FIFO ring of connections that can take a request */
    unsigned idle_head, n_idle;
    uint64_t response_bytes; /* body (HTTP) or frame size of the first good response */
    /* counters since the measured phase began */
    hist lat;
    uint64_t ok, err[E_N], checked, tx_bytes, rx_bytes, responses;
    uint64_t window_done; /* responses completed inside the window */
    /* schedule */
    uint64_t issued;   /* requests sent (all phases) */
    uint64_t t0;       /* start of the run (warmup included) */
    uint64_t t_meas;   /* start of the measured phase */
    uint64_t t_end;    /* end of the window (UINT64_MAX: by request count) */
    int measuring, stopping;
    int connected; /* some connection was ever established */
    uint64_t in_flight;
    uint64_t late_max; /* open loop: most requests overdue at once */
    uint64_t cpu0_ns;  /* this process's CPU time when measuring began */
    uint64_t wall0_ns; /* and the clock then (0: it never began) */
    double client_cpu; /* CPU time over the measured window / its length */
    char first_error[256];
} bench;

static const char *const PROTO_NAME[] = {"http-json", "http-binary", "binary-tcp",
                                          "binary-unix"};

int bench_proto_parse(const char *s, bench_proto *p)
{
    for (unsigned i = 0; i < sizeof PROTO_NAME / sizeof *PROTO_NAME; i++)
        if (!strcmp(s, PROTO_NAME[i])) {
            *p = (bench_proto)i;
            return 0;
        }
    return -1;
}

const char *bench_proto_name(bench_proto p)
{
    return (unsigned)p < sizeof PROTO_NAME / sizeof *PROTO_NAME ? PROTO_NAME[p] : "?";
}

/* This process's user + system CPU time. lnctl bench is one thread, so
 * over a window it says how busy the load generator itself was. */
static uint64_t cpu_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* splitmix64: a seeded generator whose seed is printed, so a run repeats. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_gauss(uint64_t *s)
{
    double u = rng_unit(s), w = rng_unit(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * w);
}

/* ---- setup -------------------------------------------------------------- */

/* v->req for the HTTP wires: the JSON body, or the binary tensor
 * extension's (a JSON header asking for every output as binary data, then
 * the rows as raw FP32). */
static int build_http_request(bench *b, variant *v, const char *path)
{
    const bench_opts *o = b->o;
    size_t count = (size_t)o->rows * o->n;
    size_t cap = 512 + count * (F32TEXT_MAX + 1);
    char *body = malloc(cap);
    if (!body)
        return -1;
    size_t len;
    char extra[96];
    const char *ctype = NULL, *xh = NULL;
    if (o->proto == BENCH_HTTP_BINARY) {
        len = httpc_binary_infer_body(body, v->x, o->rows, o->n, extra, sizeof extra);
        xh = extra;
    } else {
        ctype = "application/json";
        len = (size_t)snprintf(body, cap,
                               "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
                               "\"shape\":[%u,%u],\"data\":[",
                               o->rows, o->n);
        for (size_t i = 0; i < count; i++) {
            if (i)
                body[len++] = ',';
            len += f32text_print(body + len, v->x[i]);
        }
        len += (size_t)snprintf(body + len, cap - len, "]}]}");
    }
    v->req = httpc_format_request(&o->url, "POST", path, o->api_key, xh, ctype, body, len,
                                  &v->req_len);
    free(body);
    if (!v->req)
        return -1;
    v->body_off = v->req_len - len;
    return 0;
}

static int build_variants(bench *b)
{
    const bench_opts *o = b->o;
    uint64_t s = o->seed;
    size_t count = (size_t)o->rows * o->n;
    ln_params p = {.kind = strcmp(o->model, "rmsnorm") ? LN_KIND_LAYERNORM : LN_KIND_RMSNORM,
                   .n = o->n, .groups = 1, .eps = 1e-5f};
    char path[512];
    snprintf(path, sizeof path, "/v2/models/%s/infer", o->model);
    for (unsigned k = 0; k < o->variants; k++) {
        variant *v = &b->v[k];
        v->x = malloc(count * sizeof(float));
        v->y_ref = malloc(count * sizeof(float));
        if (!v->x || !v->y_ref)
            return -1;
        /* rows with their own offset and scale, so mean and scale matter */
        for (unsigned r = 0; r < o->rows; r++) {
            double mu = 4.0 * rng_gauss(&s), sd = exp(2.0 * rng_unit(&s) - 1.0);
            for (unsigned i = 0; i < o->n; i++)
                v->x[(size_t)r * o->n + i] = (float)(mu + sd * rng_gauss(&s));
        }
        ln_rows_ref(&p, v->x, v->y_ref, o->rows, &(ln_diag){0});
        if (!b->frames) {
            if (build_http_request(b, v, path))
                return -1;
            continue;
        }
        /* the INFER frame with id 0; each send patches in its own id */
        size_t name_len = strlen(o->model);
        size_t n = frame_infer_request_bytes(name_len, FRAME_DTYPE_FP32, o->rows, o->n);
        if (n == 0) {
            errno = EINVAL;
            return -1;
        }
        v->req = malloc(n);
        if (!v->req)
            return -1;
        v->req_len = frame_encode_infer_request((uint8_t *)v->req, 0, 0, o->model, name_len,
                                                FRAME_DTYPE_FP32, FRAME_OUT_ALL, o->rows, o->n,
                                                v->x);
    }
    return 0;
}

/* ---- checking ----------------------------------------------------------- */

/* Remembers bytes found right, so the next identical ones need only a
 * memcmp (what lets every response be checked at full speed). */
static void remember_good(variant *v, const void *p, size_t len)
{
    char *g = realloc(v->good, len);
    if (g) {
        memcpy(g, p, len);
        v->good = g;
        v->good_len = len;
    }
}

static int is_good(const variant *v, const void *p, size_t len)
{
    return v->good && len == v->good_len && !memcmp(p, v->good, len);
}

static int close_enough(float got, float ref)
{
    return fabs((double)got - ref) <= CHECK_TOL * fmax(1.0, fabs((double)ref));
}

/* 1 when the rows * n little-endian FP32 values at p match v's reference. */
static int check_f32(const bench *b, const variant *v, const uint8_t *p)
{
    size_t count = (size_t)b->o->rows * b->o->n;
    for (size_t i = 0; i < count; i++)
        if (!close_enough(frame_get_f32(p + 4 * i), v->y_ref[i]))
            return 0;
    return 1;
}

/* http-binary: the "output" tensor's bytes in the binary part of body,
 * found through the JSON header's outputs and their binary_data_size (the
 * binary parts follow in the order of the outputs); NULL if absent. */
static const uint8_t *binary_output(const bench *b, const char *body, size_t len,
                                    uint64_t header_len)
{
    if (header_len == UINT64_MAX || header_len > len)
        return NULL;
    json_t *doc = json_loadb(body, (size_t)header_len, 0, NULL);
    const uint8_t *out = NULL;
    size_t off = (size_t)header_len, want = (size_t)b->o->rows * b->o->n * sizeof(float), i;
    json_t *t;
    json_array_foreach(json_object_get(doc, "outputs"), i, t)
    {
        json_t *sz = json_object_get(json_object_get(t, "parameters"), "binary_data_size");
        if (!json_is_integer(sz) || json_integer_value(sz) < 0)
            break;
        size_t n = (size_t)json_integer_value(sz);
        const char *name = json_string_value(json_object_get(t, "name"));
        if (name && !strcmp(name, "output")) {
            if (n == want && n <= len - off)
                out = (const uint8_t *)body + off;
            break;
        }
        if (n > len - off)
            break;
        off += n;
    }
    json_decref(doc);
    return out;
}

/* 1 when an HTTP body's "output" tensor matches v's reference. */
static int check_body(bench *b, variant *v, const char *body, size_t len, uint64_t header_len)
{
    if (is_good(v, body, len))
        return 1;
    if (b->o->proto == BENCH_HTTP_BINARY) {
        const uint8_t *y = binary_output(b, body, len, header_len);
        if (!y || !check_f32(b, v, y))
            return 0;
        remember_good(v, body, len);
        return 1;
    }
    const char *end = body + len;
    static const char key[] = "\"name\":\"output\"";
    const char *p = memmem(body, len, key, sizeof key - 1);
    if (!p)
        return 0;
    static const char dk[] = "\"data\":[";
    p = memmem(p, (size_t)(end - p), dk, sizeof dk - 1);
    if (!p)
        return 0;
    p += sizeof dk - 1;
    size_t count = (size_t)b->o->rows * b->o->n;
    for (size_t i = 0; i < count; i++) {
        while (p < end && (*p == ' ' || *p == '\n'))
            p++;
        if (i) {
            if (p >= end || *p != ',')
                return 0;
            p++;
            while (p < end && (*p == ' ' || *p == '\n'))
                p++;
        }
        float got;
        p = f32text_parse(p, end, &got);
        if (!p)
            return 0;
        if (!close_enough(got, v->y_ref[i]))
            return 0;
    }
    while (p < end && (*p == ' ' || *p == '\n'))
        p++;
    if (p >= end || *p != ']')
        return 0;
    remember_good(v, body, len);
    return 1;
}

/* 1 when an OK INFER_RESP frame carries v's rows, right. */
static int check_frame(bench *b, variant *v, const frame_response *r)
{
    if (r->rows != b->o->rows || r->cols != b->o->n || r->dtype != FRAME_DTYPE_FP32 ||
        !r->output)
        return 0;
    size_t len = (size_t)b->o->rows * b->o->n * sizeof(float);
    if (is_good(v, r->output, len))
        return 1;
    if (!check_f32(b, v, r->output))
        return 0;
    remember_good(v, r->output, len);
    return 1;
}

/* ---- connections -------------------------------------------------------- */

static void note_error(bench *b, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void note_error(bench *b, int kind, const char *fmt, ...)
{
    if (b->measuring)
        b->err[kind]++;
    if (!b->first_error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->first_error, sizeof b->first_error, fmt, ap);
        va_end(ap);
    }
}

static void set_out(bench *b, conn *c, int want)
{
    if (c->want_out == want)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0),
                             .data.u32 = (uint32_t)(c - b->c)};
    epoll_ctl(b->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

/* Forgets a frame connection's requests in flight and unsent bytes. */
static void slots_reset(bench *b, conn *c)
{
    unsigned depth = b->o->pipeline;
    for (unsigned i = 0; i < depth; i++) {
        c->slots[i].used = 0;
        c->free_slots[i] = depth - 1 - i;
    }
    c->n_free = depth;
    c->n_inflight = 0;
    c->tx_off = c->tx_len = 0;
}

static void conn_open(bench *b, conn *c)
{
    c->rx_len = 0;
    c->want_out = 1;
    if (b->frames) {
        slots_reset(b, c);
        c->fd = lnbin_dial(b->o->addr, 1);
    } else {
        c->fd = httpc_connect(&b->o->url, 1);
    }
    if (c->fd < 0) {
        note_error(b, E_CONNECT, "connect: %s", strerror(-c->fd));
        c->state = C_RETRY;
        c->retry_at = now_ns() + CONNECT_RETRY_NS;
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(c - b->c)};
    epoll_ctl(b->ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->state = C_CONNECTING;
}

/* Drops c's connection and opens a new one. The error that caused it has
 * been counted once; on a frame connection every other request that was in
 * flight is lost with it and counted as an io error. */
static void conn_reset(bench *b, conn *c)
{
    if (b->frames) {
        b->in_flight -= c->n_inflight;
        if (c->n_inflight > 1 && b->measuring)
            b->err[E_IO] += c->n_inflight - 1;
        c->n_inflight = 0;
    } else if (c->state == C_SENDING || c->state == C_WAITING) {
        b->in_flight--;
    }
    if (c->fd >= 0) {
        epoll_ctl(b->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (b->stopping) {
        c->state = C_RETRY;
        c->retry_at = UINT64_MAX;
        return;
    }
    conn_open(b, c);
}

/* Sends buf[*off, len) on c: 1 when all of it is out, 0 when the socket
 * is full (EPOLLOUT is then watched), -1 when c failed and was reset. */
static int send_some(bench *b, conn *c, const void *buf, size_t len, size_t *off)
{
    while (*off < len) {
        ssize_t n = send(c->fd, (const char *)buf + *off, len - *off, MSG_NOSIGNAL);
        if (n > 0) {
            *off += (size_t)n;
            if (b->measuring)
                b->tx_bytes += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out(b, c, 1);
            return 0;
        }
        note_error(b, E_IO, "send: %s", n < 0 ? strerror(errno) : "closed");
        conn_reset(b, c);
        return -1;
    }
    set_out(b, c, 0);
    return 1;
}

static void conn_send_more(bench *b, conn *c)
{
    const variant *v = &b->v[c->variant];
    if (send_some(b, c, v->req, v->req_len, &c->sent) == 1)
        c->state = C_WAITING;
}

/* Frames: writes what c has queued. 0, or -1 when c was reset. */
static int frames_flush(bench *b, conn *c)
{
    int rc = send_some(b, c, c->tx, c->tx_len, &c->tx_off);
    if (rc == 1)
        c->tx_off = c->tx_len = 0;
    return rc < 0 ? -1 : 0;
}

/* Frames: queues the next variant's INFER under a fresh id in a free slot
 * (the caller checked there is one). 0, or -1 out of memory. */
static int frames_queue(bench *b, conn *c, uint64_t t_start)
{
    const variant *v = &b->v[b->next_variant];
    if (c->tx_cap - c->tx_len < v->req_len) {
        if (c->tx_off) {
            memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
            c->tx_len -= c->tx_off;
            c->tx_off = 0;
        }
        size_t cap = c->tx_cap ? c->tx_cap : 4096;
        while (cap - c->tx_len < v->req_len)
            cap *= 2;
        if (cap != c->tx_cap) {
            uint8_t *nb = realloc(c->tx, cap);
            if (!nb)
                return -1;
            c->tx = nb;
            c->tx_cap = cap;
        }
    }
    unsigned k = c->free_slots[--c->n_free];
    slot *sl = &c->slots[k];
    sl->id = (++c->seq << SLOT_BITS) | k;
    sl->t_start = t_start;
    sl->variant = b->next_variant;
    sl->used = 1;
    uint8_t *f = c->tx + c->tx_len;
    memcpy(f, v->req, v->req_len);
    /* The variant's frame was encoded with flags 0 and id 0: only the id
     * differs per request. */
    frame_encode_header(f, FRAME_OP_INFER, 0, (uint32_t)(v->req_len - FRAME_HEADER_BYTES),
                        sl->id);
    c->tx_len += v->req_len;
    c->n_inflight++;
    if (++b->next_variant == b->o->variants)
        b->next_variant = 0;
    b->issued++;
    b->in_flight++;
    return 0;
}

/* May c start another request now (the bounds of the run)? */
static int may_issue(const bench *b)
{
    return !b->stopping && (!b->o->requests || b->issued < b->o->requests);
}

/* Frames, closed loop: tops c up to the pipeline depth and writes. */
static void frames_fill(bench *b, conn *c, uint64_t t)
{
    while (c->n_free > 0 && may_issue(b))
        if (frames_queue(b, c, t)) {
            note_error(b, E_IO, "out of memory");
            conn_reset(b, c);
            return;
        }
    frames_flush(b, c);
}

static void push_idle(bench *b, conn *c)
{
    if (c->in_idle)
        return;
    c->in_idle = 1;
    unsigned n = b->o->connections;
    b->idle[(b->idle_head + b->n_idle++) % n] = (unsigned)(c - b->c);
}

static void conn_start(bench *b, conn *c, uint64_t t_start)
{
    if (b->frames) {
        if (frames_queue(b, c, t_start)) {
            note_error(b, E_IO, "out of memory");
            conn_reset(b, c);
            return;
        }
        if (frames_flush(b, c) == 0 && c->n_free > 0)
            push_idle(b, c); /* room for more: back in the queue, behind the others */
        return;
    }
    c->variant = b->next_variant;
    if (++b->next_variant == b->o->variants)
        b->next_variant = 0;
    c->sent = 0;
    c->t_start = t_start;
    c->state = C_SENDING;
    httpc_resp_init(&c->resp);
    b->issued++;
    b->in_flight++;
    conn_send_more(b, c);
}

static void conn_idle(bench *b, conn *c)
{
    c->state = C_IDLE;
    if (!b->o->rate) {
        if (b->frames)
            frames_fill(b, c, now_ns());
        else if (may_issue(b))
            conn_start(b, c, now_ns());
        return;
    }
    if (!b->frames || c->n_free > 0)
        push_idle(b, c);
}

/* A connection that can take a request for the open loop, or NULL. One
 * that was reset or filled up while queued is dropped from the ring here. */
static conn *pop_idle(bench *b)
{
    while (b->n_idle > 0) {
        conn *c = &b->c[b->idle[b->idle_head]];
        b->idle_head = (b->idle_head + 1) % b->o->connections;
        b->n_idle--;
        c->in_idle = 0;
        if (c->state == C_IDLE && (!b->frames || c->n_free > 0))
            return c;
    }
    return NULL;
}

/* Counts one response that took latency t - t_start and msg_len bytes. */
static void count_response(bench *b, uint64_t t, uint64_t t_start, size_t msg_len)
{
    b->in_flight--;
    if (b->measuring) {
        b->rx_bytes += msg_len;
        b->responses++;
        if (t <= b->t_end)
            b->window_done++;
        hist_record(&b->lat, t > t_start ? t - t_start : 0);
    }
}

/* Whether this response is one of the sample checked (--check-every). */
static int sampled(bench *b)
{
    if (!b->check || !b->o->check_every || b->responses % b->o->check_every)
        return 0;
    if (b->measuring)
        b->checked++;
    return 1;
}

static void count_result(bench *b, int right, unsigned k, size_t bytes)
{
    if (right) {
        if (b->measuring)
            b->ok++;
        if (!b->response_bytes)
            b->response_bytes = bytes;
    } else {
        note_error(b, E_WRONG, "a wrong result (variant %u)", k);
    }
}

/* A complete response of msg_len bytes is at the start of c->rx. */
static void on_response(bench *b, conn *c, size_t msg_len, uint64_t t)
{
    const httpc_resp *r = &c->resp;
    count_response(b, t, c->t_start, msg_len);
    if (r->status == 200) {
        int right = 1;
        if (sampled(b))
            right = check_body(b, &b->v[c->variant], c->rx + r->head_len, r->body_len,
                               r->infer_header_len);
        count_result(b, right, c->variant, r->body_len);
    } else {
        int kind = r->status == 503 ? E_BUSY : r->status >= 500 ? E_HTTP5XX : E_HTTP4XX;
        int bl = (int)(r->body_len < 160 ? r->body_len : 160);
        note_error(b, kind, "HTTP %d: %.*s", r->status, bl, c->rx + r->head_len);
    }
    c->state = C_IDLE;
    if (msg_len != c->rx_len) {
        note_error(b, E_PROTOCOL, "bytes after a response that nobody asked for");
        c->state = C_WAITING; /* so that conn_reset does not count it twice */
        b->in_flight++;
        conn_reset(b, c);
        return;
    }
    c->rx_len = 0;
    if (!r->keep_alive) {
        c->state = C_IDLE;
        close(c->fd);
        c->fd = -1;
        if (b->stopping)
            c->state = C_RETRY, c->retry_at = UINT64_MAX;
        else
            conn_open(b, c);
        return;
    }
    conn_idle(b, c);
}

/* Frames: one response frame of len bytes. 0, or -1 when c was reset. */
static int on_frame(bench *b, conn *c, const lnbin_response *f, size_t len, uint64_t t)
{
    const frame_response *r = &f->r;
    uint64_t k = f->h.id & ((1u << SLOT_BITS) - 1);
    slot *sl = k < b->o->pipeline ? &c->slots[k] : NULL;
    if (!sl || !sl->used || sl->id != f->h.id) {
        /* an ERROR frame for a header the server could not read has id 0 */
        if (r->status != LNS_OK)
            note_error(b, E_PROTOCOL, "%s for no request in flight (id %llu): %.*s",
                       lns_status_name(r->status), (unsigned long long)f->h.id,
                       (int)r->msg_len, r->msg);
        else
            note_error(b, E_PROTOCOL, "a response to id %llu, which is not in flight",
                       (unsigned long long)f->h.id);
        conn_reset(b, c);
        return -1;
    }
    sl->used = 0;
    c->free_slots[c->n_free++] = (unsigned)k;
    c->n_inflight--;
    count_response(b, t, sl->t_start, len);
    if (r->status == LNS_OK) {
        int right = f->h.opcode == FRAME_OP_INFER_RESP;
        if (right && sampled(b))
            right = check_frame(b, &b->v[sl->variant], r);
        count_result(b, right, sl->variant, len);
    } else {
        /* statuses are counted under their HTTP twin (frame.md 5) */
        int http = lns_status_http(r->status);
        int kind = r->status == LNS_EBUSY ? E_BUSY : http >= 500 ? E_HTTP5XX : E_HTTP4XX;
        note_error(b, kind, "%s: %.*s", lns_status_name(r->status), (int)r->msg_len, r->msg);
    }
    if (f->h.flags & FRAME_FLAG_CLOSE) { /* the server closes after this frame */
        if (c->n_inflight)
            note_error(b, E_IO, "the server closed a connection with %u requests in flight",
                       c->n_inflight);
        conn_reset(b, c);
        return -1;
    }
    return 0;
}

/* Grows c->rx so that at least 4 KiB are free; -1 (c reset) out of memory. */
static int rx_room(bench *b, conn *c)
{
    if (c->rx_cap - c->rx_len >= 4096)
        return 0;
    size_t cap = c->rx_cap * 2;
    char *nb = realloc(c->rx, cap);
    if (!nb) {
        note_error(b, E_IO, "out of memory");
        conn_reset(b, c);
        return -1;
    }
    c->rx = nb;
    c->rx_cap = cap;
    return 0;
}

/* One recv into c->rx, grown first: > 0 the bytes added, 0 the end of the
 * stream, or one of these. */
enum { RECV_AGAIN = -1, RECV_ERROR = -2 /* errno says why */, RECV_RESET = -3 /* c was reset */ };

static ssize_t recv_some(bench *b, conn *c)
{
    if (rx_room(b, c))
        return RECV_RESET;
    for (;;) {
        ssize_t n = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, 0);
        if (n >= 0) {
            c->rx_len += (size_t)n;
            return n;
        }
        if (errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? RECV_AGAIN : RECV_ERROR;
    }
}

/* Frames: reads what is there, answers every whole frame, then (closed
 * loop) sends the replacements in one write. */
static void frames_readable(bench *b, conn *c)
{
    for (;;) {
        ssize_t n = recv_some(b, c);
        if (n == RECV_RESET)
            return;
        if (n == RECV_AGAIN)
            break;
        if (n <= 0) {
            if (c->n_inflight)
                note_error(b, E_IO, "the server closed a connection with %u requests in flight%s%s",
                           c->n_inflight, n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
            conn_reset(b, c);
            return;
        }
        uint64_t t = now_ns();
        size_t off = 0;
        for (;;) {
            lnbin_response f;
            size_t k;
            int rc = lnbin_parse((const uint8_t *)c->rx + off, c->rx_len - off, &f, &k);
            if (rc < 0) {
                note_error(b, E_PROTOCOL, "a malformed response frame");
                conn_reset(b, c);
                return;
            }
            if (rc == 0)
                break;
            if (on_frame(b, c, &f, k, t))
                return;
            off += k;
        }
        if (off) {
            memmove(c->rx, c->rx + off, c->rx_len - off);
            c->rx_len -= off;
        }
        if (c->rx_len < c->rx_cap)
            break; /* a short read: the socket is drained */
    }
    if (!b->o->rate)
        frames_fill(b, c, now_ns());
    else if (c->n_free > 0)
        push_idle(b, c);
}

static void on_readable(bench *b, conn *c)
{
    if (b->frames) {
        frames_readable(b, c);
        return;
    }
    for (;;) {
        ssize_t n = recv_some(b, c);
        if (n == RECV_RESET || n == RECV_AGAIN)
            return;
        if (n <= 0) {
            if (c->state == C_WAITING || c->state == C_SENDING) {
                long rc = n == 0 ? httpc_parse_eof(&c->resp, c->rx, c->rx_len) : -1;
                if (rc > 0) { /* a body that ran to the end of the connection */
                    on_response(b, c, (size_t)rc, now_ns());
                    return;
                }
                note_error(b, E_IO, "the server closed a connection with a request in flight%s%s",
                           n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
            }
            conn_reset(b, c);
            return;
        }
        if (c->state != C_WAITING && c->state != C_SENDING) {
            note_error(b, E_PROTOCOL, "bytes from the server with no request in flight");
            conn_reset(b, c);
            return;
        }
        long rc = httpc_parse(&c->resp, c->rx, c->rx_len);
        if (rc < 0) {
            note_error(b, E_PROTOCOL, "malformed HTTP response (%s)",
                       rc == HTTPC_ETOOBIG ? "headers too long" : "framing");
            conn_reset(b, c);
            return;
        }
        if (rc > 0) {
            on_response(b, c, (size_t)rc, now_ns());
            return;
        }
        if (c->rx_len < c->rx_cap)
            return; /* a short read: the socket is drained, wait for the next event */
    }
}

static void on_event(bench *b, conn *c, uint32_t ev)
{
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            note_error(b, E_CONNECT, "connect: %s", strerror(err));
            epoll_ctl(b->ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            c->state = C_RETRY;
            c->retry_at = now_ns() + CONNECT_RETRY_NS;
            return;
        }
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        set_out(b, c, 0);
        b->connected = 1;
        conn_idle(b, c);
        return;
    }
    if (ev & EPOLLOUT) {
        if (b->frames && c->state == C_IDLE) {
            if (frames_flush(b, c))
                return;
        } else if (c->state == C_SENDING) {
            conn_send_more(b, c);
        }
    }
    if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && c->fd >= 0)
        on_readable(b, c);
}

/* The start of c's oldest request in flight; UINT64_MAX when none. */
static uint64_t oldest_start(const bench *b, const conn *c)
{
    if (!b->frames)
        return c->state == C_SENDING || c->state == C_WAITING ? c->t_start : UINT64_MAX;
    uint64_t t = UINT64_MAX;
    if (c->n_inflight)
        for (unsigned i = 0; i < b->o->pipeline; i++)
            if (c->slots[i].used && c->slots[i].t_start < t)
                t = c->slots[i].t_start;
    return t;
}

/* Retries refused connects and times out requests; a scan of every
 * connection, run every 50 ms. */
static void sweep(bench *b, uint64_t t)
{
    uint64_t limit = (uint64_t)(b->o->timeout_s * 1e9);
    for (unsigned i = 0; i < b->o->connections; i++) {
        conn *c = &b->c[i];
        uint64_t t0;
        if (c->state == C_RETRY && t >= c->retry_at) {
            conn_open(b, c);
        } else if ((t0 = oldest_start(b, c)) < t && t - t0 > limit) {
            note_error(b, E_TIMEOUT, "no response within %.3g s", b->o->timeout_s);
            conn_reset(b, c);
        }
    }
}

/* ---- the report --------------------------------------------------------- */

static uint64_t err_total(const bench *b, int with_busy)
{
    uint64_t n = 0;
    for (int k = 0; k < E_N; k++)
        if (with_busy || k != E_BUSY)
            n += b->err[k];
    return n;
}

static void progress(const bench *b, uint64_t t, uint64_t *last_t, uint64_t *last_n)
{
    double dt = (double)(t - *last_t) / 1e9;
    uint64_t n = b->responses;
    fprintf(stderr, "%7.1fs %s %10.0f req/s   p99 %8.3f ms   errors %llu%s\n",
            (double)(t - b->t0) / 1e9, b->measuring ? "    " : "warm",
            dt > 0 ? (double)(n - *last_n) / dt : 0.0,
            (double)hist_percentile(&b->lat, 99) / 1e6, (unsigned long long)err_total(b, 1),
            b->err[E_BUSY] ? " (busy counted)" : "");
    *last_t = t;
    *last_n = n;
}

static void report(const bench *b, double window_s)
{
    const bench_opts *o = b->o;
    double done = (double)(o->duration_s > 0 ? b->window_done : b->responses);
    double rps = window_s > 0 ? done / window_s : 0;
    double txm = window_s > 0 ? (double)b->tx_bytes / window_s / 1e6 : 0;
    double rxm = window_s > 0 ? (double)b->rx_bytes / window_s / 1e6 : 0;
    const double ps[] = {50, 90, 99, 99.9};
    uint64_t pv[4];
    for (int i = 0; i < 4; i++)
        pv[i] = hist_percentile(&b->lat, ps[i]);
    if (o->json) {
        printf("{\"protocol\":\"%s\",\"model\":\"%s\",\"rows\":%u,\"n\":%u,\"connections\":%u,"
               "\"pipeline\":%u,\"response_bytes\":%llu,\"rate\":%.17g,\"duration_s\":%.6f,\"requests\":%llu,\"ok\":%llu,"
               "\"req_s\":%.1f,\"rows_s\":%.1f,\"mb_s\":%.3f,\"tx_mb_s\":%.3f,\"rx_mb_s\":%.3f,"
               "\"latency_us\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,"
               "\"max\":%.3f,\"mean\":%.3f},\"checked\":%llu,\"wrong\":%llu,\"errors\":{",
               o->protocol, o->model, o->rows, o->n, o->connections, o->pipeline,
               (unsigned long long)b->response_bytes, o->rate, window_s,
               (unsigned long long)b->responses, (unsigned long long)b->ok, rps, rps * o->rows,
               txm + rxm, txm, rxm, (double)pv[0] / 1e3, (double)pv[1] / 1e3,
               (double)pv[2] / 1e3, (double)pv[3] / 1e3, (double)b->lat.max / 1e3,
               hist_mean(&b->lat) / 1e3, (unsigned long long)b->checked,
               (unsigned long long)b->err[E_WRONG]);
        for (int k = 0; k < E_N; k++)
            printf("%s\"%s\":%llu", k ? "," : "", ERR_NAME[k], (unsigned long long)b->err[k]);
        printf("},\"errors_total\":%llu,\"late_max\":%llu,\"client_cpu\":%.3f,\"seed\":%llu}\n",
               (unsigned long long)err_total(b, 1), (unsigned long long)b->late_max,
               b->client_cpu, (unsigned long long)o->seed);
        return;
    }
    printf("lnctl bench  %s  model %s  %u x %u rows  %u connections x %u in flight  %s\n",
           o->protocol, o->model, o->rows, o->n, o->connections, o->pipeline,
           o->rate ? "open loop" : "closed loop");
    if (o->rate)
        printf("rate         %.0f req/s scheduled; at most %llu requests were late at once\n",
               o->rate, (unsigned long long)b->late_max);
    printf("requests     %llu in %.2f s: %llu ok, %llu errors (%llu busy); %llu checked, %llu wrong\n",
           (unsigned long long)b->responses, window_s, (unsigned long long)b->ok,
           (unsigned long long)err_total(b, 1), (unsigned long long)b->err[E_BUSY],
           (unsigned long long)b->checked, (unsigned long long)b->err[E_WRONG]);
    printf("throughput   %.0f req/s   %.0f rows/s   %.1f MB/s (%.1f sent, %.1f received)\n", rps,
           rps * o->rows, txm + rxm, txm, rxm);
    printf("latency      p50 %.1f us   p90 %.1f us   p99 %.1f us   p99.9 %.1f us   max %.1f us"
           "   mean %.1f us\n",
           (double)pv[0] / 1e3, (double)pv[1] / 1e3, (double)pv[2] / 1e3, (double)pv[3] / 1e3,
           (double)b->lat.max / 1e3, hist_mean(&b->lat) / 1e3);
    printf("client cpu   %.0f %% of one core%s\n", 100 * b->client_cpu,
           b->client_cpu > 0.9 ? " (the load generator may be what sets the pace)" : "");
    printf("errors      ");
    for (int k = 0; k < E_N; k++)
        printf(" %s %llu", ERR_NAME[k], (unsigned long long)b->err[k]);
    printf("\n");
    if (b->first_error[0])
        printf("first error  %s\n", b->first_error);
}

/* ---- the loop ----------------------------------------------------------- */

int bench_run(const bench_opts *o)
{
    int status = 1;
    bench *b = calloc(1, sizeof *b);
    if (!b) {
        fprintf(stderr, "lnctl bench: out of memory\n");
        return 1;
    }
    b->o = o;
    b->ep = -1;
    hist_reset(&b->lat);
    b->frames = o->proto == BENCH_BINARY_TCP || o->proto == BENCH_BINARY_UNIX;
    b->check = o->check_every && (!strcmp(o->model, "layernorm") || !strcmp(o->model, "rmsnorm"));
    if (o->check_every && !b->check)
        fprintf(stderr, "lnctl bench: no reference for model %s (only the built-in layernorm "
                        "and rmsnorm): responses are checked for their status only\n",
                o->model);
    b->c = calloc(o->connections, sizeof *b->c);
    b->v = calloc(o->variants, sizeof *b->v);
    b->idle = calloc(o->connections, sizeof *b->idle);
    b->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!b->c || !b->v || !b->idle || b->ep < 0 || build_variants(b)) {
        fprintf(stderr, "lnctl bench: setup failed: %s\n", strerror(errno));
        goto out;
    }
    if (o->print_body) {
        fwrite(b->v[0].req + b->v[0].body_off, 1, b->v[0].req_len - b->v[0].body_off, stdout);
        status = fflush(stdout) ? 1 : 0;
        goto out;
    }
    for (unsigned i = 0; i < o->connections; i++) {
        conn *c = &b->c[i];
        c->fd = -1;
        c->rx_cap = RX_INITIAL;
        c->rx = malloc(RX_INITIAL);
        if (b->frames) {
            c->slots = calloc(o->pipeline, sizeof *c->slots);
            c->free_slots = calloc(o->pipeline, sizeof *c->free_slots);
        }
        if (!c->rx || (b->frames && (!c->slots || !c->free_slots))) {
            fprintf(stderr, "lnctl bench: out of memory\n");
            goto out;
        }
    }

    uint64_t warm_ns = (uint64_t)(o->warmup_s * 1e9);
    b->t0 = now_ns();
    b->t_meas = b->t0 + warm_ns;
    b->measuring = warm_ns == 0;
    b->cpu0_ns = cpu_ns();
    b->wall0_ns = b->measuring ? b->t0 : 0;
    b->t_end = o->duration_s > 0 ? b->t_meas + (uint64_t)(o->duration_s * 1e9) : UINT64_MAX;
    double period_ns = o->rate > 0 ? 1e9 / o->rate : 0;
    for (unsigned i = 0; i < o->connections; i++)
        conn_open(b, &b->c[i]);

    uint64_t next_tick = b->t0 + 1000000000ull, next_sweep = b->t0 + 50000000ull;
    uint64_t last_t = b->t0, last_n = 0, drain_until = 0, t_last_resp = b->t0;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (!b->measuring && t >= b->t_meas) {
            b->measuring = 1;
            b->cpu0_ns = cpu_ns();
            b->wall0_ns = t;
            last_n = 0;
            last_t = t;
        }
        if (!b->stopping && (t >= b->t_end || (o->requests && b->issued >= o->requests))) {
            b->stopping = 1;
            drain_until = t + (uint64_t)(o->timeout_s * 1e9);
        }
        /* a server that never answers a connect ends the run after --timeout,
         * even one bounded by --requests only */
        if (!b->stopping && !b->connected && t - b->t0 > (uint64_t)(o->timeout_s * 1e9)) {
            note_error(b, E_CONNECT, "no connection within %.3g s", o->timeout_s);
            b->stopping = 1;
            drain_until = t;
        }
        if (b->stopping && (b->in_flight == 0 || t >= drain_until))
            break;
        /* open loop: send what is due on idle connections */
        uint64_t wake = next_tick < next_sweep ? next_tick : next_sweep;
        if (period_ns > 0 && !b->stopping) {
            uint64_t due = (uint64_t)((double)(t - b->t0) / period_ns) + 1;
            if (o->requests && due > o->requests)
                due = o->requests;
            if (due > b->issued && due - b->issued > b->late_max && b->measuring)
                b->late_max = due - b->issued;
            conn *c;
            while (b->issued < due && may_issue(b) && (c = pop_idle(b)))
                conn_start(b, c, b->t0 + (uint64_t)((double)b->issued * period_ns));
            uint64_t next_due = b->t0 + (uint64_t)((double)b->issued * period_ns);
            if (b->issued >= due && next_due < wake)
                wake = next_due;
        }
        if (b->stopping && drain_until < wake)
            wake = drain_until;
        if (b->t_end > t && b->t_end < wake)
            wake = b->t_end;
        if (!b->measuring && b->t_meas < wake)
            wake = b->t_meas;
        struct timespec to = {0, 0};
        if (wake > t) {
            to.tv_sec = (time_t)((wake - t) / 1000000000ull);
            to.tv_nsec = (long)((wake - t) % 1000000000ull);
        }
        int n = epoll_pwait2(b->ep, evs, 256, &to, NULL);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "lnctl bench: epoll: %s\n", strerror(errno));
            goto out;
        }
        for (int i = 0; i < n; i++)
            on_event(b, &b->c[evs[i].data.u32], evs[i].events);
        if (n > 0)
            t_last_resp = now_ns();
        t = n > 0 ? t_last_resp : now_ns();
        if (t >= next_sweep) {
            sweep(b, t);
            next_sweep = t + 50000000ull;
        }
        if (t >= next_tick) {
            if (!o->quiet)
                progress(b, t, &last_t, &last_n);
            next_tick += 1000000000ull;
        }
    }
    uint64_t t_fin = now_ns();
    if (b->wall0_ns && t_fin > b->wall0_ns)
        b->client_cpu = (double)(cpu_ns() - b->cpu0_ns) / (double)(t_fin - b->wall0_ns);
    for (unsigned i = 0; i < o->connections; i++) {
        unsigned lost = b->frames ? b->c[i].n_inflight
                                  : b->c[i].state == C_SENDING || b->c[i].state == C_WAITING;
        for (unsigned k = 0; k < lost; k++)
            note_error(b, E_TIMEOUT, "no response by the end of the run");
    }
    double window_s;
    if (o->duration_s > 0)
        window_s = o->duration_s;
    else
        window_s = (double)(t_fin - b->t_meas) / 1e9;
    report(b, window_s);
    if (b->responses == 0)
        fprintf(stderr, "lnctl bench: no responses (%s)\n",
                b->first_error[0] ? b->first_error : "none came");
    status = (b->responses == 0 || err_total(b, 0) > 0) ? 1 : 0;
out:
    if (b->c)
        for (unsigned i = 0; i < o->connections; i++) {
            if (b->c[i].fd >= 0)
                close(b->c[i].fd);
            free(b->c[i].rx);
            free(b->c[i].tx);
            free(b->c[i].slots);
            free(b->c[i].free_slots);
        }
    if (b->v)
        for (unsigned k = 0; k < o->variants; k++) {
            free(b->v[k].req);
            free(b->v[k].x);
            free(b->v[k].y_ref);
            free(b->v[k].good);
        }
    if (b->ep >= 0)
        close(b->ep);
    free(b->c);
    free(b->v);
    free(b->idle);
    free(b);
    return status;
}
