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
    EP_OTHER,
    EP_COUNT
} metrics_endpoint;

typedef struct metrics metrics;

/* model_names: the served models, indexed as in metrics_* calls. */
metrics *metrics_create(const char *const *model_names, size_t n_models);
void metrics_destroy(metrics *m);

/*
 * One finished request: model index or -1, endpoint, the HTTP status sent
 * (0 when the client left before an answer), and its time from the first
 * byte of headers to the end of the response.
 */
void metrics_request(metrics *m, int model, metrics_endpoint ep, unsigned status,
                     uint64_t e2e_ns);

/* One successful infer: its size and where its time went. */
typedef struct metrics_infer_sample {
    size_t rows, bytes_in, bytes_out;
    uint64_t decode_ns;  /* JSON -> rows (Triton: compute_input) */
    uint64_t queue_ns;   /* the first job's wait in the queue */
    uint64_t compute_ns; /* kernel time summed over the jobs (compute_infer) */
    uint64_t encode_ns;  /* results -> JSON (compute_output) */
} metrics_infer_sample;

void metrics_infer(metrics *m, int model, const metrics_infer_sample *s);

/* Adds busy time of one worker (compute only). */
void metrics_worker_busy(metrics *m, uint64_t ns);

/*
 * Triton's statistics extension document for one model (model >= 0) or all
 * (-1): inference_stats success/fail/queue/compute_input/compute_infer/
 * compute_output (cache_hit/cache_miss always 0: there is no cache) and
 * batch_stats per rows-per-request (the first METRICS_BATCH_SIZES distinct
 * sizes seen; later new sizes are left out of batch_stats only).
 * malloc'd, NUL-terminated.
 */
#define METRICS_BATCH_SIZES 64
char *metrics_render_triton_stats(metrics *m, int model);

/* The text exposition; gauges are passed in. malloc'd, NUL-terminated. */
char *metrics_render(metrics *m, size_t queue_depth, size_t queue_capacity,
                     unsigned open_connections, int n_workers);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t metrics_now_ns(void);
