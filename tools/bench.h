/*
 * bench.h -- lnctl bench, the load generator.
 *
 * Four wires (bench_proto): HTTP/1.1 with a JSON body (http-json), HTTP/1.1
 * with the Open Inference Protocol's binary tensor extension (http-binary:
 * Inference-Header-Content-Length, the row as raw FP32, every output asked
 * for as binary data), and lnserve's frame protocol (proto/frame.md) over
 * TCP (binary-tcp) or a Unix socket (binary-unix). The frame protocol
 * pipelines: a connection keeps up to `pipeline` requests in flight, each
 * under its own request id, and every response is matched to its request
 * by id (the server answers in any order); a response to an id that is not
 * in flight is a protocol error. HTTP keeps one request per connection.
 *
 * One thread drives C non-blocking keep-alive connections with epoll
 * (level-triggered). Request bytes are built once, in a few variants with
 * different random rows, and sent round-robin; a response is framed with
 * httpc_parse on a per-connection buffer that is allocated once and only
 * grows, so the hot path makes no allocation: per request one send, one or
 * two recvs and a share of an epoll_wait.
 *
 * Closed loop (default): every connection sends its next request as soon
 * as the previous answer is in. Open loop (--rate R): request i is due at
 * start + i / R whatever the server does; it goes out on the next idle
 * connection, and its latency counts from when it was due, so a stalled
 * server shows up in the percentiles instead of slowing the schedule
 * ("coordinated omission").
 *
 * Checking: every response (or every K-th, check_every) is compared with
 * ln_rows_ref's result for the same float32 inputs, value by value within
 * 16 * 2^-24 * max(1, |ref|). A body byte-identical to one already found
 * right for the same variant is right too: that memcmp is what lets every
 * response be checked at full speed.
 */
#pragma once

#include <stdint.h>

#include "httpc.h"

typedef enum bench_proto {
    BENCH_HTTP_JSON,
    BENCH_HTTP_BINARY,
    BENCH_BINARY_TCP,
    BENCH_BINARY_UNIX,
} bench_proto;

/* "http-json", ... -> 0 and *p; -1 for anything else. */
int bench_proto_parse(const char *s, bench_proto *p);
const char *bench_proto_name(bench_proto p);

/* The most requests a connection may keep in flight (--pipeline). */
#define BENCH_PIPELINE_MAX 4096

typedef struct bench_opts {
    httpc_url url;       /* the HTTP wires */
    const char *addr;    /* the frame wires: an lnbin_dial address ("HOST:PORT", "unix:PATH") */
    const char *api_key; /* or NULL */
    bench_proto proto;
    const char *protocol; /* bench_proto_name(proto), for the report */
    unsigned pipeline;    /* requests in flight per connection: 1 for HTTP, 1.. for binary */
    const char *model;
    unsigned connections;
    double rate;         /* requests/s; 0 = closed loop */
    double duration_s;   /* 0 = bounded by requests only */
    uint64_t requests;   /* 0 = bounded by duration only */
    unsigned rows, n;
    double warmup_s;
    unsigned check_every; /* 0 = no checking, 1 = every response */
    unsigned variants;
    double timeout_s;    /* per request */
    uint64_t seed;
    int quiet, json;
    int print_body; /* write the first variant's body (the frame for binary) to stdout and stop */
} bench_opts;

/* Runs the benchmark and prints its report to stdout (text or one JSON
 * object). Returns the exit status: 0, 1 when a response was wrong or a
 * request failed (503s alone do not fail a run), 2 for a usage error. */
int bench_run(const bench_opts *o);
