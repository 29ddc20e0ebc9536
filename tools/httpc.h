/*
 * httpc.h -- the HTTP/1.1 client bits of lnctl: URL parsing, request
 * formatting, an incremental response parser and a small blocking client.
 *
 * The parser (httpc_parse) is pure: no I/O, no allocation, no globals. It
 * works on the caller's receive buffer and frames one response at a time:
 * status line, headers (Content-Length, Transfer-Encoding: chunked,
 * Connection), then the body by Content-Length, by chunks (decoded in place
 * so the body ends up contiguous) or, with neither, up to the end of the
 * connection. It is what lnctl bench runs per response on its hot path, so
 * it re-scans nothing it has seen and, with Content-Length, touches the
 * body bytes not at all.
 *
 * The blocking client (httpc_client) is for the one-shot commands (health,
 * models, infer): one keep-alive connection, reconnected when the server
 * closed it. Not for the load generator, which drives non-blocking sockets
 * itself (bench.c).
 *
 * Errors: 0 or a negative errno (HTTPC_E* are negative errno values with a
 * meaning here). Nothing here is thread safe; use one object per thread.
 */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/* A response that breaks HTTP/1.1 framing. */
#define HTTPC_EMALFORMED (-EPROTO)
/* A status line plus headers longer than HTTPC_HEAD_MAX. */
#define HTTPC_ETOOBIG (-EMSGSIZE)

#define HTTPC_HEAD_MAX (64 * 1024)

/* ---- URLs --------------------------------------------------------------- */

/* "http://host[:port][/prefix]". host may be a name, IPv4 or [IPv6]. */
typedef struct httpc_url {
    char host[256];   /* without brackets */
    char port[8];     /* "80" when absent */
    char hostport[272]; /* for the Host header, as written in the URL */
    char prefix[256]; /* path prefix without a trailing '/', often "" */
} httpc_url;

/* 0, or -EINVAL with a static reason in *why. Only http:// (no TLS). */
int httpc_url_parse(httpc_url *u, const char *s, const char **why);

/* A TCP connection to u, TCP_NODELAY set; non-blocking when nonblock (the
 * connect may still be in progress). Returns the fd or a negative errno. */
int httpc_connect(const httpc_url *u, int nonblock);

/* ---- requests ----------------------------------------------------------- */

/*
 * Formats a complete request (HTTP/1.1, keep-alive) into a new malloc'd
 * buffer that the caller frees: "METHOD prefix+path HTTP/1.1", Host,
 * Authorization: Bearer api_key when api_key is non-NULL, the header lines
 * in extra when non-NULL (each "Name: value\r\n"), Content-Type and
 * Content-Length when body is non-NULL (ctype may be NULL), then the body.
 * Returns the buffer and its length in *len, or NULL when out of memory.
 */
char *httpc_format_request(const httpc_url *u, const char *method, const char *path,
                           const char *api_key, const char *extra, const char *ctype,
                           const void *body, size_t body_len, size_t *len);

/* ---- the response parser ------------------------------------------------ */

typedef struct httpc_resp {
    /* read-only for the caller, valid once httpc_parse returned > 0 (status,
     * version and keep_alive already once head_len is non-zero) */
    int status;         /* 100..999 */
    int minor;          /* HTTP/1.minor */
    int keep_alive;     /* 0 after "Connection: close" or a plain HTTP/1.0 */
    int chunked;        /* Transfer-Encoding ends in chunked */
    size_t head_len;    /* status line + headers + blank line; 0 until seen */
    uint64_t content_length; /* UINT64_MAX when absent */
    uint64_t infer_header_len; /* Inference-Header-Content-Length (the OIP
                                  binary tensor extension); UINT64_MAX when absent */
    size_t body_len;    /* the (decoded) body, at buf + head_len */
    /* private */
    int state;
    size_t scan;        /* where the next search starts */
    size_t in, out;     /* chunked: read and write offsets in buf */
    uint64_t chunk_left;
} httpc_resp;

/* Prepares r for the next response. */
void httpc_resp_init(httpc_resp *r);

/*
 * Frames one response from buf[0, len): buf holds the response's bytes
 * from its first one, and between calls for the same response the caller
 * may only append (or move the whole buffer); the parser may rewrite the
 * bytes it has consumed (chunk decoding). Returns
 *   > 0  the response is complete and took that many bytes of buf (any
 *        further bytes belong to the next response); the body is
 *        buf[head_len, head_len + body_len)
 *   0    more bytes are needed
 *   < 0  HTTPC_EMALFORMED or HTTPC_ETOOBIG: close the connection
 * A response with neither Content-Length nor chunking (and a status that
 * may have a body) ends with the connection: call httpc_parse_eof then.
 */
long httpc_parse(httpc_resp *r, char *buf, size_t len);

/* The connection ended after buf[0, len). Returns as httpc_parse, with
 * HTTPC_EMALFORMED (-EPROTO) when the response was cut short. */
long httpc_parse_eof(httpc_resp *r, char *buf, size_t len);

/* ---- the blocking client ------------------------------------------------ */

typedef struct httpc_client {
    httpc_url url;
    const char *api_key; /* borrowed; NULL for none */
    int timeout_ms;      /* per request */
    int fd;              /* -1 when not connected */
    uint64_t infer_header_len; /* of the last response */
    char *rx;
    size_t rx_cap;
} httpc_client;

/* 0, or -EINVAL with a reason in err. Connects lazily. */
int httpc_client_init(httpc_client *c, const char *url, const char *api_key, int timeout_ms,
                      char *err, size_t err_cap);
void httpc_client_fini(httpc_client *c);

/*
 * Sends one request and reads its response. On 0, *status is the HTTP
 * status and *body (NUL-terminated, owned by c, valid until the next call)
 * holds *body_len bytes. On a negative errno, err says what failed.
 * A request on a kept-alive connection that the server had closed is
 * retried once on a fresh connection.
 */
int httpc_client_request(httpc_client *c, const char *method, const char *path,
                         const char *extra, const char *ctype, const void *body, size_t body_len,
                         int *status, const char **resp_body, size_t *resp_len, char *err,
                         size_t err_cap);

/* The last response's Inference-Header-Content-Length; UINT64_MAX when it
 * had none. */
uint64_t httpc_client_infer_header_len(const httpc_client *c);

/* Room httpc_binary_infer_body needs beyond the rows' bytes. */
#define HTTPC_BIN_HEADER_MAX 256

/*
 * The body of an infer with Triton's binary tensor extension, as lnctl
 * infer and lnctl bench send it: a JSON header naming one FP32 input of
 * rows x n sent as binary data and asking for every output as binary
 * data, then the rows' raw bytes (the host's floats, little-endian as the
 * wire; lnbin.c asserts it). dst holds at least HTTPC_BIN_HEADER_MAX +
 * rows * n * 4 bytes; extra gets the "Inference-Header-Content-Length:
 * L\r\n" line for httpc_format_request. Returns the body's length.
 */
size_t httpc_binary_infer_body(char *dst, const float *x, size_t rows, size_t n, char *extra,
                               size_t extra_cap);
