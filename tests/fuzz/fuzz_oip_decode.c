/*
 * fuzz_oip_decode.c -- libFuzzer harness for the OIP infer request decoder
 * (proto/oip.c: oip_decode_infer) and, on every accepted request, the
 * response encoder (oip_encode_infer) on results made up from the request.
 * Differential as well: every body also goes through the full jansson
 * decoder alone (oip__decode_infer_path with force_full), which must give
 * the same status, message, id, outputs and float bits as the fast path.
 *
 * Input: one selector byte, then the request body. The low three bits of
 * the selector pick the model the body is checked against (any N or a
 * fixed dim, 1 to 4 groups, a name that needs escaping); bit 3 plants an
 * infinity in the results, which the encoder must refuse for a JSON output
 * and carry for a binary one. Bits 6-7 pick the
 * Inference-Header-Content-Length the decoder is given: 0 none
 * (OIP_JSON_ALL), 1 the body's length (perf_analyzer's pure JSON), 2 zero
 * (a raw FP32 body), 3 the next two bytes (little-endian), the body after
 * them. The corpus files start with a printable selector ('0'..'7',
 * '8'..'?' for the infinity; '@'..'O', 0x80.., 0xc0.. for the header
 * modes) so most stay readable. Limits are small (at most 64 x 512 floats), so an
 * accepted body never asks for a large buffer.
 *
 * Checked on every input, beyond what ASan and UBSan see:
 *   - fast path and full decode agree exactly (oip_internal.h);
 *   - rejected: LNS_EBADREQ, a non-empty printable-ASCII message that fits
 *     in OIP_ERR_MAX, and a request that holds nothing;
 *   - accepted: the contract of oip.h (shape within the model's limits,
 *     n_rows * n_cols finite floats, each output at most once, id length);
 *   - encoded: the response parses with jansson, echoes model name and id,
 *     has the requested outputs in order with the right shapes, and every
 *     value reads back as the float32 that was printed.
 * A failed check aborts, so libFuzzer saves the input as a crash.
 */
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/half.h"
#include "../../proto/oip.h"
#include "../../proto/oip_internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_oip_decode: check failed at line %d: %s\n", \
                    __LINE__, #cond);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

static const oip_model_info models[8] = {
    {.name = "any", .kind = LN_KIND_LAYERNORM, .dim = 0, .groups = 1,
     .max_rows = 64, .max_n = 512},
    {.name = "any_g4", .kind = LN_KIND_RMSNORM, .dim = 0, .groups = 4,
     .max_rows = 64, .max_n = 512},
    {.name = "ln8", .kind = LN_KIND_LAYERNORM, .dim = 8, .groups = 1,
     .max_rows = 16, .max_n = 512, .has_plane = 1, .max_axes = 7},
    {.name = "rms8_g4", .kind = LN_KIND_RMSNORM, .dim = 8, .groups = 4,
     .max_rows = 16, .max_n = 512},
    {.name = "ln1", .kind = LN_KIND_LAYERNORM, .dim = 1, .groups = 1,
     .max_rows = 64, .max_n = 512},
    /* groups 0: the codec treats it as 1. */
    {.name = "any_g0", .kind = LN_KIND_LAYERNORM, .dim = 0, .groups = 0,
     .max_rows = 8, .max_n = 64},
    {.name = "tiny_g3", .kind = LN_KIND_RMSNORM, .dim = 0, .groups = 3,
     .max_rows = 1, .max_n = 3},
    /* A name the encoder must escape: quote, backslash, control, UTF-8. */
    {.name = "q\"\\\t\x01\xc3\xa9", .kind = LN_KIND_LAYERNORM, .dim = 4,
     .groups = 2, .max_rows = 16, .max_n = 512},
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* jansson seeds its hash from /dev/urandom; a fixed seed makes a crash
     * replay the same way. */
    json_object_seed(1);
    return 0;
}

/* Whether d, the double jansson read from the printed text, stands for the
 * float32 v: it rounds to v, or (strtod and the cast round twice) lies
 * within v's rounding interval. -0.0 must keep its sign. */
static int reads_as(double d, float v)
{
    double lo, hi;

    if (v == 0.0f && signbit(d) != signbit(v))
        return 0;
    if ((float)d == v)
        return 1;
    lo = ((double)v + (double)nextafterf(v, -INFINITY)) / 2;
    hi = ((double)v + (double)nextafterf(v, INFINITY)) / 2;
    return d >= lo && d <= hi;
}

/* v as an element of a dt tensor holds it (rounded once from float32). */
static float in_dtype(oip_dtype dt, float v)
{
    if (dt == OIP_DT_FP16)
        return half_fp16_to_f32(half_f32_to_fp16(v));
    if (dt == OIP_DT_BF16)
        return half_bf16_to_f32(half_f32_to_bf16(v));
    return v;
}

/* Element i of a binary tensor of datatype dt, widened to double. */
static double bin_value(const char *p, oip_dtype dt, size_t i)
{
    uint16_t h;
    float f;
    double d;

    switch (dt) {
    case OIP_DT_FP16:
        memcpy(&h, p + 2 * i, 2);
        return half_fp16_to_f32(h);
    case OIP_DT_BF16:
        memcpy(&h, p + 2 * i, 2);
        return half_bf16_to_f32(h);
    case OIP_DT_FP64:
        memcpy(&d, p + 8 * i, 8);
        return d;
    default:
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
}

/* Checks one encoded output tensor against the values it was built from:
 * in JSON "data", or (binary) in the bytes at *blob, which it steps past. */
static void check_tensor(const json_t *t, const char *name, oip_dtype dt,
                         int binary, const char **blob, const char *end,
                         size_t d0, size_t d1, const float *v)
{
    const json_t *shape = json_object_get(t, "shape");
    const json_t *vals = json_object_get(t, "data");
    size_t count = d1 ? d0 * d1 : d0;

    CHECK(json_is_object(t));
    CHECK(json_is_string(json_object_get(t, "name")));
    CHECK(strcmp(json_string_value(json_object_get(t, "name")), name) == 0);
    CHECK(json_is_string(json_object_get(t, "datatype")));
    CHECK(strcmp(json_string_value(json_object_get(t, "datatype")),
                 oip_dtype_name(dt)) == 0);
    CHECK(json_is_array(shape));
    CHECK(json_array_size(shape) == (d1 ? 2u : 1u));
    CHECK(json_integer_value(json_array_get(shape, 0)) == (json_int_t)d0);
    if (d1)
        CHECK(json_integer_value(json_array_get(shape, 1)) ==
              (json_int_t)d1);
    if (binary) {
        size_t bytes = count * oip_dtype_size(dt);
        const json_t *bds = json_object_get(
            json_object_get(t, "parameters"), "binary_data_size");
        CHECK(vals == NULL);
        CHECK(json_is_integer(bds));
        CHECK(json_integer_value(bds) == (json_int_t)bytes);
        CHECK((size_t)(end - *blob) >= bytes);
        for (size_t i = 0; i < count; i++) {
            double got = bin_value(*blob, dt, i);
            double want = in_dtype(dt, v[i]);
            CHECK((isnan(got) && isnan(want)) ||
                  memcmp(&got, &want, sizeof got) == 0);
        }
        *blob += bytes;
        return;
    }
    CHECK(json_is_array(vals));
    CHECK(json_array_size(vals) == count);
    for (size_t i = 0; i < count; i++) {
        const json_t *x = json_array_get(vals, i);
        CHECK(json_is_real(x)); /* never an integer: -0.0 keeps its sign */
        if (dt == OIP_DT_FP64) /* the float32 result, widened exactly */
            CHECK(json_real_value(x) == (double)v[i]);
        else
            CHECK(reads_as(json_real_value(x), in_dtype(dt, v[i])));
    }
}

static void check_rejected(lns_status s, const oip_request *req,
                           const char *err)
{
    size_t len = strnlen(err, OIP_ERR_MAX);

    CHECK(s == LNS_EBADREQ);
    CHECK(len > 0 && len < OIP_ERR_MAX);
    for (size_t i = 0; i < len; i++)
        CHECK(err[i] >= 0x20 && err[i] <= 0x7e);
    CHECK(req->data == NULL && req->n_rows == 0 && req->n_cols == 0);
}

static void check_accepted(const oip_model_info *m, const oip_request *req)
{
    size_t groups = m->groups ? m->groups : 1;
    int seen[OIP_OUT_COUNT] = {0};

    CHECK(req->n_rows >= 1 && req->n_rows <= m->max_rows);
    CHECK(req->n_cols >= 1);
    CHECK(m->dim ? req->n_cols == m->dim : req->n_cols <= m->max_n);
    CHECK(req->n_cols % groups == 0);
    CHECK(req->data != NULL);
    for (size_t i = 0; i < req->n_rows * req->n_cols; i++)
        CHECK(isfinite(req->data[i]));
    CHECK(req->n_outputs >= 1 && req->n_outputs <= OIP_OUT_COUNT);
    CHECK((unsigned)req->dtype < OIP_DT_COUNT);
    for (size_t i = 0; i < req->n_rows * req->n_cols; i++)
        CHECK(in_dtype(req->dtype, req->data[i]) == req->data[i]);
    for (size_t i = 0; i < req->n_outputs; i++) {
        CHECK(req->binary[i] <= 1);
        CHECK((unsigned)req->outputs[i] < OIP_OUT_COUNT);
        CHECK(!seen[req->outputs[i]]);
        seen[req->outputs[i]] = 1;
    }
    if (req->has_id)
        CHECK(strnlen(req->id, sizeof req->id) <= OIP_ID_MAX);
}

/* Made-up, finite results derived from the input values, so the float
 * printer sees whatever values the fuzzer can put into a request. With
 * poison set one value is infinite and the encoder must refuse. */
static void encode_and_check(const oip_model_info *m, const oip_request *req,
                             int poison)
{
    size_t rows = req->n_rows, cols = req->n_cols;
    size_t groups = m->groups ? m->groups : 1, per = cols / groups;
    float *y = malloc(rows * cols * sizeof(float));
    float *mean = malloc(rows * groups * sizeof(float));
    float *rstd = malloc(rows * groups * sizeof(float));
    float *radius = malloc(rows * sizeof(float));
    float *axes = calloc(rows * (req->axes_k ? req->axes_k : 1), sizeof(float));
    /* The opt-in outputs share the arrays above (poisoning one of those
     * poisons them too): depth and condition are [B] like radius,
     * plane_residual [B, G] like mean. */
    oip_result res = {.y = y, .mean = mean, .rstd = rstd, .radius = radius,
                      .depth = radius, .condition = radius,
                      .plane_residual = mean, .axes = axes};
    json_t *doc, *outs;
    json_error_t je;
    char *out = NULL;
    const char *blob;
    size_t out_len = 0, json_len = 0, n_binary = 0;
    lns_status s;

    CHECK(y && mean && rstd && radius && axes);
    memcpy(y, req->data, rows * cols * sizeof(float));
    for (size_t r = 0; r < rows; r++) {
        for (size_t g = 0; g < groups; g++) {
            float x = req->data[r * cols + g * per];
            mean[r * groups + g] = x;
            rstd[r * groups + g] = 1.0f / (1.0f + fabsf(x));
        }
        radius[r] = req->data[r * cols] * 0.5f;
    }
    if (poison) {
        /* Poison the first requested output, so the refusal is certain. */
        switch (req->outputs[0]) {
        case OIP_OUT_OUTPUT:
            y[rows * cols - 1] = INFINITY;
            break;
        case OIP_OUT_MEAN:
        case OIP_OUT_PLANE_RESIDUAL:
            mean[0] = -INFINITY;
            break;
        case OIP_OUT_AXES:
            axes[0] = INFINITY;
            break;
        case OIP_OUT_RSTD:
            rstd[0] = NAN;
            break;
        default:
            radius[rows - 1] = INFINITY;
            break;
        }
        /* JSON cannot carry it; a binary output carries it as is. */
        if (!req->binary[0]) {
            s = oip_encode_infer(m, req, &res, &out, &out_len, &json_len);
            CHECK(s == LNS_EBADREQ);
            CHECK(out == NULL && out_len == 0 && json_len == 0);
            goto cleanup;
        }
    }

    s = oip_encode_infer(m, req, &res, &out, &out_len, &json_len);
    CHECK(s == LNS_OK);
    CHECK(out != NULL && out_len > 0);
    for (size_t i = 0; i < req->n_outputs; i++)
        n_binary += req->binary[i];
    CHECK(json_len <= out_len);
    CHECK((json_len < out_len) == (n_binary > 0));
    blob = out + json_len;
    doc = json_loadb(out, json_len, JSON_REJECT_DUPLICATES, &je);
    if (!doc)
        fprintf(stderr, "fuzz_oip_decode: response is not JSON (%s): %.*s\n",
                je.text, (int)(out_len < 512 ? out_len : 512), out);
    CHECK(doc != NULL);
    CHECK(json_is_string(json_object_get(doc, "model_name")));
    CHECK(strcmp(json_string_value(json_object_get(doc, "model_name")),
                 m->name) == 0);
    if (req->has_id) {
        CHECK(json_is_string(json_object_get(doc, "id")));
        CHECK(strcmp(json_string_value(json_object_get(doc, "id")),
                     req->id) == 0);
    } else {
        CHECK(json_object_get(doc, "id") == NULL);
    }
    outs = json_object_get(doc, "outputs");
    CHECK(json_is_array(outs));
    CHECK(json_array_size(outs) == req->n_outputs);
    for (size_t i = 0; i < req->n_outputs; i++) {
        oip_output o = req->outputs[i];
        const json_t *t = json_array_get(outs, i);
        const char *name = oip_output_name(o);

        int bin = req->binary[i];
        const char *end = out + out_len;

        switch (o) {
        case OIP_OUT_OUTPUT:
            check_tensor(t, name, req->dtype, bin, &blob, end, rows, cols, y);
            break;
        case OIP_OUT_MEAN:
            check_tensor(t, name, OIP_DT_FP32, bin, &blob, end, rows, groups,
                         mean);
            break;
        case OIP_OUT_RSTD:
            check_tensor(t, name, OIP_DT_FP32, bin, &blob, end, rows, groups,
                         rstd);
            break;
        case OIP_OUT_PLANE_RESIDUAL:
            check_tensor(t, name, OIP_DT_FP32, bin, &blob, end, rows, groups,
                         mean);
            break;
        case OIP_OUT_AXES:
            check_tensor(t, name, OIP_DT_FP32, bin, &blob, end, rows,
                         req->axes_k, axes);
            break;
        default:
            check_tensor(t, name, OIP_DT_FP32, bin, &blob, end, rows, 0,
                         radius);
            break;
        }
    }
    CHECK(blob == out + out_len); /* the blobs fill the rest exactly */
    json_decref(doc);

cleanup:
    free(out);
    free(y);
    free(mean);
    free(rstd);
    free(radius);
    free(axes);
}

/* The fast path's answer (a, err_a) must be the full decode's (b, err_b). */
static void check_same(lns_status sa, const oip_request *a, const char *err_a,
                       lns_status sb, const oip_request *b, const char *err_b)
{
    if (sa != sb || strcmp(err_a, err_b) != 0)
        fprintf(stderr,
                "fuzz_oip_decode: decoders disagree:\n"
                "  fast: %d %s\n  full: %d %s\n",
                (int)sa, err_a, (int)sb, err_b);
    CHECK(sa == sb);
    CHECK(strcmp(err_a, err_b) == 0);
    CHECK(a->n_rows == b->n_rows && a->n_cols == b->n_cols);
    CHECK(a->n_outputs == b->n_outputs);
    CHECK(memcmp(a->outputs, b->outputs,
                 a->n_outputs * sizeof *a->outputs) == 0);
    CHECK(memcmp(a->binary, b->binary, a->n_outputs) == 0);
    CHECK(a->dtype == b->dtype);
    CHECK(a->has_id == b->has_id);
    if (a->has_id)
        CHECK(strcmp(a->id, b->id) == 0);
    CHECK(!a->data == !b->data);
    /* memcmp, not ==: the same bits, -0.0 and all. */
    if (a->data)
        CHECK(memcmp(a->data, b->data,
                     a->n_rows * a->n_cols * sizeof(float)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const oip_model_info *m;
    oip_request req, full;
    char err[OIP_ERR_MAX], err_full[OIP_ERR_MAX];
    char *body;
    size_t len, json_len;
    lns_status s, s_full;
    int poison, used_fast = 0;

    if (size < 1)
        return 0;
    m = &models[data[0] & 7];
    poison = (data[0] >> 3) & 1;
    len = size - 1;
    switch (data[0] >> 6) {
    case 0:
        json_len = OIP_JSON_ALL;
        break;
    case 1:
        json_len = len;
        break;
    case 2:
        json_len = 0;
        break;
    default:
        if (size < 3)
            return 0;
        json_len = (size_t)data[1] | (size_t)data[2] << 8;
        data += 2;
        len -= 2;
        break;
    }
    /* The body in a buffer of its own, exactly len bytes with no NUL
     * after them, so ASan catches any read past the end. */
    body = malloc(len ? len : 1);
    CHECK(body != NULL);
    memcpy(body, data + 1, len);
    memset(err, 0x55, sizeof err);
    memset(err_full, 0x55, sizeof err_full);
    s = oip__decode_infer_path(body, len, json_len, m, &req, err, 0,
                               &used_fast);
    s_full = oip__decode_infer_path(body, len, json_len, m, &full, err_full,
                                    1, NULL);
    free(body);
    check_same(s, &req, err, s_full, &full, err_full);
    oip_request_fini(&full);
    if (s != LNS_OK) {
        check_rejected(s, &req, err);
        oip_request_fini(&req); /* holds nothing; must be harmless */
        return 0;
    }
    check_accepted(m, &req);
    encode_and_check(m, &req, poison);
    oip_request_fini(&req);
    CHECK(req.data == NULL);
    return 0;
}
