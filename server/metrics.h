/*
 * metrics.h -- counters and histograms for GET /metrics (Prometheus text
 * format 0.0.4), with Triton's nv_inference_* names beside lnserve's own
 * so existing Triton dashboards work.
 *
 * Threads: every update is a relaxed atomic add on a counter that no one
 * reads for synchronization; any thread may update, any thread may render.
 * A rendering is not a consistent snapshot across counters (Prometheus
 * does not need one). Created once in main before threads start.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Endpoint label values; keep in step with metrics.c's names. */
typedef enum metrics_endpoint {
    EP_LIVE = 0,
    EP_READY,
    EP_SERVER_META,
    EP_MODEL_META,
    EP_MODEL_READY,
    EP_MODEL_CONFIG,
    EP_MODEL_STATS,
    EP_MODEL_GEOMETRY,
    EP_INFER,
    EP_METRICS,
    EP_PING, /* binary protocol PING */
    EP_OTHER,
    EP_COUNT
} metrics_endpoint;

/* Protocol label values: HTTP (libmicrohttpd) or the binary protocol
 * (io_uring, proto/frame.md). */
typedef enum metrics_protocol { MP_HTTP = 0, MP_BINARY, MP_COUNT } metrics_protocol;

typedef struct metrics metrics;

/* model_names: the served models, indexed as in metrics_* calls. */
metrics *metrics_create(const char *const *model_names, size_t n_models);
void metrics_destroy(metrics *m);

/*
 * One finished request: model index or -1, endpoint, protocol, the HTTP
 * status sent (binary: the HTTP status of its lns_status, proto/status.h;
 * 0 when the client left before an answer), and its time in the server
 * (HTTP: from the first byte of headers to the end of the response;
 * binary: from its frame being parsed to its response being queued).
 */
void metrics_request(metrics *m, int model, metrics_endpoint ep, metrics_protocol proto,
                     unsigned status, uint64_t e2e_ns);

/* One successful infer: its size and where its time went. */
typedef struct metrics_infer_sample {
    size_t rows, bytes_in, bytes_out;
    uint64_t decode_ns;  /* JSON -> rows (Triton: compute_input) */
    uint64_t queue_ns;   /* from the push to the first job's start: the queue
                            and any dynamic batching delay (Triton: queue) */
    uint64_t compute_ns; /* kernel time summed over the jobs (compute_infer) */
    uint64_t encode_ns;  /* results -> JSON (compute_output) */
} metrics_infer_sample;

void metrics_infer(metrics *m, int model, const metrics_infer_sample *s);

/* Adds busy time of one worker (compute only). */
void metrics_worker_busy(metrics *m, uint64_t ns);

/* One model's share of one worker batch: a model execution (Triton's
 * execution_count and batch_stats, batch_size = rows). */
typedef struct metrics_batch_sample {
    size_t rows;
    uint64_t input_ns;  /* decode time of the requests whose first job ran */
    uint64_t infer_ns;  /* kernel time of its jobs */
    uint64_t output_ns; /* encode time of the requests finished in it */
} metrics_batch_sample;

void metrics_batch(metrics *m, int model, const metrics_batch_sample *s);

/* One worker batch, all models: how many jobs it took and how long the
 * worker waited for more (server.max_queue_delay_us). */
void metrics_batch_gathered(metrics *m, size_t n_jobs, uint64_t waited_ns);

/*
 * Triton's statistics extension document for one model (model >= 0) or all
 * (-1), every field of the extension (name, version "1", last_inference,
 * inference_count = rows, execution_count = model executions (worker
 * batches), inference_stats success/fail/queue/compute_input/
 * compute_infer/compute_output/cache_hit/cache_miss (the cache ones
 * always 0: there is no cache), and batch_stats per rows per execution
 * (the first METRICS_BATCH_SIZES distinct sizes seen; later new sizes are
 * left out of batch_stats only). HTTP and binary requests alike.
 * malloc'd, NUL-terminated.
 */
#define METRICS_BATCH_SIZES 64
char *metrics_render_triton_stats(metrics *m, int model);

/* The text exposition; gauges are passed in. malloc'd, NUL-terminated. */
char *metrics_render(metrics *m, size_t queue_depth, size_t queue_capacity,
                     unsigned open_connections, int n_workers);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t metrics_now_ns(void);
