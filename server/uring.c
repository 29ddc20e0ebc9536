/*
 * uring.c -- see uring.h. One thread, one ring.
 *
 * Receiving: multishot recv with provided buffers (a buffer ring registered
 * by hand: liburing 2.3 has no io_uring_setup_buf_ring). A received buffer
 * is parsed in place when the connection holds no partial frame, and what
 * is left of it (a frame cut in two) is copied into the connection's own
 * buffer; the provided buffer goes back to the ring before the next CQE is
 * looked at, so no pointer into it is ever kept. Kernels without buffer
 * rings (< 5.19) or multishot recv (< 6.0) get plain recv into the
 * connection's buffer, one at a time; so does LNSERVE_URING_PLAIN=1 (tests).
 *
 * Sending: one sendmsg in flight per connection, gathering up to
 * SEND_IOV_MAX queued responses; a short send resubmits the rest.
 *
 * Every SQE is prepared in one place, the end of a loop iteration
 * (sync_conn, sync_server): handlers only change state and mark the
 * connection dirty. So a full submission queue is handled once: submit and
 * retry, and if that still finds no room, the connection stays dirty and
 * the loop comes back in 1 ms.
 *
 * Completions from workers: a lock-free MPSC list (push: CAS on the head;
 * the loop takes the whole list with one exchange), and an eventfd written
 * on the empty -> non-empty transition only, which the ring reads. Not
 * IORING_OP_MSG_RING (liburing 2.3 has it, kernel 5.18+): workers have no
 * ring of their own, and an eventfd works on every kernel this code runs on.
 */
#include "uring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../proto/frame.h"
#include "log.h"
#include "metrics.h"
#include "workers.h"

#define RING_ENTRIES 1024
#define BUF_COUNT 1024 /* provided buffers; a power of two */
#define BUF_SIZE 16384
#define BUF_GROUP 1
#define SEND_IOV_MAX 64
/* Reading pauses while a connection has this many requests computing or
 * this many response bytes unsent: a client that pipelines without reading
 * cannot make the server hold unbounded memory. */
#define CONN_MAX_INFLIGHT 256
#define CONN_OUT_HIGH (1u << 20)
/* While paused, a connection's unparsed input may grow to this much before
 * its recv is cancelled (the kernel then applies TCP flow control). */
#define CONN_IN_PAUSED_MAX (256u << 10)
/* While draining, a connection that received bytes this recently is not
 * closed yet, though idle with nothing unread: the client may have sent
 * more that is still in its own kernel's send queue, waiting for the
 * window this server's reads opened (a window update can wait for the
 * delayed-ACK timer, up to 40 ms). test_binary's sigterm_answers_what_
 * was_sent lost the last 2-4 of 40 pipelined frames in 2 of 12 runs
 * without it, 0 of 50 with it. */
#define DRAIN_QUIET_NS (50u * 1000 * 1000)
/* Same split as http.c: a job smaller than this is not worth a second
 * worker. */
#define JOB_MIN_ELEMS 65536

/* user_data: a pointer (malloc'd, so 16-byte aligned) with a tag in the
 * low bits. */
enum ud_tag { UD_NONE = 0, UD_EVENTFD, UD_ACCEPT, UD_RECV, UD_SEND };
#define UD_TAG_MASK 7u
#define UD(p, tag) ((uint64_t)(uintptr_t)(p) | (tag))

typedef struct outbuf outbuf;
struct outbuf {
    outbuf *next;
    size_t len, off; /* bytes in data; bytes already sent */
    uint8_t data[];
};

typedef struct conn conn;
typedef struct bin_req bin_req;

typedef struct listener {
    uring_server *s;
    int fd;
    int is_unix;
    int armed;     /* an accept is in the kernel */
    int multishot; /* 0 after the kernel refused multishot accept */
} listener;

struct conn {
    uring_server *s;
    int fd;
    int refs; /* loop thread only: list + ops in the kernel + requests + dirty */
    unsigned recv_armed : 1, recv_cancelled : 1, sending : 1, eof : 1, dead : 1, closed : 1,
        close_after : 1, dirty : 1;
    uint8_t *in; /* unparsed input: a partial frame, or frames paused */
    size_t in_len, in_cap;
    outbuf *out_head, *out_tail;
    size_t out_bytes;
    size_t n_inflight;
    uint64_t last_rx_ns; /* when a recv last brought bytes (metrics_now_ns) */
    struct msghdr msg;
    struct iovec iov[SEND_IOV_MAX];
    conn *prev, *next; /* open connections */
    conn *dirty_next;
};

typedef struct bin_job {
    job base;
    bin_req *r;
    size_t row0, row1;
} bin_job;

struct bin_req {
    bin_req *next; /* the completion list; written by the last worker */
    uring_server *s;
    conn *c; /* the loop's; workers never dereference it */
    uint64_t id;
    const model *m;
    ln_params params;
    uint32_t rows, cols;
    uint8_t mask;
    float *x;    /* [rows * cols], normalized in place */
    float *diag; /* mean [B*G], rstd [B*G], radius [B] */
    outbuf *out; /* built by the last worker; NULL if that failed */
    int model;   /* metrics index */
    size_t bytes_in;
    uint64_t t_start_ns; /* its frame handled (loop) */
    uint64_t decode_ns;  /* checks and the copy into x (loop) */
    uint64_t queue_ns;   /* written by the worker running jobs[0] */
    atomic_uint_fast64_t compute_ns; /* summed over the jobs */
    atomic_size_t jobs_left;
    size_t n_jobs;
    bin_job jobs[];
};

struct uring_server {
    struct io_uring ring;
    const model_table *models;
    queue *q;
    metrics *mx; /* main's */
    int n_workers;
    frame_limits lim;
    size_t max_elements;
    int max_connections;
    int port;
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    listener lis[2];
    int n_lis;
    int efd;
    uint64_t efd_value; /* the eventfd read's target */
    int efd_armed;
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    int multishot_recv; /* provided buffers + multishot recv in use */
    pthread_t thread;
    int thread_started;

    /* Completed requests, pushed by workers (release CAS), taken by the
     * loop (acquire exchange). */
    _Atomic(bin_req *) done;
    /* Workers between their push and their eventfd write: uring_stop waits
     * for 0 before closing the eventfd. */
    atomic_int pushing;
    /* Set by uring_drain (release), read by the loop (acquire). */
    atomic_int draining;
    atomic_int drain_timeout_s;
    int cut; /* connections cut by the drain timeout; read after join */

    /* Loop thread only. */
    conn *conns;
    size_t n_conns; /* open */
    size_t n_alive; /* allocated (open, or closed with references left) */
    size_t inflight;
    conn *dirty;
    int drain_seen;
    struct timespec drain_start;
    int accept_backoff; /* EMFILE: stop accepting until a connection closes */
};

/* ---- helpers ------------------------------------------------------------ */

static struct io_uring_sqe *sqe_get(uring_server *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (!sqe) {
        /* Full: hand what is queued to the kernel and retry once. */
        io_uring_submit(&s->ring);
        sqe = io_uring_get_sqe(&s->ring);
    }
    return sqe;
}

static void mark_dirty(conn *c)
{
    if (c->dirty)
        return;
    c->dirty = 1;
    c->refs++; /* the dirty list's reference */
    c->dirty_next = c->s->dirty;
    c->s->dirty = c;
}

static void conn_free(conn *c)
{
    outbuf *o = c->out_head;
    while (o) {
        outbuf *n = o->next;
        free(o);
        o = n;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->s->n_alive--;
    free(c->in);
    free(c);
}

static void conn_unref(conn *c)
{
    if (--c->refs == 0)
        conn_free(c);
}

/* Closes the connection for good: the kernel ops in flight end (shutdown
 * wakes them), queued output is dropped, requests computing finish into
 * the void. The fd is closed when the last reference goes, so it cannot
 * be reused under an op still in the kernel. */
static void conn_close(conn *c)
{
    if (c->closed)
        return;
    uring_server *s = c->s;
    c->closed = 1;
    shutdown(c->fd, SHUT_RDWR);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    s->accept_backoff = 0;
    outbuf *o = c->out_head;
    while (o) {
        outbuf *n = o->next;
        free(o);
        o = n;
    }
    c->out_head = c->out_tail = NULL;
    c->out_bytes = 0;
    c->in_len = 0;
    conn_unref(c); /* the open list's reference */
}

static int conn_paused(const conn *c)
{
    return c->n_inflight >= CONN_MAX_INFLIGHT || c->out_bytes >= CONN_OUT_HIGH;
}

static int draining(const uring_server *s)
{
    return s->drain_seen;
}

/* Bytes the client sent that the kernel holds for c and no recv has
 * taken yet. */
static int conn_unread(const conn *c)
{
    int n = 0;
    return ioctl(c->fd, FIONREAD, &n) == 0 && n > 0;
}

/* Closes c when it has nothing left to do (sync_conn only). While
 * draining, an idle connection is closed only once nothing the client sent
 * can still be on its way in: bytes unread in its socket stay until the
 * recv brings them in and they are answered (shutting down, then closed),
 * and while completions wait in the ring (one may be a recv holding this
 * connection's bytes) c is looked at again after them, and so it is while
 * it received bytes in the last DRAIN_QUIET_NS. Closing it earlier would
 * reset a request the client had already sent. The drain timeout bounds
 * the wait. */
static void conn_maybe_close(conn *c)
{
    if (c->closed)
        return;
    if (c->dead) {
        conn_close(c);
        return;
    }
    int idle = c->n_inflight == 0 && !c->out_head && !c->sending;
    if (!idle)
        return;
    if (c->eof || c->close_after) {
        conn_close(c);
    } else if (draining(c->s)) {
        if (conn_unread(c))
            return; /* the armed recv brings it in: c gets dirty again */
        if (io_uring_cq_ready(&c->s->ring) ||
            metrics_now_ns() - c->last_rx_ns < DRAIN_QUIET_NS) {
            mark_dirty(c); /* the loop wakes every 10 ms while draining */
            return;
        }
        conn_close(c);
    }
}

static void out_push(conn *c, outbuf *o)
{
    if (c->closed || c->dead) {
        free(o);
        return;
    }
    o->next = NULL;
    if (c->out_tail)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    c->out_bytes += o->len;
    mark_dirty(c);
}

static outbuf *outbuf_new(size_t len)
{
    outbuf *o = malloc(sizeof(*o) + len);
    if (o) {
        o->len = len;
        o->off = 0;
    }
    return o;
}

static void reply_status(conn *c, unsigned opcode, unsigned flags, uint64_t id, lns_status st,
                         const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Queues a status-only response. */
static void reply_status(conn *c, unsigned opcode, unsigned flags, uint64_t id, lns_status st,
                         const char *fmt, ...)
{
    char msg[FRAME_MSG_MAX] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    outbuf *o = outbuf_new(frame_status_bytes(strlen(msg)));
    if (!o) {
        c->dead = 1; /* cannot even say so: give up on this client */
        return;
    }
    o->len = frame_encode_status(o->data, opcode, flags, id, st, msg);
    out_push(c, o);
}

/* ---- infer: loop side ---------------------------------------------------- */

static void bin_finish(bin_req *r, job_times *t);

static void bin_job_run(job *j, job_times *t)
{
    bin_job *bj = (bin_job *)j;
    bin_req *r = bj->r;
    size_t N = r->params.n, G = r->params.groups, B = r->rows;
    ln_diag d = {
        .mean = r->diag + bj->row0 * G,
        .rstd = r->diag + B * G + bj->row0 * G,
        .radius = r->diag + 2 * B * G + bj->row0,
    };
    float *x = r->x + bj->row0 * N;
    uint64_t t0 = metrics_now_ns();
    if (bj == &r->jobs[0])
        r->queue_ns = t0 - bj->base.queued_ns;
    ln_rows(&r->params, x, x, bj->row1 - bj->row0, &d);
    uint64_t dt = metrics_now_ns() - t0;
    atomic_fetch_add_explicit(&r->compute_ns, dt, memory_order_relaxed);
    t->infer_ns += dt;
    /* acq_rel: each job's writes to x and diag are released to the last
     * worker, which acquires them all before encoding. */
    if (atomic_fetch_sub_explicit(&r->jobs_left, 1, memory_order_acq_rel) == 1)
        bin_finish(r, t);
}

/* On the worker that finished the last job: encode, then hand r back to
 * the loop. Nothing may touch r after the push. */
static void bin_finish(bin_req *r, job_times *t)
{
    size_t B = r->rows, G = r->params.groups;
    frame_infer_result res = {
        .rows = r->rows,
        .cols = r->cols,
        .groups = (uint32_t)G,
        .mask = r->mask,
        .y = r->x,
        .mean = r->diag,
        .rstd = r->diag + B * G,
        .radius = r->diag + 2 * B * G,
    };
    /* The size was checked in bin_infer before anything was queued. */
    uint64_t t0 = metrics_now_ns();
    size_t n = frame_infer_response_bytes(res.rows, res.cols, res.groups, res.mask);
    r->out = outbuf_new(n);
    if (r->out)
        frame_encode_infer_response(r->out->data, 0, r->id, &res);
    uint64_t encode_ns = metrics_now_ns() - t0;
    t->output_ns += encode_ns;

    uring_server *s = r->s;
    if (r->out)
        metrics_infer(s->mx, r->model,
                      &(metrics_infer_sample){
                          .rows = r->rows,
                          .bytes_in = r->bytes_in,
                          .bytes_out = n,
                          .decode_ns = r->decode_ns,
                          .queue_ns = r->queue_ns,
                          .compute_ns = atomic_load_explicit(&r->compute_ns, memory_order_relaxed),
                          .encode_ns = encode_ns,
                      });
    /* Counted before the push: once r is on the list the loop may finish,
     * and uring_stop must not close the eventfd under our write. */
    atomic_fetch_add_explicit(&s->pushing, 1, memory_order_relaxed);
    bin_req *head = atomic_load_explicit(&s->done, memory_order_relaxed);
    do {
        r->next = head;
        /* release: r's contents (out, x) pair with the loop's acquire
         * exchange in take_done. */
    } while (!atomic_compare_exchange_weak_explicit(&s->done, &head, r, memory_order_release,
                                                    memory_order_relaxed));
    if (!head) /* empty -> non-empty: the loop may be asleep */
        eventfd_write(s->efd, 1);
    /* release: pairs with the acquire load in uring_stop. */
    atomic_fetch_sub_explicit(&s->pushing, 1, memory_order_release);
}

/* A request came back from the workers. */
static void bin_done(uring_server *s, bin_req *r)
{
    conn *c = r->c;
    c->n_inflight--;
    s->inflight--;
    /* As HTTP counts a response sent: code 0 when the client left first. */
    unsigned code = (c->closed || c->dead) ? 0 : r->out ? 200 : (unsigned)lns_status_http(LNS_ENOMEM);
    metrics_request(s->mx, r->model, EP_INFER, MP_BINARY, code, metrics_now_ns() - r->t_start_ns);
    if (r->out)
        out_push(c, r->out);
    else if (!c->closed)
        reply_status(c, FRAME_OP_INFER_RESP, 0, r->id, LNS_ENOMEM,
                     "out of memory building the response");
    free(r);
    mark_dirty(c); /* flush; maybe unpause; maybe close */
    conn_unref(c); /* the request's reference */
}

static void take_done(uring_server *s)
{
    /* acquire: pairs with the release CAS in bin_finish. */
    bin_req *list = atomic_exchange_explicit(&s->done, NULL, memory_order_acquire);
    bin_req *fifo = NULL;
    while (list) { /* the list is newest first: reverse it */
        bin_req *n = list->next;
        list->next = fifo;
        fifo = list;
        list = n;
    }
    while (fifo) {
        bin_req *n = fifo->next;
        bin_done(s, fifo);
        fifo = n;
    }
}

/* Starts an INFER: queues its jobs and returns LNS_OK, or answers it at
 * once and returns the status sent. *model_idx: its metrics index, or -1. */
static lns_status bin_infer_start(conn *c, const frame_header *h, const uint8_t *body,
                                  uint64_t t0, int *model_idx)
{
    uring_server *s = c->s;
    char msg[FRAME_MSG_MAX];
    frame_infer fi;
    const unsigned op = FRAME_OP_INFER_RESP;
    lns_status st = frame_decode_infer(body, h->body_len, &s->lim, &fi, msg);
    if (st != LNS_OK) {
        reply_status(c, op, 0, h->id, st, "%s", msg);
        return st;
    }
    if (draining(s)) {
        reply_status(c, op, FRAME_FLAG_CLOSE, h->id, LNS_ESHUTDOWN,
                     "server shutting down: retry on another replica");
        return LNS_ESHUTDOWN;
    }
    const model *m = models_find(s->models, fi.name, fi.name_len);
    if (m)
        *model_idx = (int)(m - s->models->models);
    if (!m) {
        reply_status(c, op, 0, h->id, LNS_ENOTFOUND, "infer.name: no model named '%.*s'",
                     (int)fi.name_len, fi.name);
        return LNS_ENOTFOUND;
    }
    size_t B = fi.rows, N = fi.cols, G = m->params.groups;
    if (m->info.dim && N != m->info.dim) {
        reply_status(c, op, 0, h->id, LNS_EBADREQ,
                     "infer.cols: %zu, but model '%s' has dim %zu", N, m->name, m->info.dim);
        return LNS_EBADREQ;
    }
    if (N % G) {
        reply_status(c, op, 0, h->id, LNS_EBADREQ,
                     "infer.cols: %zu is not a multiple of model '%s' groups %zu", N, m->name, G);
        return LNS_EBADREQ;
    }
    if (B * N > s->max_elements) { /* B, N < 2^32 each: no overflow */
        reply_status(c, op, 0, h->id, LNS_EBADREQ,
                     "infer: %zu x %zu = %zu elements is over the limit of %zu "
                     "(server.max_elements)", B, N, B * N, s->max_elements);
        return LNS_EBADREQ;
    }
    if (frame_infer_response_bytes(fi.rows, fi.cols, (uint32_t)G, fi.mask) == 0) {
        reply_status(c, op, 0, h->id, LNS_ETOOLARGE,
                     "infer: the response for %zu x %zu would be over 4 GiB", B, N);
        return LNS_ETOOLARGE;
    }
    size_t n_jobs = (B * N) / JOB_MIN_ELEMS;
    if (n_jobs > (size_t)s->n_workers)
        n_jobs = (size_t)s->n_workers;
    if (n_jobs > B)
        n_jobs = B;
    if (n_jobs == 0)
        n_jobs = 1;
    /* One block: the request, its jobs, then (64-byte aligned) the rows
     * and the diagnostics. */
    size_t head = (sizeof(bin_req) + n_jobs * sizeof(bin_job) + 63) & ~(size_t)63;
    size_t n_floats = B * N + (2 * G + 1) * B;
    bin_req *r = malloc(head + n_floats * sizeof(float));
    if (!r) {
        reply_status(c, op, 0, h->id, LNS_ENOMEM, "out of memory for %zu x %zu", B, N);
        return LNS_ENOMEM;
    }
    r->x = (float *)((char *)r + head);
    st = frame_infer_copy_f32(&fi, r->x, msg);
    if (st != LNS_OK) {
        free(r);
        reply_status(c, op, 0, h->id, st, "%s", msg);
        return st;
    }
    r->next = NULL;
    r->s = s;
    r->c = c;
    r->id = h->id;
    r->m = m;
    r->params = m->params;
    r->params.n = N;
    r->rows = fi.rows;
    r->cols = fi.cols;
    r->mask = fi.mask;
    r->diag = r->x + B * N;
    r->out = NULL;
    r->n_jobs = n_jobs;
    r->model = *model_idx;
    r->t_start_ns = t0;
    r->bytes_in = FRAME_HEADER_BYTES + h->body_len;
    r->queue_ns = 0;
    atomic_init(&r->compute_ns, 0);
    r->decode_ns = metrics_now_ns() - t0; /* frame checks and the copy into r->x */
    atomic_init(&r->jobs_left, n_jobs);
    for (size_t i = 0; i < n_jobs; i++) {
        size_t row0 = B * i / n_jobs, row1 = B * (i + 1) / n_jobs;
        r->jobs[i] = (bin_job){
            .base = {.run = bin_job_run,
                     .n_rows = row1 - row0,
                     .model = r->model,
                     .input_ns = i == 0 ? r->decode_ns : 0},
            .r = r,
            .row0 = row0,
            .row1 = row1,
        };
    }
    if (queue_reserve(s->q, n_jobs) != 0) {
        free(r);
        reply_status(c, op, 0, h->id, LNS_EBUSY,
                     "server busy: queue full (%zu jobs queued), retry later", queue_depth(s->q));
        return LNS_EBUSY;
    }
    c->n_inflight++;
    s->inflight++;
    c->refs++; /* the request's; dropped in bin_done */
    uint64_t t_push = metrics_now_ns();
    for (size_t i = 0; i < n_jobs; i++)
        r->jobs[i].base.queued_ns = t_push;
    /* The queue's release/acquire publishes r to the workers. After the
     * last push r belongs to them: don't touch it. */
    for (size_t i = 0; i < n_jobs; i++)
        queue_push(s->q, &r->jobs[i].base, r->jobs[i].base.n_rows);
    return LNS_OK;
}

/* An INFER frame: started, or answered at once; either way counted. */
static void bin_infer(conn *c, const frame_header *h, const uint8_t *body)
{
    uint64_t t0 = metrics_now_ns();
    int idx = -1;
    lns_status st = bin_infer_start(c, h, body, t0, &idx);
    if (st != LNS_OK) /* answered: a refused request; those queued count in bin_done */
        metrics_request(c->s->mx, idx, EP_INFER, MP_BINARY, (unsigned)lns_status_http(st),
                        metrics_now_ns() - t0);
}

static void bin_metadata(conn *c, const frame_header *h, const uint8_t *body)
{
    uring_server *s = c->s;
    char msg[FRAME_MSG_MAX];
    const char *name;
    size_t name_len;
    const unsigned op = FRAME_OP_METADATA_RESP;
    uint64_t t0 = metrics_now_ns();
    lns_status st = frame_decode_metadata(body, h->body_len, &s->lim, &name, &name_len, msg);
    if (st != LNS_OK) {
        reply_status(c, op, 0, h->id, st, "%s", msg);
        metrics_request(s->mx, -1, EP_MODEL_META, MP_BINARY, (unsigned)lns_status_http(st),
                        metrics_now_ns() - t0);
        return;
    }
    const model *m = models_find(s->models, name, name_len);
    if (!m) {
        reply_status(c, op, 0, h->id, LNS_ENOTFOUND, "metadata.name: no model named '%.*s'",
                     (int)name_len, name);
        metrics_request(s->mx, -1, EP_MODEL_META, MP_BINARY,
                        (unsigned)lns_status_http(LNS_ENOTFOUND), metrics_now_ns() - t0);
        return;
    }
    frame_model_meta meta = {
        .kind = m->params.kind == LN_KIND_RMSNORM ? 1 : 0,
        .dtypes = 1u << (FRAME_DTYPE_FP32 - 1),
        .dim = (uint32_t)m->info.dim,
        .groups = (uint32_t)m->params.groups,
        .max_rows = s->lim.max_rows,
        .max_cols = m->info.dim ? (uint32_t)m->info.dim : s->lim.max_cols,
        .eps = m->params.eps,
    };
    outbuf *o = outbuf_new(FRAME_HEADER_BYTES + FRAME_STATUS_BYTES + FRAME_META_RESP_BYTES);
    if (!o) {
        c->dead = 1;
        return;
    }
    o->len = frame_encode_metadata_response(o->data, 0, h->id, &meta);
    out_push(c, o);
    metrics_request(s->mx, (int)(m - s->models->models), EP_MODEL_META, MP_BINARY, 200,
                    metrics_now_ns() - t0);
}

static void handle_frame(conn *c, const frame_header *h, const uint8_t *body)
{
    unsigned op = h->opcode;
    int is_request = op == FRAME_OP_PING || op == FRAME_OP_METADATA || op == FRAME_OP_INFER;
    if (!is_request) {
        reply_status(c, FRAME_OP_ERROR, 0, h->id, LNS_EBADREQ,
                     "opcode 0x%02x is not a request (expected 1 PING, 2 METADATA, 3 INFER)", op);
        metrics_request(c->s->mx, -1, EP_OTHER, MP_BINARY, 400, 0);
        return;
    }
    if (h->flags & ~FRAME_FLAGS_KNOWN) {
        reply_status(c, op | FRAME_OP_RESPONSE, 0, h->id, LNS_EBADREQ,
                     "flags 0x%04x: unknown bits set (expected only 0x0001 CLOSE)", h->flags);
        metrics_request(c->s->mx, -1, EP_OTHER, MP_BINARY, 400, 0);
        return;
    }
    if (h->flags & FRAME_FLAG_CLOSE)
        c->close_after = 1; /* answer this one, read no further */
    switch (op) {
    case FRAME_OP_PING:
        if (h->body_len)
            reply_status(c, FRAME_OP_PONG, 0, h->id, LNS_EBADREQ,
                         "ping: body of %u bytes (expected none)", h->body_len);
        else
            reply_status(c, FRAME_OP_PONG, 0, h->id, LNS_OK, NULL);
        metrics_request(c->s->mx, -1, EP_PING, MP_BINARY, h->body_len ? 400 : 200, 0);
        break;
    case FRAME_OP_METADATA:
        bin_metadata(c, h, body);
        break;
    case FRAME_OP_INFER:
        bin_infer(c, h, body);
        break;
    }
}

/* Parses whole frames from p[0..n); returns the bytes consumed. Stops at a
 * partial frame, a pause, or anything that ends reading. */
static size_t parse(conn *c, const uint8_t *p, size_t n)
{
    size_t used = 0;
    while (!c->closed && !c->dead && !c->close_after && !conn_paused(c)) {
        frame_header h;
        size_t k;
        int rc = frame_scan(p + used, n - used, &c->s->lim, &h, &k);
        if (rc == FRAME_NEED_MORE)
            break;
        if (rc < 0) {
            /* The stream cannot be re-synchronized: say why, then close. */
            reply_status(c, FRAME_OP_ERROR, FRAME_FLAG_CLOSE,
                         (rc == FRAME_ETOOBIG || rc == FRAME_ERESERVED) ? h.id : 0,
                         rc == FRAME_ETOOBIG ? LNS_ETOOLARGE : LNS_EBADREQ, "%s",
                         frame_strerror(rc));
            metrics_request(c->s->mx, -1, EP_OTHER, MP_BINARY,
                            rc == FRAME_ETOOBIG ? 413 : 400, 0);
            c->close_after = 1;
            return n;
        }
        handle_frame(c, &h, p + used + FRAME_HEADER_BYTES);
        used += k;
    }
    return used;
}

/* Parses c->in. In plain-recv mode only while no recv is in the kernel:
 * that recv writes into c->in. */
static void parse_in(conn *c)
{
    if (!c->in_len || (c->recv_armed && !c->s->multishot_recv))
        return;
    size_t used = parse(c, c->in, c->in_len);
    if (c->close_after)
        used = c->in_len; /* nothing after a CLOSE or a bad header is read */
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
}

static int in_reserve(conn *c, size_t extra)
{
    if (c->in_cap - c->in_len >= extra)
        return 0;
    size_t cap = c->in_cap ? c->in_cap : BUF_SIZE;
    while (cap - c->in_len < extra)
        cap *= 2;
    uint8_t *nb = realloc(c->in, cap);
    if (!nb)
        return -1;
    c->in = nb;
    c->in_cap = cap;
    return 0;
}

/* Bytes from a provided buffer. Parsed in place when nothing is pending;
 * the rest is copied. */
static void on_data(conn *c, const uint8_t *p, size_t n)
{
    if (c->closed || c->close_after)
        return;
    size_t had = c->in_len, used = 0;
    if (had == 0)
        used = parse(c, p, n);
    if (used < n && !c->close_after && !c->closed) {
        if (in_reserve(c, n - used) != 0) {
            c->dead = 1;
            return;
        }
        memcpy(c->in + c->in_len, p + used, n - used);
        c->in_len += n - used;
        if (had) /* completes the partial frame that was waiting */
            parse_in(c);
    }
}

/* ---- SQE preparation (end of an iteration) ------------------------------- */

static int want_recv(const conn *c)
{
    if (c->closed || c->dead || c->eof || c->close_after)
        return 0;
    if (!c->s->multishot_recv) /* plain recv writes into c->in: not while paused */
        return !conn_paused(c);
    return !(conn_paused(c) && c->in_len >= CONN_IN_PAUSED_MAX);
}

/* 0, or -1 when the SQ had no room (c stays dirty). */
static int arm_recv(conn *c)
{
    uring_server *s = c->s;
    if (!s->multishot_recv && in_reserve(c, BUF_SIZE) != 0) {
        c->dead = 1;
        return 0;
    }
    struct io_uring_sqe *sqe = sqe_get(s);
    if (!sqe)
        return -1;
    if (s->multishot_recv) {
        io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BUF_GROUP;
    } else {
        io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    }
    io_uring_sqe_set_data64(sqe, UD(c, UD_RECV));
    c->recv_armed = 1;
    c->recv_cancelled = 0;
    c->refs++; /* the recv's; dropped on its last CQE */
    return 0;
}

static int cancel_recv(conn *c)
{
    struct io_uring_sqe *sqe = sqe_get(c->s);
    if (!sqe)
        return -1;
    io_uring_prep_cancel64(sqe, UD(c, UD_RECV), 0);
    io_uring_sqe_set_data64(sqe, UD_NONE);
    c->recv_cancelled = 1;
    return 0;
}

static int arm_send(conn *c)
{
    int n = 0;
    for (outbuf *o = c->out_head; o && n < SEND_IOV_MAX; o = o->next, n++) {
        c->iov[n].iov_base = o->data + o->off;
        c->iov[n].iov_len = o->len - o->off;
    }
    struct io_uring_sqe *sqe = sqe_get(c->s);
    if (!sqe)
        return -1;
    memset(&c->msg, 0, sizeof c->msg);
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = (size_t)n;
    io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, UD(c, UD_SEND));
    c->sending = 1;
    c->refs++; /* the send's */
    return 0;
}

/* Brings c's kernel ops in line with its state. -1: no SQE, retry later. */
static int sync_conn(conn *c)
{
    if (!c->closed && !conn_paused(c) && c->in_len)
        parse_in(c);
    conn_maybe_close(c);
    if (c->closed)
        return 0;
    if (!c->sending && c->out_head && arm_send(c) != 0)
        return -1;
    if (want_recv(c)) {
        if (!c->recv_armed && arm_recv(c) != 0)
            return -1;
    } else if (c->recv_armed && !c->recv_cancelled && c->s->multishot_recv && !c->eof) {
        if (cancel_recv(c) != 0)
            return -1;
    }
    if (c->dead)
        conn_close(c);
    return 0;
}

static void arm_accept(uring_server *s, listener *l)
{
    struct io_uring_sqe *sqe = sqe_get(s);
    if (!sqe)
        return;
    if (l->multishot)
        io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, UD(l, UD_ACCEPT));
    l->armed = 1;
}

/* Returns 1 when something is still waiting for an SQE. */
static int sync_all(uring_server *s)
{
    int pending = 0;
    conn *list = s->dirty;
    s->dirty = NULL;
    while (list) {
        conn *c = list;
        list = c->dirty_next;
        c->dirty = 0;
        if (sync_conn(c) != 0) {
            mark_dirty(c); /* keep it for the next round */
            pending = 1;
        }
        conn_unref(c); /* the dirty list's reference */
    }
    if (!s->efd_armed) {
        struct io_uring_sqe *sqe = sqe_get(s);
        if (sqe) {
            io_uring_prep_read(sqe, s->efd, &s->efd_value, sizeof s->efd_value, 0);
            io_uring_sqe_set_data64(sqe, UD(s, UD_EVENTFD));
            s->efd_armed = 1;
        } else {
            pending = 1;
        }
    }
    for (int i = 0; i < s->n_lis; i++) {
        listener *l = &s->lis[i];
        if (l->fd < 0 || l->armed)
            continue;
        if (draining(s)) {
            close(l->fd);
            l->fd = -1;
            continue;
        }
        if (s->accept_backoff)
            continue;
        arm_accept(s, l);
        pending |= !l->armed;
    }
    return pending;
}

/* ---- CQEs ---------------------------------------------------------------- */

static void on_accept(uring_server *s, listener *l, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        l->armed = 0;
    int fd = cqe->res;
    if (fd < 0) {
        if (fd == -EINVAL && l->multishot) {
            log_msg(LOG_WARN, "binary: kernel lacks multishot accept; accepting one at a time");
            l->multishot = 0;
        } else if (fd == -EMFILE || fd == -ENFILE) {
            log_msg(LOG_WARN, "binary: accept: %s; pausing until a connection closes",
                    strerror(-fd));
            s->accept_backoff = 1;
        } else if (fd != -ECANCELED && fd != -EINTR && fd != -ECONNABORTED) {
            log_msg(LOG_WARN, "binary: accept: %s", strerror(-fd));
        }
        return;
    }
    if (draining(s) || s->n_conns >= (size_t)s->max_connections) {
        close(fd);
        return;
    }
    if (!l->is_unix) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->s = s;
    c->fd = fd;
    c->refs = 1; /* the open list's */
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    s->n_alive++;
    mark_dirty(c); /* arms the recv */
}

static void recycle_buffer(uring_server *s, unsigned bid)
{
    io_uring_buf_ring_add(s->br, s->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(s->br, 1);
}

static void on_recv(uring_server *s, conn *c, struct io_uring_cqe *cqe)
{
    int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    int res = cqe->res;
    if (!more)
        c->recv_armed = 0;
    if (res > 0)
        c->last_rx_ns = metrics_now_ns();
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (res > 0)
            on_data(c, s->bufs + (size_t)bid * BUF_SIZE, (size_t)res);
        recycle_buffer(s, bid); /* no pointer into it survives on_data */
    } else if (res > 0) { /* plain recv, into c->in */
        c->in_len += (size_t)res;
        if (!c->closed)
            parse_in(c);
    }
    if (res == 0) {
        c->eof = 1; /* answer what was received, then close */
    } else if (res < 0) {
        if (res == -EINVAL && s->multishot_recv) {
            log_msg(LOG_WARN, "binary: kernel lacks multishot recv; using plain recv");
            s->multishot_recv = 0;
        } else if (res != -ENOBUFS && res != -ECANCELED) {
            /* -ENOBUFS: every provided buffer was out; they are back by
             * the time sync_all re-arms. Anything else: the peer is gone. */
            c->dead = 1;
        }
    }
    mark_dirty(c);
    if (!more)
        conn_unref(c); /* the recv's */
}

static void on_send(conn *c, int res)
{
    c->sending = 0;
    if (res < 0) {
        if (res != -EAGAIN && res != -EINTR)
            c->dead = 1; /* EPIPE, ECONNRESET: the client left */
    } else {
        size_t left = (size_t)res;
        c->out_bytes -= left;
        while (left && c->out_head) { /* free what went out; keep a partial one */
            outbuf *o = c->out_head;
            size_t n = o->len - o->off;
            if (left < n) {
                o->off += left;
                break;
            }
            left -= n;
            c->out_head = o->next;
            if (!c->out_head)
                c->out_tail = NULL;
            free(o);
        }
    }
    mark_dirty(c);
    conn_unref(c); /* the send's */
}

static void handle_cqe(uring_server *s, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    void *p = (void *)(uintptr_t)(ud & ~(uint64_t)UD_TAG_MASK);
    switch (ud & UD_TAG_MASK) {
    case UD_EVENTFD:
        s->efd_armed = 0; /* take_done runs every iteration */
        break;
    case UD_ACCEPT:
        on_accept(s, p, cqe);
        break;
    case UD_RECV:
        on_recv(s, p, cqe);
        break;
    case UD_SEND:
        on_send(p, cqe->res);
        break;
    default: /* cancels, liburing's timeouts */
        break;
    }
}

/* ---- the loop ------------------------------------------------------------ */

static double since_s(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) * 1e-9;
}

static void drain_begin(uring_server *s)
{
    s->drain_seen = 1;
    clock_gettime(CLOCK_MONOTONIC, &s->drain_start);
    for (int i = 0; i < s->n_lis; i++) {
        listener *l = &s->lis[i];
        if (l->fd < 0)
            continue;
        /* Stop the accept in the kernel; sync_all closes the socket once
         * no accept is armed. */
        struct io_uring_sqe *sqe = l->armed ? sqe_get(s) : NULL;
        if (sqe) {
            io_uring_prep_cancel64(sqe, UD(l, UD_ACCEPT), 0);
            io_uring_sqe_set_data64(sqe, UD_NONE);
        }
    }
    for (conn *c = s->conns; c; c = c->next)
        mark_dirty(c); /* answers what is buffered, closes the idle */
}

static void *loop_main(void *arg)
{
    uring_server *s = arg;
    int pending = 0;
    for (;;) {
        /* acquire: pairs with the release store in uring_drain. */
        if (!s->drain_seen && atomic_load_explicit(&s->draining, memory_order_acquire))
            drain_begin(s);
        take_done(s);
        if (s->drain_seen) {
            int limit = atomic_load_explicit(&s->drain_timeout_s, memory_order_relaxed);
            if (s->conns && since_s(&s->drain_start) >= limit) {
                for (conn *c = s->conns, *n; c; c = n) {
                    n = c->next;
                    s->cut++;
                    c->dead = 1;
                    conn_close(c);
                }
            }
            int listening = 0;
            for (int i = 0; i < s->n_lis; i++)
                listening |= s->lis[i].fd >= 0;
            if (s->n_alive == 0 && s->inflight == 0 && !listening && !s->dirty)
                break;
        }
        pending = sync_all(s);
        struct __kernel_timespec ts = {0, 1000000}; /* 1 ms */
        if (s->drain_seen)
            ts.tv_nsec = 10000000; /* check the drain's clock */
        struct io_uring_cqe *cqe = NULL;
        int rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1,
                                                  (pending || s->drain_seen) ? &ts : NULL, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
            log_msg(LOG_ERROR, "binary: io_uring_submit_and_wait: %s", strerror(-rc));
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
        }
        unsigned head, n = 0;
        io_uring_for_each_cqe(&s->ring, head, cqe)
        {
            n++;
            if (cqe->user_data != LIBURING_UDATA_TIMEOUT)
                handle_cqe(s, cqe);
        }
        io_uring_cq_advance(&s->ring, n);
    }
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------- */

static int listen_tcp(uring_server *s, const config *c, char *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, c->address, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)c->binary_port);
        len = sizeof *in4;
    } else if (inet_pton(AF_INET6, c->address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)c->binary_port);
        len = sizeof *in6;
    } else {
        snprintf(err, CONFIG_ERR_MAX, "server.address: '%s' is not an IP address", c->address);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, CONFIG_ERR_MAX, "server.binary_port: cannot listen on %s:%d: %s",
                 c->address, c->binary_port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    s->port = ntohs(ss.ss_family == AF_INET ? in4->sin_port : in6->sin6_port);
    s->lis[s->n_lis++] = (listener){.s = s, .fd = fd, .is_unix = 0, .multishot = 1};
    return 0;
}

static int listen_unix(uring_server *s, const char *path, char *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, CONFIG_ERR_MAX, "server.unix_socket: path over %zu bytes",
                 sizeof sa.sun_path - 1);
        return -1;
    }
    strcpy(sa.sun_path, path);
    /* A socket left by a previous run (not any other kind of file). */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, CONFIG_ERR_MAX, "server.unix_socket: cannot listen on %s: %s", path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    snprintf(s->unix_path, sizeof s->unix_path, "%s", path);
    s->lis[s->n_lis++] = (listener){.s = s, .fd = fd, .is_unix = 1, .multishot = 1};
    return 0;
}

/* The buffer ring: 0, or -1 when this kernel cannot (plain recv then). */
static int setup_buffers(uring_server *s)
{
    const char *plain = getenv("LNSERVE_URING_PLAIN");
    if (plain && plain[0] == '1') {
        log_msg(LOG_INFO, "binary: LNSERVE_URING_PLAIN=1: using plain recv");
        return -1;
    }
    size_t ring_bytes = BUF_COUNT * sizeof(struct io_uring_buf);
    void *br = NULL;
    if (posix_memalign(&br, (size_t)sysconf(_SC_PAGESIZE), ring_bytes) != 0)
        return -1;
    s->bufs = malloc((size_t)BUF_COUNT * BUF_SIZE);
    if (!s->bufs) {
        free(br);
        return -1;
    }
    s->br = br;
    io_uring_buf_ring_init(s->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)br,
        .ring_entries = BUF_COUNT,
        .bgid = BUF_GROUP,
    };
    int rc = io_uring_register_buf_ring(&s->ring, &reg, 0);
    if (rc != 0) {
        log_msg(LOG_WARN, "binary: no buffer rings (%s); using plain recv", strerror(-rc));
        free(s->bufs);
        free(br);
        s->bufs = NULL;
        s->br = NULL;
        return -1;
    }
    for (unsigned i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(s->br, s->bufs + (size_t)i * BUF_SIZE, BUF_SIZE,
                              (unsigned short)i, io_uring_buf_ring_mask(BUF_COUNT), (int)i);
    io_uring_buf_ring_advance(s->br, BUF_COUNT);
    return 0;
}

static void server_free(uring_server *s)
{
    for (int i = 0; i < s->n_lis; i++)
        if (s->lis[i].fd >= 0)
            close(s->lis[i].fd);
    if (s->unix_path[0])
        unlink(s->unix_path);
    if (s->br)
        io_uring_unregister_buf_ring(&s->ring, BUF_GROUP);
    io_uring_queue_exit(&s->ring);
    if (s->efd >= 0)
        close(s->efd);
    free(s->bufs);
    free(s->br);
    free(s);
}

int uring_start(const config *c, const model_table *models, queue *q, int n_workers,
                int auth_on, metrics *mx, uring_server **out, char *err)
{
    *out = NULL;
    if (c->binary_port < 0 && !c->unix_socket[0])
        return 0;
    if (auth_on && c->binary_port >= 0) {
        snprintf(err, CONFIG_ERR_MAX,
                 "server.binary_port: the binary protocol has no API keys; with keys set, "
                 "serve it on server.unix_socket only (expected binary_port -1)");
        return -1;
    }
    uring_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, CONFIG_ERR_MAX, "out of memory");
        return -1;
    }
    s->efd = -1;
    struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN,
                                .cq_entries = 8 * RING_ENTRIES};
    int rc = io_uring_queue_init_params(RING_ENTRIES, &s->ring, &p);
    if (rc == -EINVAL) { /* COOP_TASKRUN is 5.19+ */
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = 8 * RING_ENTRIES;
        rc = io_uring_queue_init_params(RING_ENTRIES, &s->ring, &p);
    }
    if (rc != 0) {
        /* Docker's default seccomp profile answers EPERM, old kernels
         * ENOSYS: HTTP must go on without us. */
        log_msg(LOG_WARN, "binary protocol off: io_uring unavailable (%s); serving HTTP only",
                strerror(-rc));
        free(s);
        return 0;
    }
    s->models = models;
    s->q = q;
    s->mx = mx;
    s->n_workers = n_workers;
    s->max_elements = c->max_elements;
    s->max_connections = c->max_connections;
    s->port = -1;
    size_t max_cols = c->max_n;
    for (size_t i = 0; i < models->n; i++)
        if (models->models[i].info.dim > max_cols)
            max_cols = models->models[i].info.dim;
    s->lim = (frame_limits){
        .max_frame_bytes = c->max_body_bytes,
        .max_rows = c->max_rows > UINT32_MAX ? UINT32_MAX : (uint32_t)c->max_rows,
        .max_cols = max_cols > UINT32_MAX ? UINT32_MAX : (uint32_t)max_cols,
        .max_name_bytes = CONFIG_NAME_MAX - 1,
    };
    atomic_init(&s->done, NULL);
    atomic_init(&s->pushing, 0);
    atomic_init(&s->draining, 0);
    atomic_init(&s->drain_timeout_s, 0);
    s->multishot_recv = setup_buffers(s) == 0;
    s->efd = eventfd(0, EFD_CLOEXEC);
    if (s->efd < 0) {
        snprintf(err, CONFIG_ERR_MAX, "binary: eventfd: %s", strerror(errno));
        goto fail;
    }
    if (c->binary_port >= 0 && listen_tcp(s, c, err) != 0)
        goto fail;
    if (c->unix_socket[0] && listen_unix(s, c->unix_socket, err) != 0)
        goto fail;
    rc = pthread_create(&s->thread, NULL, loop_main, s);
    if (rc) {
        snprintf(err, CONFIG_ERR_MAX, "binary: pthread_create: %s", strerror(rc));
        goto fail;
    }
    s->thread_started = 1;
    pthread_setname_np(s->thread, "lnserve-uring");
    log_msg(LOG_INFO, "binary: io_uring, %s recv", s->multishot_recv ? "multishot" : "plain");
    *out = s;
    return 0;
fail:
    server_free(s);
    return -1;
}

int uring_port(const uring_server *s)
{
    return s ? s->port : -1;
}

void uring_drain(uring_server *s, int timeout_s)
{
    if (!s)
        return;
    atomic_store_explicit(&s->drain_timeout_s, timeout_s, memory_order_relaxed);
    /* release: pairs with the acquire load in loop_main. */
    atomic_store_explicit(&s->draining, 1, memory_order_release);
    eventfd_write(s->efd, 1);
}

int uring_stop(uring_server *s)
{
    if (!s)
        return 0;
    if (!atomic_load_explicit(&s->draining, memory_order_relaxed))
        uring_drain(s, 0);
    pthread_join(s->thread, NULL);
    /* acquire: pairs with the release decrement in bin_finish. The last
     * worker may still be between its push and its eventfd write. */
    while (atomic_load_explicit(&s->pushing, memory_order_acquire))
        sched_yield();
    int cut = s->cut;
    server_free(s);
    return cut;
}
