/*
 * triton.h -- documents of Triton's HTTP extensions that lnserve serves
 * beside the Open Inference Protocol core (proto/oip.h): the model
 * configuration that perf_analyzer and tritonclient read.
 *
 * Pure functions; jansson for the encoding; any thread.
 */
#pragma once

#include "oip.h"

/* The server's dynamic batching (server.max_batch_rows,
 * server.max_queue_delay_us). */
typedef struct triton_batching {
    size_t max_batch_rows;
    unsigned long long max_queue_delay_us;
} triton_batching;

/*
 * GET /v2/models/{m}/config in Triton's model-configuration JSON shape:
 * name, platform/backend "lnserve", max_batch_size (= max_rows: the batch
 * dimension is the rows), input "input" and outputs with data_type and dims
 * excluding the batch dimension (-1 for a model that takes any N; radius,
 * one value per row, as dims [1] reshaped to [] as Triton writes it), and
 * instance_group with n_workers CPU instances, and parameters
 * {"accepted_datatypes": {"string_value": "FP32,FP16,BF16,FP64"}}: the
 * tensors say TYPE_FP32, but "input" (and with it "output") may be any of
 * those, and "max_batch_rows" with b->max_batch_rows; and dynamic_batching
 * {"max_queue_delay_microseconds": b->max_queue_delay_us,
 * "preserve_ordering": false, and "preferred_batch_size":
 * [b->max_batch_rows] when that is above 1 and at most max_batch_size:
 * the rows a worker batch aims for}. malloc'd, NUL-terminated; NULL on
 * allocation failure.
 */
char *triton_encode_model_config(const oip_model_info *m, int n_workers,
                                 const triton_batching *b);
