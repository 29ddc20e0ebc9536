#include "triton.h"

#include <jansson.h>
#include <stdio.h>

static json_t *tensor(const char *name, json_int_t dim, int batch_only)
{
    json_t *t = json_pack("{s:s, s:s, s:[I]}", "name", name, "data_type", "TYPE_FP32", "dims",
                          batch_only ? (json_int_t)1 : dim);
    if (t && batch_only)
        json_object_set_new(t, "reshape", json_pack("{s:[]}", "shape"));
    return t;
}

char *triton_encode_model_config(const oip_model_info *m, int n_workers,
                                 const triton_batching *b)
{
    json_int_t n = m->dim ? (json_int_t)m->dim : -1;
    json_int_t g = (json_int_t)m->groups;
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:I, s:[o], s:[o,o,o,o], s:[{s:s, s:i}]}", "name", m->name,
        "platform", "lnserve", "backend", "lnserve", "max_batch_size", (json_int_t)m->max_rows,
        "input", tensor("input", n, 0), "output", tensor("output", n, 0), tensor("mean", g, 0),
        tensor("rstd", g, 0), tensor("radius", 0, 1), "instance_group", "kind", "KIND_CPU",
        "count", n_workers);
    if (!doc)
        return NULL;
    /* Triton's config has one data_type per tensor: TYPE_FP32, what the
     * kernel computes in. FP16, BF16 and FP64 inputs are accepted too
     * (proto/oip.h); say so in the config's free-form parameters, which
     * Triton's clients and perf_analyzer ignore. */
    char rows[32];
    snprintf(rows, sizeof rows, "%zu", b->max_batch_rows);
    json_object_set_new(doc, "parameters",
                        json_pack("{s:{s:s}, s:{s:s}}", "accepted_datatypes", "string_value",
                                  "FP32,FP16,BF16,FP64", "max_batch_rows", "string_value",
                                  rows));
    /* Triton's dynamic batcher settings, as lnserve's workers apply them
     * (server/batch.h): the delay counts from a job's arrival in the
     * queue, like Triton's. Binary-protocol responses may overtake each
     * other on a connection, so no preserve_ordering. */
    json_t *db = json_pack("{s:I, s:b}", "max_queue_delay_microseconds",
                           (json_int_t)b->max_queue_delay_us, "preserve_ordering", 0);
    if (db && b->max_batch_rows > 1 && b->max_batch_rows <= m->max_rows)
        json_object_set_new(db, "preferred_batch_size",
                            json_pack("[I]", (json_int_t)b->max_batch_rows));
    json_object_set_new(doc, "dynamic_batching", db);
    char *out = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return out;
}
