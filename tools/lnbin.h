/*
 * lnbin.h -- a small blocking client for lnserve's binary protocol
 * (proto/frame.md): connect over TCP or a Unix socket, queue requests
 * (pipelining: as many as you like before reading), flush, read responses
 * one frame at a time.
 *
 * Threads: one thread may queue and flush while another reads responses
 * (the two directions share nothing but the socket); otherwise a client is
 * used by one thread at a time. Errors are 0 or a negative errno; a
 * malformed response is -EPROTO.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "../proto/frame.h"

typedef struct lnbin lnbin;

/* addr: "unix:/path", or "[tcp:]HOST:PORT" (IPv4 or IPv6 literal, or a
 * name). TCP_NODELAY is set. 0 with *out, or a negative errno. */
int lnbin_connect(const char *addr, lnbin **out);

/* The socket lnbin_connect would use, for callers that drive it themselves
 * (lnctl bench's epoll loop): the fd, or a negative errno. When nonblock,
 * the socket is non-blocking and a TCP connect may still be in progress
 * (wait for writability, then read SO_ERROR); a Unix connect completes or
 * fails at once. */
int lnbin_dial(const char *addr, int nonblock);

/* Closes the socket and frees. NULL is a no-op. */
void lnbin_close(lnbin *c);

/* Queues an INFER of rows x cols FP32 values (row-major); nothing is sent
 * until lnbin_flush. 0, -EINVAL (sizes or name), -ENOMEM. */
int lnbin_queue_infer(lnbin *c, uint64_t id, const char *model, unsigned mask, uint32_t rows,
                      uint32_t cols, const float *x);

/* Queues a PING or a METADATA request. */
int lnbin_queue_ping(lnbin *c, uint64_t id);
int lnbin_queue_metadata(lnbin *c, uint64_t id, const char *model);

/* Queues raw bytes (tests: malformed frames). */
int lnbin_queue_raw(lnbin *c, const void *p, size_t n);

/* Writes everything queued (short writes retried). 0 or -errno. */
int lnbin_flush(lnbin *c);

typedef struct lnbin_response {
    frame_header h;
    frame_response r; /* borrows the client's buffer until the next lnbin_recv */
} lnbin_response;

/*
 * Frames and decodes one response from buf[0, len), which starts at a
 * frame boundary. Pure: no I/O, no allocation; out->r borrows buf.
 * Returns 1 with *frame_bytes = K (the frame is buf[0, K)), 0 when more
 * bytes are needed, -EPROTO for a malformed frame (close the connection).
 */
int lnbin_parse(const uint8_t *buf, size_t len, lnbin_response *out, size_t *frame_bytes);

/* Reads one response frame. 0; -ECONNRESET at end of stream; -EPROTO for
 * a malformed frame; another negative errno from read(2). */
int lnbin_recv(lnbin *c, lnbin_response *out);

/* 1 when a whole frame is already buffered (lnbin_recv will not block). */
int lnbin_has_frame(const lnbin *c);

/* The socket, e.g. for shutdown(2) in tests. */
int lnbin_fd(const lnbin *c);
