/* httpc.c -- see httpc.h. Framing per RFC 9112 sections 4, 6 and 7.1. */
#include "httpc.h"

#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- URLs --------------------------------------------------------------- */

int httpc_url_parse(httpc_url *u, const char *s, const char **why)
{
    static const char scheme[] = "http://";
    memset(u, 0, sizeof *u);
    if (strncmp(s, scheme, sizeof scheme - 1)) {
        *why = strncmp(s, "https://", 8) ? "the URL must start with http://"
                                         : "https is not supported: use http://";
        return -EINVAL;
    }
    const char *p = s + sizeof scheme - 1;
    const char *slash = strchr(p, '/');
    size_t hp_len = slash ? (size_t)(slash - p) : strlen(p);
    if (hp_len == 0 || hp_len >= sizeof u->hostport) {
        *why = "the URL has no host, or one too long";
        return -EINVAL;
    }
    memcpy(u->hostport, p, hp_len);
    const char *hp = u->hostport, *port = NULL;
    size_t host_len;
    if (hp[0] == '[') {
        const char *rb = strchr(hp, ']');
        if (!rb) {
            *why = "unterminated [IPv6 address] in the URL";
            return -EINVAL;
        }
        host_len = (size_t)(rb - hp - 1);
        memcpy(u->host, hp + 1, host_len);
        if (rb[1] == ':')
            port = rb + 2;
        else if (rb[1]) {
            *why = "junk after ] in the URL";
            return -EINVAL;
        }
    } else {
        const char *colon = strchr(hp, ':');
        host_len = colon ? (size_t)(colon - hp) : strlen(hp);
        memcpy(u->host, hp, host_len);
        if (colon)
            port = colon + 1;
    }
    if (host_len == 0) {
        *why = "the URL has an empty host";
        return -EINVAL;
    }
    if (port) {
        size_t n = strlen(port);
        if (n == 0 || n > 5 || strspn(port, "0123456789") != n || atoi(port) > 65535) {
            *why = "the URL's port must be a number 0..65535";
            return -EINVAL;
        }
        memcpy(u->port, port, n);
    } else {
        strcpy(u->port, "80");
    }
    if (slash) {
        size_t n = strlen(slash);
        while (n > 0 && slash[n - 1] == '/')
            n--;
        if (n >= sizeof u->prefix) {
            *why = "the URL's path is too long";
            return -EINVAL;
        }
        memcpy(u->prefix, slash, n);
    }
    return 0;
}

int httpc_connect(const httpc_url *u, int nonblock)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc)
        return rc == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
    int err = -ECONNREFUSED;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0),
                        a->ai_protocol);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || (nonblock && errno == EINPROGRESS)) {
            freeaddrinfo(res);
            return fd;
        }
        err = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    return err;
}

/* ---- requests ----------------------------------------------------------- */

/* Appends to head[0..*n) within cap; once a line does not fit (or snprintf
 * fails), *n is set to cap and every later call does nothing, so no
 * offset ever passes the buffer. */
static void head_add(char *head, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void head_add(char *head, size_t cap, size_t *n, const char *fmt, ...)
{
    if (*n >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(head + *n, cap - *n, fmt, ap);
    va_end(ap);
    *n = k < 0 || (size_t)k >= cap - *n ? cap : *n + (size_t)k;
}

char *httpc_format_request(const httpc_url *u, const char *method, const char *path,
                           const char *api_key, const char *extra, const char *ctype,
                           const void *body, size_t body_len, size_t *len)
{
    char head[2048];
    size_t n = 0;
    head_add(head, sizeof head, &n, "%s %s%s HTTP/1.1\r\nHost: %s\r\n", method, u->prefix,
             path, u->hostport);
    if (api_key)
        head_add(head, sizeof head, &n, "Authorization: Bearer %s\r\n", api_key);
    if (extra)
        head_add(head, sizeof head, &n, "%s", extra);
    if (body) {
        if (ctype)
            head_add(head, sizeof head, &n, "Content-Type: %s\r\n", ctype);
        head_add(head, sizeof head, &n, "Content-Length: %zu\r\n", body_len);
    }
    head_add(head, sizeof head, &n, "\r\n");
    if (n >= sizeof head) /* a header did not fit: an over-long API key or URL */
        return NULL;
    size_t total = n + (body ? body_len : 0);
    char *out = malloc(total + 1);
    if (!out)
        return NULL;
    memcpy(out, head, n);
    if (body)
        memcpy(out + n, body, body_len);
    out[total] = 0;
    *len = total;
    return out;
}

/* ---- the response parser ------------------------------------------------ */

enum { ST_HEAD, ST_BODY_LEN, ST_CHUNK_SIZE, ST_CHUNK_DATA, ST_CHUNK_CRLF, ST_TRAILER, ST_EOF_BODY };

void httpc_resp_init(httpc_resp *r)
{
    memset(r, 0, sizeof *r);
    r->content_length = UINT64_MAX;
    r->infer_header_len = UINT64_MAX;
    r->state = ST_HEAD;
}

/* Finds "\r\n" in buf[from, len); returns its offset or -1. */
static long find_crlf(const char *buf, size_t from, size_t len)
{
    for (size_t i = from; i + 1 < len; i++) {
        const char *c = memchr(buf + i, '\r', len - 1 - i);
        if (!c)
            return -1;
        i = (size_t)(c - buf);
        if (buf[i + 1] == '\n')
            return (long)i;
    }
    return -1;
}

/* Case-insensitive: does the comma-separated list v[0, n) hold token t? */
static int has_token(const char *v, size_t n, const char *t)
{
    size_t tl = strlen(t);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && !strncasecmp(v + s, t, tl))
            return 1;
    }
    return 0;
}

/* A decimal header value of 1..19 digits; -1 otherwise. */
static int parse_decimal(const char *v, size_t vl, uint64_t *out)
{
    if (vl == 0 || vl > 19)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < vl; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return 0;
}

/* Parses status line and headers in buf[0, end) (end = the blank line's
 * CRLF offset + 2, excluded). */
static int parse_head(httpc_resp *r, const char *buf, size_t head_len)
{
    const char *p = buf, *end = buf + head_len - 2; /* at the final CRLF */
    /* "HTTP/1.x SSS[ reason]" */
    if (end - p < 12 || memcmp(p, "HTTP/1.", 7) || p[7] < '0' || p[7] > '9' || p[8] != ' ')
        return HTTPC_EMALFORMED;
    r->minor = p[7] - '0';
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9')
            return HTTPC_EMALFORMED;
    r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (r->status < 100 || (p[12] != ' ' && p[12] != '\r'))
        return HTTPC_EMALFORMED;
    r->keep_alive = r->minor >= 1;
    int te_seen = 0, conn_keep = 0, conn_close = 0;
    const char *line = memchr(p, '\n', (size_t)(end + 2 - p));
    line = line ? line + 1 : end + 2;
    while (line < end) {
        const char *eol = memchr(line, '\r', (size_t)(end + 2 - line));
        if (!eol || eol[1] != '\n')
            return HTTPC_EMALFORMED;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon || colon == line)
            return HTTPC_EMALFORMED;
        for (const char *q = line; q < colon; q++)
            if (*q <= ' ' || *q >= 127)
                return HTTPC_EMALFORMED; /* no space before the colon (RFC 9112 5.1) */
        if (memchr(colon, '\n', (size_t)(eol - colon)))
            return HTTPC_EMALFORMED; /* a bare LF: no obsolete line folding either */
        size_t nl = (size_t)(colon - line);
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vl = (size_t)(ve - v);
        if (nl == 14 && !strncasecmp(line, "content-length", 14)) {
            uint64_t cl;
            if (parse_decimal(v, vl, &cl))
                return HTTPC_EMALFORMED;
            if (r->content_length != UINT64_MAX && r->content_length != cl)
                return HTTPC_EMALFORMED; /* two that disagree */
            r->content_length = cl;
        } else if (nl == 17 && !strncasecmp(line, "transfer-encoding", 17)) {
            te_seen = 1;
            /* chunked must be the last coding; anything else is unframed */
            size_t s = vl;
            while (s > 0 && v[s - 1] != ',')
                s--;
            r->chunked = has_token(v + s, vl - s, "chunked");
        } else if (nl == 31 && !strncasecmp(line, "inference-header-content-length", 31)) {
            if (parse_decimal(v, vl, &r->infer_header_len))
                return HTTPC_EMALFORMED;
        } else if (nl == 10 && !strncasecmp(line, "connection", 10)) {
            conn_close |= has_token(v, vl, "close");
            conn_keep |= has_token(v, vl, "keep-alive");
        }
        line = eol + 2;
    }
    if (conn_close)
        r->keep_alive = 0;
    else if (conn_keep)
        r->keep_alive = 1;
    if (te_seen)
        r->content_length = UINT64_MAX; /* Transfer-Encoding overrides (RFC 9112 6.3) */
    if (te_seen && !r->chunked)
        r->keep_alive = 0; /* the body runs to the end of the connection */
    return 0;
}

long httpc_parse(httpc_resp *r, char *buf, size_t len)
{
    for (;;) {
        switch (r->state) {
        case ST_HEAD: {
            size_t from = r->scan > 3 ? r->scan - 3 : 0;
            const char *hit = NULL;
            if (len >= 4 && from < len)
                hit = memmem(buf + from, len - from, "\r\n\r\n", 4);
            if (!hit) {
                r->scan = len;
                return len > HTTPC_HEAD_MAX ? HTTPC_ETOOBIG : 0;
            }
            size_t head_len = (size_t)(hit - buf) + 4;
            if (head_len > HTTPC_HEAD_MAX)
                return HTTPC_ETOOBIG;
            int rc = parse_head(r, buf, head_len);
            if (rc)
                return rc;
            r->head_len = head_len;
            if ((r->status >= 100 && r->status < 200) || r->status == 204 || r->status == 304) {
                r->body_len = 0;
                r->state = ST_BODY_LEN;
                r->content_length = 0;
            } else if (r->chunked) {
                r->in = r->out = head_len;
                r->state = ST_CHUNK_SIZE;
            } else if (r->content_length != UINT64_MAX) {
                r->state = ST_BODY_LEN;
            } else {
                r->keep_alive = 0;
                r->state = ST_EOF_BODY;
            }
            break;
        }
        case ST_BODY_LEN:
            if (r->content_length > (uint64_t)LONG_MAX - r->head_len)
                return HTTPC_ETOOBIG;
            if (len - r->head_len < r->content_length)
                return 0;
            r->body_len = (size_t)r->content_length;
            return (long)(r->head_len + r->body_len);
        case ST_CHUNK_SIZE: {
            long crlf = find_crlf(buf, r->in, len);
            if (crlf < 0)
                return len - r->in > 4096 ? HTTPC_EMALFORMED : 0;
            uint64_t size = 0;
            size_t i = r->in, digits = 0;
            for (; i < (size_t)crlf; i++, digits++) {
                char c = buf[i];
                int d = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
                if (d < 0)
                    break;
                if (size >> 59)
                    return HTTPC_EMALFORMED; /* would overflow */
                size = size * 16 + (uint64_t)d;
            }
            /* after the digits: nothing, or chunk extensions after ';' */
            if (digits == 0 ||
                (i < (size_t)crlf && buf[i] != ';' && buf[i] != ' ' && buf[i] != '\t'))
                return HTTPC_EMALFORMED;
            r->in = (size_t)crlf + 2;
            r->chunk_left = size;
            r->state = size ? ST_CHUNK_DATA : ST_TRAILER;
            break;
        }
        case ST_CHUNK_DATA: {
            size_t avail = len - r->in;
            size_t n = avail < r->chunk_left ? avail : (size_t)r->chunk_left;
            if (n && r->out != r->in)
                memmove(buf + r->out, buf + r->in, n);
            r->out += n;
            r->in += n;
            r->chunk_left -= n;
            if (r->chunk_left)
                return 0;
            r->state = ST_CHUNK_CRLF;
            break;
        }
        case ST_CHUNK_CRLF:
            if (len - r->in < 2)
                return 0;
            if (buf[r->in] != '\r' || buf[r->in + 1] != '\n')
                return HTTPC_EMALFORMED;
            r->in += 2;
            r->state = ST_CHUNK_SIZE;
            break;
        case ST_TRAILER: {
            long crlf = find_crlf(buf, r->in, len);
            if (crlf < 0)
                return len - r->in > HTTPC_HEAD_MAX ? HTTPC_ETOOBIG : 0;
            int empty = (size_t)crlf == r->in;
            r->in = (size_t)crlf + 2;
            if (empty) {
                r->body_len = r->out - r->head_len;
                return (long)r->in;
            }
            break;
        }
        case ST_EOF_BODY:
            return 0;
        default:
            return HTTPC_EMALFORMED;
        }
    }
}

long httpc_parse_eof(httpc_resp *r, char *buf, size_t len)
{
    long rc = httpc_parse(r, buf, len);
    if (rc != 0)
        return rc;
    if (r->state == ST_EOF_BODY) {
        r->body_len = len - r->head_len;
        return (long)len;
    }
    return HTTPC_EMALFORMED;
}

/* ---- the blocking client ------------------------------------------------ */

int httpc_client_init(httpc_client *c, const char *url, const char *api_key, int timeout_ms,
                      char *err, size_t err_cap)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->api_key = api_key;
    c->timeout_ms = timeout_ms;
    const char *why;
    int rc = httpc_url_parse(&c->url, url, &why);
    if (rc)
        snprintf(err, err_cap, "--url %s: %s", url, why);
    return rc;
}

void httpc_client_fini(httpc_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->rx);
    c->fd = -1;
    c->rx = NULL;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline; 0, or -ETIMEDOUT. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* One attempt on the current (or a new) connection. *fresh tells whether
 * the connection was new; *got_bytes whether any response byte came. */
static int attempt(httpc_client *c, const char *req, size_t req_len, httpc_resp *r,
                   size_t *msg_len, int *got_bytes, int64_t deadline)
{
    size_t off = 0;
    while (off < req_len) {
        ssize_t n = send(c->fd, req + off, req_len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(c->fd, POLLOUT, deadline);
            if (rc)
                return rc;
            continue;
        }
        return -errno;
    }
    size_t have = 0;
    httpc_resp_init(r);
    for (;;) {
        if (c->rx_cap - have < 16384) {
            size_t cap = c->rx_cap ? c->rx_cap * 2 : 65536;
            char *nb = realloc(c->rx, cap + 1);
            if (!nb)
                return -ENOMEM;
            c->rx = nb;
            c->rx_cap = cap;
        }
        ssize_t n = recv(c->fd, c->rx + have, c->rx_cap - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(c->fd, POLLIN, deadline);
            if (rc)
                return rc;
            continue;
        }
        if (n < 0)
            return -errno;
        long rc;
        if (n == 0) {
            if (have == 0)
                return -ECONNRESET;
            rc = httpc_parse_eof(r, c->rx, have);
        } else {
            *got_bytes = 1;
            have += (size_t)n;
            rc = httpc_parse(r, c->rx, have);
        }
        if (rc < 0)
            return (int)rc;
        if (rc > 0) {
            *msg_len = (size_t)rc;
            return 0;
        }
    }
}

uint64_t httpc_client_infer_header_len(const httpc_client *c)
{
    return c->infer_header_len;
}

int httpc_client_request(httpc_client *c, const char *method, const char *path,
                         const char *extra, const char *ctype, const void *body, size_t body_len,
                         int *status, const char **resp_body, size_t *resp_len, char *err,
                         size_t err_cap)
{
    size_t req_len;
    char *req = httpc_format_request(&c->url, method, path, c->api_key, extra, ctype, body,
                                     body_len, &req_len);
    if (!req) {
        snprintf(err, err_cap, "out of memory");
        return -ENOMEM;
    }
    int64_t deadline = now_ms() + c->timeout_ms;
    int rc = 0;
    httpc_resp r;
    size_t msg_len = 0;
    for (int tries = 0; tries < 2; tries++) {
        int fresh = c->fd < 0;
        if (fresh) {
            c->fd = httpc_connect(&c->url, 0);
            if (c->fd < 0) {
                rc = c->fd;
                snprintf(err, err_cap, "connect to %s:%s: %s", c->url.host, c->url.port,
                         strerror(-rc));
                goto out;
            }
            struct timeval tv = {.tv_sec = c->timeout_ms / 1000,
                                 .tv_usec = (c->timeout_ms % 1000) * 1000};
            setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        }
        int got = 0;
        rc = attempt(c, req, req_len, &r, &msg_len, &got, deadline);
        if (rc == 0)
            break;
        close(c->fd);
        c->fd = -1;
        /* a kept-alive connection the server closed meanwhile: retry once */
        if (fresh || got || (rc != -ECONNRESET && rc != -EPIPE))
            break;
    }
    if (rc) {
        if (rc == -EAGAIN || rc == -EWOULDBLOCK)
            rc = -ETIMEDOUT;
        snprintf(err, err_cap, "%s %s%s: %s", method, c->url.prefix, path,
                 rc == HTTPC_EMALFORMED ? "malformed HTTP response"
                 : rc == HTTPC_ETOOBIG  ? "response headers too long"
                 : rc == -ECONNRESET    ? "connection closed by the server"
                                        : strerror(-rc));
        goto out;
    }
    *status = r.status;
    c->infer_header_len = r.infer_header_len;
    memmove(c->rx, c->rx + r.head_len, r.body_len);
    c->rx[r.body_len] = 0;
    *resp_body = c->rx;
    *resp_len = r.body_len;
    if (!r.keep_alive) {
        close(c->fd);
        c->fd = -1;
    }
out:
    free(req);
    return rc;
}

size_t httpc_binary_infer_body(char *dst, const float *x, size_t rows, size_t n, char *extra,
                               size_t extra_cap)
{
    size_t bytes = rows * n * sizeof(float);
    size_t len = (size_t)snprintf(dst, HTTPC_BIN_HEADER_MAX,
                                  "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
                                  "\"shape\":[%zu,%zu],\"parameters\":{\"binary_data_size\":%zu}}],"
                                  "\"parameters\":{\"binary_data_output\":true}}",
                                  rows, n, bytes);
    snprintf(extra, extra_cap, "Inference-Header-Content-Length: %zu\r\n", len);
    memcpy(dst + len, x, bytes);
    return len + bytes;
}
