/*
 * lnbin.c -- see lnbin.h. Requests are encoded into one growing output
 * buffer and written by lnbin_flush; responses are read into one input
 * buffer in large chunks, so a pipelined client makes a read(2) per many
 * responses.
 */
#include "lnbin.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define READ_CHUNK 65536

/* Limits a client accepts in responses: anything a server may send. */
static const frame_limits client_limits = {
    .max_frame_bytes = (size_t)UINT32_MAX + FRAME_HEADER_BYTES,
    .max_rows = UINT32_MAX,
    .max_cols = UINT32_MAX,
    .max_name_bytes = FRAME_NAME_MAX,
};

struct lnbin {
    int fd;
    uint8_t *out; /* queued requests */
    size_t out_len, out_cap;
    uint8_t *in; /* received bytes; [in_off, in_len) not yet returned */
    size_t in_off, in_len, in_cap;
};

static int connect_unix(const char *path, int nonblock)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int connect_tcp(const char *hostport, int nonblock)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host)
        return -EINVAL;
    size_t hl = (size_t)(colon - hostport);
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* [::1]:port */
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return -EHOSTUNREACH;
    int fd = -ECONNREFUSED;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
        if (fd < 0) {
            fd = -errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || (nonblock && errno == EINPROGRESS))
            break;
        int e = errno;
        close(fd);
        fd = -e;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

int lnbin_dial(const char *addr, int nonblock)
{
    if (!strncmp(addr, "unix:", 5))
        return connect_unix(addr + 5, nonblock);
    return connect_tcp(!strncmp(addr, "tcp:", 4) ? addr + 4 : addr, nonblock);
}

int lnbin_connect(const char *addr, lnbin **out)
{
    *out = NULL;
    int fd = lnbin_dial(addr, 0);
    if (fd < 0)
        return fd;
    lnbin *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->fd = fd;
    *out = c;
    return 0;
}

void lnbin_close(lnbin *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c->out);
    free(c->in);
    free(c);
}

int lnbin_fd(const lnbin *c)
{
    return c->fd;
}

/* Room for n more bytes at the end of the output; NULL on ENOMEM. */
static uint8_t *out_room(lnbin *c, size_t n)
{
    if (c->out_cap - c->out_len < n) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap - c->out_len < n)
            cap *= 2;
        uint8_t *nb = realloc(c->out, cap);
        if (!nb)
            return NULL;
        c->out = nb;
        c->out_cap = cap;
    }
    return c->out + c->out_len;
}

int lnbin_queue_infer(lnbin *c, uint64_t id, const char *model, unsigned mask, uint32_t rows,
                      uint32_t cols, const float *x)
{
    size_t name_len = strlen(model);
    size_t n = frame_infer_request_bytes(name_len, FRAME_DTYPE_FP32, rows, cols);
    if (n == 0)
        return -EINVAL;
    uint8_t *p = out_room(c, n);
    if (!p)
        return -ENOMEM;
    /* FP32 payload: the host's floats are the wire's on little-endian
     * hosts, which is all this client is built for. */
    _Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian hosts only");
    c->out_len += frame_encode_infer_request(p, id, 0, model, name_len, FRAME_DTYPE_FP32, mask,
                                             rows, cols, x);
    return 0;
}

int lnbin_queue_ping(lnbin *c, uint64_t id)
{
    uint8_t *p = out_room(c, FRAME_HEADER_BYTES);
    if (!p)
        return -ENOMEM;
    c->out_len += frame_encode_ping(p, id);
    return 0;
}

int lnbin_queue_metadata(lnbin *c, uint64_t id, const char *model)
{
    size_t name_len = strlen(model);
    if (name_len == 0 || name_len > FRAME_NAME_MAX)
        return -EINVAL;
    uint8_t *p = out_room(c, FRAME_HEADER_BYTES + FRAME_META_REQ_FIXED_BYTES + name_len);
    if (!p)
        return -ENOMEM;
    c->out_len += frame_encode_metadata_request(p, id, model, name_len);
    return 0;
}

int lnbin_queue_raw(lnbin *c, const void *data, size_t n)
{
    uint8_t *p = out_room(c, n);
    if (!p)
        return -ENOMEM;
    memcpy(p, data, n);
    c->out_len += n;
    return 0;
}

int lnbin_flush(lnbin *c)
{
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            c->out_len = 0;
            return -e;
        }
        off += (size_t)n;
    }
    c->out_len = 0;
    return 0;
}

static int scan(const lnbin *c, frame_header *h, size_t *k)
{
    return frame_scan(c->in + c->in_off, c->in_len - c->in_off, &client_limits, h, k);
}

int lnbin_parse(const uint8_t *buf, size_t len, lnbin_response *out, size_t *frame_bytes)
{
    size_t k;
    int rc = frame_scan(buf, len, &client_limits, &out->h, &k);
    if (rc < 0)
        return -EPROTO;
    if (rc != FRAME_READY)
        return 0;
    char msg[FRAME_MSG_MAX];
    if (frame_decode_response(&out->h, buf + FRAME_HEADER_BYTES, out->h.body_len, &out->r, msg) !=
        LNS_OK)
        return -EPROTO;
    *frame_bytes = k;
    return 1;
}

int lnbin_has_frame(const lnbin *c)
{
    frame_header h;
    size_t k;
    return scan(c, &h, &k) == FRAME_READY;
}

int lnbin_recv(lnbin *c, lnbin_response *out)
{
    for (;;) {
        size_t k;
        int rc = lnbin_parse(c->in + c->in_off, c->in_len - c->in_off, out, &k);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            c->in_off += k;
            return 0;
        }
        /* the frame's size, once its header is in: read at least that much */
        frame_header h;
        scan(c, &h, &k);
        /* Need more: compact, make room (at least the frame), read. */
        if (c->in_off) {
            memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
            c->in_len -= c->in_off;
            c->in_off = 0;
        }
        size_t want = (k > c->in_len ? k - c->in_len : 0) + READ_CHUNK;
        if (c->in_cap - c->in_len < want) {
            size_t cap = c->in_len + want;
            uint8_t *nb = realloc(c->in, cap);
            if (!nb)
                return -ENOMEM;
            c->in = nb;
            c->in_cap = cap;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c->in_len += (size_t)n;
    }
}
