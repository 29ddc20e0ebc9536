/*
 * uring.h -- the binary front: one thread running an io_uring loop that
 * serves lnserve's binary protocol (proto/frame.md) on TCP
 * (server.binary_port) and on a Unix socket (server.unix_socket).
 *
 * Request path (INFER): the loop decodes the frame (proto/frame.h), splits
 * the rows into jobs exactly as the HTTP front does, reserves room in the
 * queue for all of them (or answers BUSY at once) and pushes them. The
 * worker that finishes a request's last job encodes the response and hands
 * the request back on a lock-free list, waking the loop through an eventfd
 * it reads with io_uring; the loop queues the bytes on the connection.
 *
 * Ownership: a request belongs to the loop, then to its jobs (queue ->
 * workers), then to the worker that finishes the last job, then to the loop
 * again. Workers never touch a connection: connections are the loop's
 * alone, reference-counted (one reference per operation in the kernel and
 * per request computing), so a client that leaves while its requests
 * compute frees nothing a worker still uses.
 *
 * Threads: uring_start, uring_drain and uring_stop are called from main
 * only; the loop runs on its own thread ("lnserve-uring"); jobs on the
 * workers'.
 */
#pragma once

#include "../config/config.h"
#include "metrics.h"
#include "models.h"
#include "queue.h"

typedef struct uring_server uring_server;

/*
 * Starts the binary front when c->binary_port >= 0 or c->unix_socket is
 * set. Returns 0 with *out set; 0 with *out = NULL when both are off, or
 * when io_uring cannot be used here (seccomp, an old kernel: one warning
 * is logged and the server goes on with HTTP only); -1 with the reason in
 * err (CONFIG_ERR_MAX bytes) when a socket cannot be bound, or when
 * auth_on (API keys) and a TCP port is asked for: the binary protocol has
 * no authentication. models, q and mx must outlive the server. Every
 * frame answered is counted in mx with protocol "binary" (metrics.h), and
 * infers in its Triton statistics like HTTP ones.
 */
int uring_start(const config *c, const model_table *models, queue *q, int n_workers,
                int auth_on, metrics *mx, uring_server **out, char *err);

/* The TCP port bound (useful with binary_port 0), or -1 when TCP is off. */
int uring_port(const uring_server *s);

/*
 * Begins draining and returns at once: stop accepting; frames that arrive
 * from now on get shutting_down; requests already received are answered;
 * each connection closes once it has nothing in flight. Connections still
 * open after timeout_s are cut (requests computing are still waited for).
 */
void uring_drain(uring_server *s, int timeout_s);

/* Waits for the drain to finish (call uring_drain first), stops the loop
 * and frees. Returns how many connections were cut by the timeout. NULL
 * is a no-op. The workers must still be running. */
int uring_stop(uring_server *s);
