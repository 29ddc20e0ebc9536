/*
 * http.h -- the HTTP front: libmicrohttpd with its internal polling
 * threads (epoll) serving the Open Inference Protocol v2 REST API.
 *
 * Request path (infer): the handler collects the body, decodes it
 * (proto/oip.h), splits the rows into jobs, reserves room in the queue for
 * all of them (or answers 503 at once), suspends the connection and pushes
 * the jobs. Workers run them; the worker that finishes a request's last
 * job encodes the response and resumes the connection, and the handler,
 * called again by libmicrohttpd, sends it.
 *
 * Threads: http_start/http_drain/http_stop are called from main only. The
 * handler runs on libmicrohttpd's threads, jobs on the workers'.
 */
#pragma once

#include "../config/config.h"
#include "auth.h"
#include "models.h"
#include "metrics.h"
#include "queue.h"

typedef struct http_server http_server;

/*
 * Binds c->address:c->port (HTTPS when c->tls_cert_file is set) and starts
 * serving. Requests need an API key when a has keys. n_workers says how many
 * ways a large request is split. NULL on failure with the reason in err
 * (CONFIG_ERR_MAX bytes). models, q and mx (metrics indexed like models)
 * must outlive the server.
 */
http_server *http_start(const config *c, const model_table *models, queue *q,
                        const auth *a, int n_workers, metrics *mx, char *err);

/* The port actually bound (useful with port 0). */
int http_port(const http_server *s);

/*
 * Stops accepting connections; requests that arrive on open connections
 * get 503 with Connection: close. Waits until every request in flight has
 * been answered, or timeout_s has passed with none of them still computing
 * (a request being computed is always waited for: its connection is
 * suspended, and stopping libmicrohttpd under it is undefined). Returns
 * the number of requests still open when it gave up (0 = clean drain).
 */
int http_drain(http_server *s, int timeout_s);

/* Stops libmicrohttpd and frees. Call http_drain first. */
void http_stop(http_server *s);
