/*
 * oip.c -- Open Inference Protocol v2 JSON codec (see oip.h for the
 * contract).
 *
 * Decoding parses the body with jansson (duplicate keys rejected, so a
 * document has one meaning) and walks the tree checking the type of every
 * node before it is read: the decoder is fed untrusted bytes and will be
 * fuzzed. Nothing is allocated for the tensor until every size has been
 * checked against the document itself, so a small body can never ask for a
 * large buffer.
 *
 * Two decoders, one answer. jansson reads ~4.4 M numbers/s, far too slow
 * for the tensor (PERF-NOTES "The wire"), so oip_decode_infer first tries a
 * fast path: find the text of inputs[0].data (locate_data), read it with
 * f32text_parse (scan_data: only a flat or once-nested array of numbers,
 * each finite in FP32), and give jansson the document with that array
 * replaced by [] to check the envelope. Anything the fast path does not
 * recognise -- another shape of data, a number out of range, any error
 * from jansson on the spliced document -- reruns the full jansson decode
 * on the original body, which is the reference: the fast path only ever
 * answers for a document the full decode would read to the same floats and
 * the same verdict, and tests/test_proto.c fuzzes one against the other.
 *
 * Numbers: a value is the correctly rounded float32 of its decimal text
 * (f32text_parse, fast_float), not the float32 of jansson's double: going
 * through double rounds twice, and differs when the double lands exactly
 * on a float32 midpoint. So the full decode too takes each value from the
 * text (text_values), using jansson only for structure and types. One rule
 * follows jansson rather than the text: an integer literal is an integer,
 * so "-0" is 0 (+0.0f); write -0.0 for a negative zero (the encoder does).
 *
 * Choices the header leaves open:
 *   - an output named twice in "outputs" is rejected (400), not merged;
 *   - "outputs": [] means the defaults, like a missing "outputs";
 *   - binary inputs (Triton's binary tensor data extension) go through
 *     the full decode: the JSON header is small, and the values are read
 *     from the bytes (read_binary), not from text;
 *   - binary outputs may be asked for without the request header (as
 *     Triton allows); the header only says where the request's JSON ends;
 *   - Inference-Header-Content-Length: 0 (a raw FP32 body) is answered in
 *     JSON: there is no header in which the client could ask otherwise;
 *   - error messages are plain ASCII: strings echoed from the request are
 *     cut to ECHO_MAX bytes and anything outside printable ASCII becomes '?'.
 *
 * Encoding the infer response is done by hand into one growing buffer:
 * building a jansson tree would cost a malloc per number. Every float goes
 * through buf_put_array() and f32text_print_array(), the one place that
 * decides how floats are printed (shortest round trip, see there).
 * A result value that is not finite (a float32 overflow caused by a large
 * gain or bias) cannot be written in JSON: oip_encode_infer returns
 * LNS_EBADREQ for it, and the caller reports the overflow.
 */
#include "oip.h"
#include "oip_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "f32text.h"
#include "half.h"

/* Binary tensor data is little-endian (Triton's extension); lnserve reads
 * it with memcpy into native floats. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "proto/oip.c reads binary tensor data as native little-endian"
#endif

/* Longest piece of a client string quoted back in an error message. */
#define ECHO_MAX 40

/*
 * Smallest magnitude that rounds to infinity in float32 (round to nearest,
 * ties to even): FLT_MAX plus half an ulp. Comparing the double against it
 * avoids converting an out-of-range double to float, which C leaves
 * undefined.
 */
#define F32_OVERFLOW 0x1.ffffffp127

static const char *const output_names[OIP_OUT_COUNT] = {
    [OIP_OUT_OUTPUT] = "output",
    [OIP_OUT_MEAN] = "mean",
    [OIP_OUT_RSTD] = "rstd",
    [OIP_OUT_RADIUS] = "radius",
    [OIP_OUT_DEPTH] = "depth",
    [OIP_OUT_CONDITION] = "condition",
    [OIP_OUT_PLANE_RESIDUAL] = "plane_residual",
    [OIP_OUT_AXES] = "axes",
    [OIP_OUT_JACOBIAN_FRO] = "jacobian_fro",
    [OIP_OUT_NONLINEARITY] = "nonlinearity",
};

/* output_names[] as a list, for the errors that name what was expected. */
#define OUTPUT_LIST                                                            \
    "output, mean, rstd, radius, depth, condition, plane_residual, axes, " \
    "jacobian_fro, nonlinearity"

const char *oip_output_name(oip_output o)
{
    if ((unsigned)o >= OIP_OUT_COUNT)
        return "unknown";
    return output_names[o];
}

static const struct {
    const char *name;
    size_t size;
} dtypes[OIP_DT_COUNT] = {
    [OIP_DT_FP32] = {"FP32", 4},
    [OIP_DT_FP16] = {"FP16", 2},
    [OIP_DT_BF16] = {"BF16", 2},
    [OIP_DT_FP64] = {"FP64", 8},
};

const char *oip_dtype_name(oip_dtype d)
{
    return (unsigned)d < OIP_DT_COUNT ? dtypes[d].name : "unknown";
}

size_t oip_dtype_size(oip_dtype d)
{
    return (unsigned)d < OIP_DT_COUNT ? dtypes[d].size : 0;
}

/* v (a finite float32) rounded to d and widened back: what an element of a
 * d tensor holds. FP32 and FP64 (computed in float32) keep v. */
static float round_to(oip_dtype d, float v)
{
    switch (d) {
    case OIP_DT_FP16:
        return half_fp16_to_f32(half_f32_to_fp16(v));
    case OIP_DT_BF16:
        return half_bf16_to_f32(half_f32_to_bf16(v));
    default:
        return v;
    }
}

/* ---------------------------------------------------------------- errors */

static lns_status fail(char *err, lns_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the message into err (truncated to OIP_ERR_MAX incl. NUL, plain
 * ASCII) and returns s, so a check reads `return fail(err, ...)`. */
static lns_status fail(char *err, lns_status s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, OIP_ERR_MAX, fmt, ap);
    va_end(ap);
    for (char *p = err; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c > 0x7e)
            *p = '?';
    }
    return s;
}

/* Copies at most ECHO_MAX bytes of s into dst (ECHO_MAX + 4 bytes), adding
 * "..." when cut; fail() later makes it ASCII. */
static const char *echo(char dst[ECHO_MAX + 4], const char *s)
{
    size_t n = strlen(s);

    if (n <= ECHO_MAX) {
        memcpy(dst, s, n + 1);
    } else {
        memcpy(dst, s, ECHO_MAX);
        memcpy(dst + ECHO_MAX, "...", 4);
    }
    return dst;
}

/* "a string", "an object", ... for "expected X, got Y" messages. */
static const char *type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "null";
    }
    return "an unknown value";
}

/* ---------------------------------------------------------------- decode */

/* Datatypes of the OIP spec ("Tensor Data Types"). */
static const char *const oip_datatypes[] = {
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
    "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16",
};

static lns_status check_datatype(const json_t *in, oip_dtype *dtype,
                                 char *err)
{
    const json_t *dt = json_object_get(in, "datatype");
    char q[ECHO_MAX + 4];
    const char *s;

    if (!dt)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].datatype: missing (expected \"FP32\", "
                    "\"FP16\", \"BF16\" or \"FP64\")");
    if (!json_is_string(dt))
        return fail(err, LNS_EBADREQ,
                    "inputs[0].datatype: expected a string, got %s",
                    type_name(dt));
    s = json_string_value(dt);
    for (int d = 0; d < OIP_DT_COUNT; d++)
        if (strcmp(s, dtypes[d].name) == 0) {
            *dtype = (oip_dtype)d;
            return LNS_OK;
        }
    for (size_t i = 0; i < sizeof oip_datatypes / sizeof *oip_datatypes; i++)
        if (strcmp(s, oip_datatypes[i]) == 0)
            return fail(err, LNS_EBADREQ,
                        "inputs[0].datatype: %s is not a floating-point "
                        "type (expected FP32, FP16, BF16 or FP64)",
                        s);
    return fail(err, LNS_EBADREQ,
                "inputs[0].datatype: unknown datatype \"%s\" (expected one "
                "of BOOL, UINT8..64, INT8..64, FP16, FP32, FP64, BF16, "
                "BYTES; lnserve accepts FP32, FP16, BF16, FP64)",
                echo(q, s));
}

/* Reads inputs[0].shape into *b, *n and checks it against the model. */
static lns_status check_shape(const json_t *in, const oip_model_info *m,
                              size_t *b, size_t *n, char *err)
{
    const json_t *shape = json_object_get(in, "shape");
    size_t dims[2];
    size_t groups = m->groups ? m->groups : 1;

    if (!shape)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].shape: missing (expected [B, N])");
    if (!json_is_array(shape))
        return fail(err, LNS_EBADREQ,
                    "inputs[0].shape: expected an array [B, N], got %s",
                    type_name(shape));
    if (json_array_size(shape) != 2)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].shape: expected rank 2 [B, N], got rank %zu",
                    json_array_size(shape));
    for (size_t i = 0; i < 2; i++) {
        const json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d))
            return fail(err, LNS_EBADREQ,
                        "inputs[0].shape[%zu]: expected an integer >= 1, "
                        "got %s",
                        i, type_name(d));
        if (json_integer_value(d) < 1)
            return fail(err, LNS_EBADREQ,
                        "inputs[0].shape[%zu]: expected an integer >= 1, "
                        "got %lld",
                        i, (long long)json_integer_value(d));
        dims[i] = (size_t)json_integer_value(d);
    }
    if (dims[0] > m->max_rows)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].shape[0]: batch of %zu rows is over the "
                    "limit (expected at most %zu)",
                    dims[0], m->max_rows);
    if (m->dim > 0 && dims[1] != m->dim)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].shape[1]: model \"%s\" has N = %zu, got %zu",
                    m->name, m->dim, dims[1]);
    if (m->dim == 0 && dims[1] > m->max_n)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].shape[1]: row length %zu is over the limit "
                    "(expected at most %zu)",
                    dims[1], m->max_n);
    if (dims[1] % groups != 0)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].shape[1]: N = %zu is not divisible by the "
                    "model's %zu groups",
                    dims[1], groups);
    if (dims[0] > SIZE_MAX / sizeof(double) / dims[1])
        return fail(err, LNS_EBADREQ,
                    "inputs[0].shape: [%zu, %zu] is too large", dims[0],
                    dims[1]);
    *b = dims[0];
    *n = dims[1];
    return LNS_OK;
}

/* Layout messages, shared by the jansson walk (check_data_layout) and the
 * fast path (decode_fast) so both word every error alike. */

/* The top-level length of data against [b, n]. */
static lns_status check_data_len(size_t len, int nested, size_t b, size_t n,
                                 char *err)
{
    if (len == 0)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].data: empty (expected %zu numbers for shape "
                    "[%zu, %zu])",
                    b * n, b, n);
    if (!nested && len != b * n)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].data: %zu values do not match shape "
                    "[%zu, %zu] (expected %zu)",
                    len, b, n, b * n);
    if (nested && len != b)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].data: %zu rows do not match shape [%zu, %zu] "
                    "(expected %zu rows)",
                    len, b, n, b);
    return LNS_OK;
}

/* Row r of nested data holds row_len values. */
static lns_status check_row_len(size_t r, size_t row_len, size_t b, size_t n,
                                char *err)
{
    if (row_len == 0)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].data[%zu]: empty row (expected %zu "
                    "numbers)",
                    r, n);
    if (row_len != n)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].data[%zu]: %zu values do not match shape "
                    "[%zu, %zu] (expected %zu)",
                    r, row_len, b, n, n);
    return LNS_OK;
}

/*
 * Checks the layout of inputs[0].data against [b, n] without reading the
 * values: flat (b * n numbers) or nested (b arrays of n). Sets *nested.
 */
static lns_status check_data_layout(const json_t *data, size_t b, size_t n,
                                    int *nested, char *err)
{
    size_t len;
    lns_status s;

    if (!data)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].data: missing (expected %zu numbers, flat or "
                    "nested as [%zu, %zu])",
                    b * n, b, n);
    if (!json_is_array(data))
        return fail(err, LNS_EBADREQ,
                    "inputs[0].data: expected an array of numbers, got %s",
                    type_name(data));
    len = json_array_size(data);
    *nested = len > 0 && json_is_array(json_array_get(data, 0));
    s = check_data_len(len, *nested, b, n, err);
    if (s != LNS_OK || !*nested)
        return s;
    for (size_t r = 0; r < b; r++) {
        const json_t *row = json_array_get(data, r);
        if (!json_is_array(row))
            return fail(err, LNS_EBADREQ,
                        "inputs[0].data[%zu]: expected an array of %zu "
                        "numbers (nested data), got %s",
                        r, n, type_name(row));
        s = check_row_len(r, json_array_size(row), b, n, err);
        if (s != LNS_OK)
            return s;
    }
    return LNS_OK;
}

/* The message for a value at row r, column c that is not finite in the
 * tensor's datatype d; where says which part of the request held it. */
static lns_status not_finite(char *err, const char *where, size_t r,
                             size_t c, oip_dtype d)
{
    if (d == OIP_DT_FP64)
        return fail(err, LNS_EBADREQ,
                    "%s: value at row %zu, column %zu is not finite in FP32 "
                    "(lnserve computes FP64 inputs in FP32)",
                    where, r, c);
    return fail(err, LNS_EBADREQ,
                "%s: value at row %zu, column %zu is not finite in %s",
                where, r, c, oip_dtype_name(d));
}

/*
 * Converts one JSON value of row r, column c of a dtype tensor to float
 * into *out (rounded to dtype). text is
 * the value as read from its text (text_values), or NULL when that failed:
 * then the double jansson made is rounded to float32, which agrees with the
 * text except for decimals whose double is a float32 midpoint.
 */
static lns_status read_value(const json_t *v, size_t r, size_t c,
                             size_t flat_index, int nested, oip_dtype dtype,
                             const float *text, float *out, char *err)
{
    double d;

    if (json_is_integer(v)) {
        d = (double)json_integer_value(v);
    } else if (json_is_real(v)) {
        d = json_real_value(v);
    } else if (nested) {
        return fail(err, LNS_EBADREQ,
                    "inputs[0].data[%zu][%zu]: expected a number, got %s", r,
                    c, type_name(v));
    } else {
        return fail(err, LNS_EBADREQ,
                    "inputs[0].data[%zu]: expected a number, got %s",
                    flat_index, type_name(v));
    }
    if (text ? !isfinite(*text) : !(fabs(d) < F32_OVERFLOW))
        return not_finite(err, "inputs[0].data", r, c, dtype);
    *out = round_to(dtype, text ? *text : (float)d);
    if (!isfinite(*out))
        return not_finite(err, "inputs[0].data", r, c, dtype);
    return LNS_OK;
}

/* text: b * n values read from the text of data, or NULL (read_value). */
static lns_status read_data(const json_t *data, size_t b, size_t n,
                            int nested, oip_dtype dtype, const float *text,
                            float *x, char *err)
{
    lns_status s;

    for (size_t r = 0; r < b; r++) {
        const json_t *row = nested ? json_array_get(data, r) : NULL;
        for (size_t c = 0; c < n; c++) {
            size_t k = r * n + c;
            const json_t *v = nested ? json_array_get(row, c)
                                     : json_array_get(data, k);
            s = read_value(v, r, c, k, nested, dtype,
                           text ? &text[k] : NULL, &x[k], err);
            if (s != LNS_OK)
                return s;
        }
    }
    return LNS_OK;
}

/*
 * The b * n values of a dtype tensor from its binary bytes (exactly
 * b * n * size of them, unaligned: memcpy per element) into x as float32.
 * Every value must be finite in dtype; FP64 ones also once rounded to
 * float32 (compared as doubles first: converting an out-of-range double to
 * float is undefined in C).
 */
static lns_status read_binary(const char *p, size_t b, size_t n,
                              oip_dtype dtype, float *x, char *err)
{
    static const char where[] = "inputs[0] (binary data)";
    size_t count = b * n;

    switch (dtype) {
    case OIP_DT_FP32:
        memcpy(x, p, count * sizeof(float));
        for (size_t k = 0; k < count; k++)
            if (!isfinite(x[k]))
                return not_finite(err, where, k / n, k % n, dtype);
        return LNS_OK;
    case OIP_DT_FP16:
    case OIP_DT_BF16:
        for (size_t k = 0; k < count; k++) {
            uint16_t h;
            memcpy(&h, p + 2 * k, 2);
            x[k] = dtype == OIP_DT_FP16 ? half_fp16_to_f32(h)
                                        : half_bf16_to_f32(h);
            if (!isfinite(x[k]))
                return not_finite(err, where, k / n, k % n, dtype);
        }
        return LNS_OK;
    case OIP_DT_FP64:
        for (size_t k = 0; k < count; k++) {
            double d;
            memcpy(&d, p + 8 * k, 8);
            if (!(fabs(d) < F32_OVERFLOW))
                return not_finite(err, where, k / n, k % n, dtype);
            x[k] = (float)d;
        }
        return LNS_OK;
    default:
        return fail(err, LNS_EINTERNAL, "inputs[0]: bad datatype");
    }
}

/* "parameters" must be an object when present; *params is NULL if absent. */
static lns_status get_params(const json_t *parent, const char *path,
                             const json_t **params, char *err)
{
    const json_t *p = json_object_get(parent, "parameters");

    *params = NULL;
    if (!p)
        return LNS_OK;
    if (!json_is_object(p))
        return fail(err, LNS_EBADREQ,
                    "%sparameters: expected an object, got %s", path,
                    type_name(p));
    *params = p;
    return LNS_OK;
}

/* A boolean parameter: *out keeps its value (the default) when absent. */
static lns_status get_bool(const json_t *params, const char *path,
                           const char *key, int *out, char *err)
{
    const json_t *v = params ? json_object_get(params, key) : NULL;

    if (!v)
        return LNS_OK;
    if (!json_is_boolean(v))
        return fail(err, LNS_EBADREQ,
                    "%sparameters.%s: expected a boolean, got %s", path, key,
                    type_name(v));
    *out = json_is_true(v);
    return LNS_OK;
}

/* outputs, and whether each goes back as binary data; binary_all is the
 * request's parameters.binary_data_output (decode_envelope checked it). */
/* K of the axes output: the request's parameters.axes, else the default,
 * within what the model has (its longest axes, solved at load). */
static lns_status decode_axes_k(const json_t *root, const oip_model_info *m,
                                oip_request *req, char *err)
{
    const json_t *params = json_object_get(root, "parameters");
    const json_t *k = json_is_object(params) ? json_object_get(params, "axes") : NULL;

    if (m->max_axes == 0)
        return fail(err, LNS_EBADREQ,
                    "outputs: axes needs a layernorm model with a fixed dim "
                    "of 2 or more per group (model \"%s\" is not)",
                    m->name);
    if (!k) {
        req->axes_k = m->max_axes < OIP_AXES_DEFAULT ? m->max_axes : OIP_AXES_DEFAULT;
        return LNS_OK;
    }
    if (!json_is_integer(k) || json_integer_value(k) < 1 ||
        (unsigned long long)json_integer_value(k) > m->max_axes)
        return fail(err, LNS_EBADREQ,
                    "parameters.axes: expected an integer in 1..%zu (the "
                    "longest axes of model \"%s\")",
                    m->max_axes, m->name);
    req->axes_k = (size_t)json_integer_value(k);
    return LNS_OK;
}

static lns_status decode_outputs(const json_t *root, const oip_model_info *m,
                                 int binary_all, oip_request *req, char *err)
{
    const json_t *outs = json_object_get(root, "outputs");
    char q[ECHO_MAX + 4];
    char path[48];
    size_t n;
    lns_status s;

    if (!outs || (json_is_array(outs) && json_array_size(outs) == 0)) {
        for (size_t i = 0; i < OIP_OUT_DEFAULTS; i++) {
            req->outputs[i] = (oip_output)i;
            req->binary[i] = (unsigned char)binary_all;
        }
        req->n_outputs = OIP_OUT_DEFAULTS;
        return LNS_OK;
    }
    if (!json_is_array(outs))
        return fail(err, LNS_EBADREQ,
                    "outputs: expected an array of {\"name\": ...}, got %s",
                    type_name(outs));
    n = json_array_size(outs);
    req->n_outputs = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(outs, i);
        const json_t *name, *params;
        const char *nm;
        size_t k;
        int binary = binary_all;

        if (!json_is_object(o))
            return fail(err, LNS_EBADREQ,
                        "outputs[%zu]: expected an object {\"name\": ...}, "
                        "got %s",
                        i, type_name(o));
        name = json_object_get(o, "name");
        if (!name)
            return fail(err, LNS_EBADREQ,
                        "outputs[%zu].name: missing (expected one of " OUTPUT_LIST ")",
                        i);
        if (!json_is_string(name))
            return fail(err, LNS_EBADREQ,
                        "outputs[%zu].name: expected a string, got %s", i,
                        type_name(name));
        nm = json_string_value(name);
        for (k = 0; k < OIP_OUT_COUNT; k++)
            if (strcmp(nm, output_names[k]) == 0)
                break;
        if (k == OIP_OUT_COUNT)
            return fail(err, LNS_EBADREQ,
                        "outputs[%zu].name: unknown output \"%s\" (expected "
                        "one of " OUTPUT_LIST ")",
                        i, echo(q, nm));
        for (size_t j = 0; j < req->n_outputs; j++)
            if (req->outputs[j] == (oip_output)k)
                return fail(err, LNS_EBADREQ,
                            "outputs[%zu].name: \"%s\" is requested twice "
                            "(expected each output at most once)",
                            i, nm);
        if (k == OIP_OUT_PLANE_RESIDUAL && !m->has_plane)
            return fail(err, LNS_EBADREQ,
                        "outputs[%zu].name: plane_residual needs a layernorm "
                        "model whose gains are all nonzero (model \"%s\" is not)",
                        i, m->name);
        if (k == OIP_OUT_NONLINEARITY && m->kind != LN_KIND_LAYERNORM)
            return fail(err, LNS_EBADREQ,
                        "outputs[%zu].name: nonlinearity is defined for layernorm "
                        "models (model \"%s\" is rmsnorm)",
                        i, m->name);
        if (k == OIP_OUT_AXES) {
            s = decode_axes_k(root, m, req, err);
            if (s != LNS_OK)
                return s;
        }
        snprintf(path, sizeof path, "outputs[%zu].", i);
        s = get_params(o, path, &params, err);
        if (s == LNS_OK)
            s = get_bool(params, path, "binary_data", &binary, err);
        if (s != LNS_OK)
            return s;
        req->binary[req->n_outputs] = (unsigned char)binary;
        req->outputs[req->n_outputs++] = (oip_output)k;
    }
    return LNS_OK;
}

static lns_status decode_id(const json_t *root, oip_request *req, char *err)
{
    const json_t *id = json_object_get(root, "id");
    size_t len;

    if (!id)
        return LNS_OK;
    if (!json_is_string(id))
        return fail(err, LNS_EBADREQ, "id: expected a string, got %s",
                    type_name(id));
    len = json_string_length(id);
    if (len > OIP_ID_MAX)
        return fail(err, LNS_EBADREQ,
                    "id: %zu bytes long (expected at most %d)", len,
                    OIP_ID_MAX);
    /* jansson refuses \u0000 without JSON_ALLOW_NUL, so id has no NUL. */
    memcpy(req->id, json_string_value(id), len);
    req->id[len] = '\0';
    req->has_id = 1;
    return LNS_OK;
}

/* ------------------------------------------------------ data as text */

/* JSON's four whitespace bytes, as jansson skips them. */
static int is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

/* p at '"': returns the byte after the closing quote, or NULL. Escapes are
 * stepped over, not checked: jansson checks them. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Skips one value of any type at p (no leading whitespace); returns the
 * byte after it, or NULL. Iterative, so nesting depth costs no stack; it
 * only pairs brackets, checking nothing else: jansson does. */
static const char *skip_value(const char *p, const char *end)
{
    size_t depth = 0;

    while (p < end) {
        char c = *p;
        if (c == '"') {
            p = skip_string(p, end);
            if (!p)
                return NULL;
        } else if (c == '[' || c == '{') {
            depth++;
            p++;
        } else if (c == ']' || c == '}') {
            if (depth == 0)
                return NULL;
            depth--;
            p++;
        } else if (depth > 0) {
            p++;
        } else { /* a scalar at the top: up to the next delimiter */
            while (p < end && !is_ws(*p) && *p != ',' && *p != ']' &&
                   *p != '}' && *p != ':')
                p++;
            return p;
        }
        if (depth == 0)
            return p;
    }
    return NULL;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Whether the key text between quotes [p, end) decodes to want (ASCII),
 * as jansson would decode it: "d\u0061ta" is "data". */
static int key_is(const char *p, const char *end, const char *want)
{
    while (p < end) {
        char c = *p++;
        if (c == '\\') {
            if (p >= end)
                return 0;
            c = *p++;
            if (c == 'u') {
                int v = 0;
                for (int i = 0; i < 4; i++) {
                    int h = p < end ? hex_digit(*p++) : -1;
                    if (h < 0)
                        return 0;
                    v = v * 16 + h;
                }
                if (v == 0 || v >= 0x80) /* not an ASCII letter of want */
                    return 0;
                c = (char)v;
            } else if (c != '"' && c != '\\' && c != '/') {
                return 0; /* \b \f \n \r \t: not in any key we look for */
            }
        }
        /* want may end first: a raw NUL in the key text (which jansson
         * rejects) must not match want's terminator and read past it
         * (found by tests/fuzz/fuzz_oip_decode). */
        if (*want == '\0' || *want++ != c)
            return 0;
    }
    return *want == '\0';
}

/*
 * Walks the object at p..end to member key; returns where its value starts
 * (whitespace skipped), or NULL if the object has no such key or is not an
 * object the walk understands. The first match wins: a duplicate key is
 * jansson's to reject.
 */
static const char *find_member(const char *p, const char *end,
                               const char *key)
{
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return NULL;
    p = skip_ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *k = p + 1, *ke = skip_string(p, end);
        if (!ke)
            return NULL;
        p = skip_ws(ke, end);
        if (p >= end || *p != ':')
            return NULL;
        p = skip_ws(p + 1, end);
        if (key_is(k, ke - 1, key))
            return p < end ? p : NULL;
        p = skip_value(p, end);
        if (!p)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ',')
            return NULL;
        p = skip_ws(p + 1, end);
    }
    return NULL;
}

/*
 * Where the value of inputs[0].data starts, or NULL if the walk does not
 * find it. Exact for any body jansson accepts; for one it rejects it may
 * be anything, and jansson's verdict stands.
 */
static const char *locate_member(const char *body, size_t len)
{
    const char *end = body + len, *p = find_member(body, end, "inputs");

    if (!p || *p != '[')
        return NULL;
    return find_member(p + 1, end, "data");
}

/* The text of inputs[0].data: [*ds, *de); -1 if not found. */
static int locate_data(const char *body, size_t len, const char **ds,
                       const char **de)
{
    const char *p = locate_member(body, len);

    if (!p)
        return -1;
    *ds = p;
    *de = skip_value(p, body + len);
    return *de ? 0 : -1;
}

/* Whether the number text [p, q) is a JSON integer (no fraction, no
 * exponent): jansson makes those json_integer. */
static int is_int_literal(const char *p, const char *q)
{
    for (; p < q; p++)
        if (*p == '.' || *p == 'e' || *p == 'E')
            return 0;
    return 1;
}

/* One JSON number at p as the decoders read it: the correctly rounded
 * float32, except that an integer literal "-0" is the integer 0. Returns
 * the end of the number, or NULL. */
static const char *read_number(const char *p, const char *end, float *f)
{
    const char *q = f32text_parse(p, end, f);

    if (q && *f == 0.0f && signbit(*f) && is_int_literal(p, q))
        *f = 0.0f;
    return q;
}

/*
 * The full decode's values, read from the text once check_data_layout has
 * passed: b * n floats in row-major order (NaN where the value is not a
 * number: read_value reports those from jansson's tree). malloc'd; NULL if
 * the text does not walk as expected, and read_value then uses doubles.
 */
static float *text_values(const char *body, size_t len, size_t b, size_t n,
                          int nested)
{
    const char *p, *end = body + len, *de;
    float *x;

    if (locate_data(body, len, &p, &de) != 0 || *p != '[')
        return NULL;
    x = malloc(b * n * sizeof(float));
    if (!x)
        return NULL;
    p++;
    for (size_t r = 0; r < (nested ? b : 1); r++) {
        size_t cols = nested ? n : b * n;
        if (nested) {
            p = skip_ws(p, end);
            if (p >= end || *p != '[')
                goto bad;
            p++;
        }
        for (size_t c = 0; c < cols; c++) {
            const char *q;
            p = skip_ws(p, end);
            q = read_number(p, end, &x[r * n + c]);
            if (!q) {
                x[r * n + c] = NAN;
                q = skip_value(p, end);
                if (!q)
                    goto bad;
            }
            p = skip_ws(q, end);
            if (p >= end || *p != (c + 1 < cols ? ',' : ']'))
                goto bad;
            p++;
        }
        if (nested) {
            p = skip_ws(p, end);
            if (p >= end || *p != (r + 1 < b ? ',' : ']'))
                goto bad;
            p++;
        }
    }
    return x;
bad:
    free(x);
    return NULL;
}

/* What scan_data saw in a data array. */
typedef struct data_shape {
    size_t len;     /* top-level elements */
    int nested;     /* elements are arrays */
    size_t row0;    /* nested: values in row 0 */
    size_t odd_row; /* nested: first row whose length is not row0's, or
                       SIZE_MAX; with odd_len its length */
    size_t odd_len;
} data_shape;

/*
 * The fast path's reader: the data array starting at p (at its '[', the
 * body ending at end) as a flat array of numbers or an array of arrays of
 * numbers, into x (cap floats, row-major). 0, *shape filled and *stop just
 * past the array's closing ']' if it is such an array and every value a
 * finite float32 that jansson reads without complaint; -1 otherwise (any
 * other shape, a non-number, an integer literal past 18 digits that
 * jansson may find too big, a value out of FP32 range): the full decode
 * then speaks. It finds the array's end itself, so the data text is walked
 * once: a separate bracket-matching pass over it (skip_value) took ~9 % of
 * the server's CPU on 1-row N=768 JSON infers (perf, bench/http_bench.sh).
 */
static int scan_data(const char *p, const char *end, float *x, size_t cap,
                     data_shape *shape, const char **stop)
{
    size_t k = 0, row = 0;

    memset(shape, 0, sizeof *shape);
    shape->odd_row = SIZE_MAX;
    p = skip_ws(p + 1, end); /* p was at '[' */
    if (p < end && *p == ']') {
        *stop = p + 1;
        return 0;
    }
    shape->nested = p < end && *p == '[';
    for (;;) { /* one row (nested) or the whole array (flat) */
        size_t row_start = k;
        if (shape->nested) {
            if (p >= end || *p != '[')
                return -1;
            p = skip_ws(p + 1, end);
            if (p < end && *p == ']')
                goto row_done;
        }
        for (;;) {
            float f;
            const char *q = f32text_parse(p, end, &f);
            if (!q || k == cap)
                return -1;
            /* Rare cases get a second look: zero (the "-0" rule), long
             * literals, overflow. */
            if (f == 0.0f || q - p > 18 || !isfinite(f)) {
                if (!isfinite(f))
                    return -1;
                if (is_int_literal(p, q)) {
                    if (q - p - (*p == '-') > 18)
                        return -1;
                    if (f == 0.0f)
                        f = 0.0f; /* "-0": the integer 0 (read_number) */
                }
            }
            x[k++] = f;
            p = skip_ws(q, end);
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                continue;
            }
            if (p < end && *p == ']')
                break;
            return -1;
        }
    row_done:
        if (!shape->nested) {
            *stop = p + 1;
            shape->len = k;
            break;
        }
        p = skip_ws(p + 1, end);
        if (row == 0)
            shape->row0 = k - row_start;
        else if (k - row_start != shape->row0 && shape->odd_row == SIZE_MAX) {
            shape->odd_row = row;
            shape->odd_len = k - row_start;
        }
        row++;
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == ']') {
            *stop = p + 1;
            break;
        }
        return -1;
    }
    if (shape->nested)
        shape->len = row;
    return 0;
}

/* ------------------------------------------------------------ decoders */

/* Where a request's bytes are: the JSON document, then what follows it. */
typedef struct body_parts {
    int has_header;  /* Inference-Header-Content-Length was sent */
    const char *bin; /* the bytes after the JSON document */
    size_t bin_len;
} body_parts;

/* What decode_envelope found. */
typedef struct envelope {
    const json_t *in; /* inputs[0] */
    size_t b, n;      /* its shape */
    int binary;       /* its values are the bytes after the JSON */
    int binary_all;   /* parameters.binary_data_output */
} envelope;

/*
 * Everything before the data: the root, id, parameters, inputs[0]'s name,
 * datatype and parameters, the shape, and where the values are (binary
 * data: its size against the shape and the body), in the order errors are
 * reported. Fills *env and req->id, req->dtype.
 */
static lns_status decode_envelope(const json_t *root,
                                  const oip_model_info *m,
                                  const body_parts *parts, oip_request *req,
                                  envelope *env, char *err)
{
    const json_t *inputs, *in, *name, *params, *bds = NULL;
    char q[ECHO_MAX + 4];
    size_t want;
    lns_status s;

    memset(env, 0, sizeof *env);
    if (!json_is_object(root))
        return fail(err, LNS_EBADREQ,
                    "request body: expected an object, got %s",
                    type_name(root));
    s = decode_id(root, req, err);
    if (s != LNS_OK)
        return s;
    s = get_params(root, "", &params, err);
    if (s == LNS_OK)
        s = get_bool(params, "", "binary_data_output", &env->binary_all,
                     err);
    if (s != LNS_OK)
        return s;

    inputs = json_object_get(root, "inputs");
    if (!inputs || !json_is_array(inputs))
        return fail(err, LNS_EBADREQ,
                    "inputs: %s%s (expected an array with one tensor)",
                    inputs ? "got " : "missing",
                    inputs ? type_name(inputs) : "");
    if (json_array_size(inputs) != 1)
        return fail(err, LNS_EBADREQ,
                    "inputs: %zu tensors (expected exactly one, named "
                    "\"input\")",
                    json_array_size(inputs));
    in = json_array_get(inputs, 0);
    if (!json_is_object(in))
        return fail(err, LNS_EBADREQ,
                    "inputs[0]: expected an object, got %s", type_name(in));
    name = json_object_get(in, "name");
    if (!name || !json_is_string(name))
        return fail(err, LNS_EBADREQ,
                    "inputs[0].name: %s%s (expected \"input\")",
                    name ? "got " : "missing", name ? type_name(name) : "");
    if (strcmp(json_string_value(name), "input") != 0)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].name: unknown input \"%s\" (expected "
                    "\"input\")",
                    echo(q, json_string_value(name)));
    s = check_datatype(in, &req->dtype, err);
    if (s != LNS_OK)
        return s;
    s = get_params(in, "inputs[0].", &params, err);
    if (s != LNS_OK)
        return s;
    if (params)
        bds = json_object_get(params, "binary_data_size");
    if (bds && (!json_is_integer(bds) || json_integer_value(bds) < 0))
        return fail(err, LNS_EBADREQ,
                    "inputs[0].parameters.binary_data_size: expected an "
                    "integer >= 0 (bytes), got %s%s",
                    json_is_integer(bds) ? "a negative " : "",
                    json_is_integer(bds) ? "integer" : type_name(bds));
    if (bds && !parts->has_header)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].parameters.binary_data_size: binary data "
                    "needs the Inference-Header-Content-Length header (the "
                    "length of the JSON part of the body)");
    env->in = in;
    s = check_shape(in, m, &env->b, &env->n, err);
    if (s != LNS_OK)
        return s;
    if (!bds) {
        if (parts->bin_len > 0)
            return fail(err, LNS_EBADREQ,
                        "request body: %zu bytes follow the JSON header "
                        "(Inference-Header-Content-Length), but inputs[0] "
                        "has no parameters.binary_data_size",
                        parts->bin_len);
        return LNS_OK;
    }
    if (json_object_get(in, "data"))
        return fail(err, LNS_EBADREQ,
                    "inputs[0].data: present together with "
                    "parameters.binary_data_size (expected the values in "
                    "one place)");
    /* check_shape bounded b * n * 8 by SIZE_MAX. */
    want = env->b * env->n * oip_dtype_size(req->dtype);
    if ((unsigned long long)json_integer_value(bds) != want)
        return fail(err, LNS_EBADREQ,
                    "inputs[0].parameters.binary_data_size: %lld bytes, "
                    "expected %zu (shape [%zu, %zu] of %s, %zu bytes each)",
                    (long long)json_integer_value(bds), want, env->b, env->n,
                    oip_dtype_name(req->dtype), oip_dtype_size(req->dtype));
    if (parts->bin_len != want)
        return fail(err, LNS_EBADREQ,
                    "request body: %zu bytes follow the JSON header "
                    "(Inference-Header-Content-Length), expected %zu "
                    "(inputs[0].parameters.binary_data_size)",
                    parts->bin_len, want);
    env->binary = 1;
    return LNS_OK;
}

/* The reference decoder: jansson reads the whole JSON document (len bytes
 * at body); binary values come from parts. */
static lns_status decode_full(const char *body, size_t len,
                              const body_parts *parts,
                              const oip_model_info *m, oip_request *req,
                              char *err)
{
    json_t *root;
    json_error_t je;
    const json_t *data = NULL;
    float *text = NULL;
    envelope env;
    int nested = 0;
    lns_status s;

    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(err, LNS_EBADREQ,
                    "request body: invalid JSON at line %d, column %d: %s",
                    je.line, je.column, je.text);
    s = decode_envelope(root, m, parts, req, &env, err);
    if (s != LNS_OK)
        goto cleanup;
    if (!env.binary) {
        data = json_object_get(env.in, "data");
        s = check_data_layout(data, env.b, env.n, &nested, err);
        if (s != LNS_OK)
            goto cleanup;
    }
    s = decode_outputs(root, m, env.binary_all, req, err);
    if (s != LNS_OK)
        goto cleanup;

    /* Every size is now checked against the document or the binary part:
     * b * n values exist. */
    req->data = malloc(env.b * env.n * sizeof(float));
    if (!req->data) {
        s = fail(err, LNS_ENOMEM, "out of memory for %zu x %zu floats",
                 env.b, env.n);
        goto cleanup;
    }
    if (env.binary) {
        s = read_binary(parts->bin, env.b, env.n, req->dtype, req->data,
                        err);
    } else {
        text = text_values(body, len, env.b, env.n, nested);
        s = read_data(data, env.b, env.n, nested, req->dtype, text,
                      req->data, err);
    }
    if (s != LNS_OK)
        goto cleanup;
    req->n_rows = env.b;
    req->n_cols = env.n;

cleanup:
    free(text);
    json_decref(root);
    return s;
}

/* Feeds jansson the body with the data array's text replaced by "[]". */
typedef struct splice {
    const char *piece[3];
    size_t left[3];
    int at;
} splice;

static size_t splice_read(void *buffer, size_t buflen, void *arg)
{
    splice *sp = arg;
    size_t got = 0;

    while (sp->at < 3 && got < buflen) {
        size_t k = sp->left[sp->at];
        if (k > buflen - got)
            k = buflen - got;
        memcpy((char *)buffer + got, sp->piece[sp->at], k);
        got += k;
        sp->piece[sp->at] += k;
        sp->left[sp->at] -= k;
        if (sp->left[sp->at] == 0)
            sp->at++;
    }
    return got;
}

/*
 * The fast path, on the JSON document (len bytes at body). 1 if it does not
 * recognise the body (the full decode must answer), else 0 with the answer
 * in *status: the one decode_full would give, because every verdict here
 * is reached on the same facts by the same checks in the same order:
 * jansson on the spliced body sees every byte but the data array, which
 * scan_data has shown to be valid JSON that jansson reads without error.
 * Values of an FP16 or BF16 tensor are rounded after the scan, in order,
 * as read_value rounds them one by one.
 */
static int decode_fast(const char *body, size_t len, const body_parts *parts,
                       const oip_model_info *m, oip_request *req, char *err,
                       lns_status *status)
{
    const char *ds, *de;
    json_t *root = NULL;
    json_error_t je;
    envelope env;
    data_shape shape;
    float *x = NULL;
    size_t b, n, cap;
    splice sp;
    lns_status s;
    int rc = 1;

    ds = locate_member(body, len);
    if (!ds || *ds != '[')
        return 1;
    /* At most one value per two bytes ("1,") of what follows: bounded by
     * the body, and the pages past what is written are never touched. */
    cap = (size_t)(body + len - ds) / 2 + 1;
    x = malloc(cap * sizeof(float));
    if (!x || scan_data(ds, body + len, x, cap, &shape, &de) != 0)
        goto out;
    sp = (splice){{body, "[]", de}, {(size_t)(ds - body), 2,
                                     (size_t)(body + len - de)}, 0};
    root = json_load_callback(splice_read, &sp, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        goto out; /* the message must name the line and column of the body */
    rc = 0;
    s = decode_envelope(root, m, parts, req, &env, err);
    if (s != LNS_OK)
        goto done;
    b = env.b;
    n = env.n;
    s = check_data_len(shape.len, shape.nested, b, n, err);
    if (s == LNS_OK && shape.nested) {
        if (shape.row0 != n)
            s = check_row_len(0, shape.row0, b, n, err);
        else if (shape.odd_row != SIZE_MAX)
            s = check_row_len(shape.odd_row, shape.odd_len, b, n, err);
    }
    if (s != LNS_OK)
        goto done;
    s = decode_outputs(root, m, env.binary_all, req, err);
    if (s != LNS_OK)
        goto done;
    if (req->dtype == OIP_DT_FP16 || req->dtype == OIP_DT_BF16)
        for (size_t k = 0; k < b * n; k++) {
            x[k] = round_to(req->dtype, x[k]);
            if (!isfinite(x[k])) {
                s = not_finite(err, "inputs[0].data", k / n, k % n,
                               req->dtype);
                goto done;
            }
        }
    req->data = x; /* b * n values, all finite (scan_data, the loop above) */
    x = NULL;
    req->n_rows = b;
    req->n_cols = n;
done:
    *status = s;
out:
    free(x);
    json_decref(root);
    return rc;
}

/*
 * Inference-Header-Content-Length: 0: the body is the raw little-endian
 * FP32 bytes of the one input, [B, dim] with B = len / (4 * dim). Triton
 * takes such a body only for a model whose single input has a fixed
 * shape; lnserve's input has a free batch dimension, so the model's dim
 * must be fixed and B follows from the length.
 */
static lns_status decode_raw(const char *body, size_t len,
                             const oip_model_info *m, oip_request *req,
                             char *err)
{
    size_t groups = m->groups ? m->groups : 1, row_bytes, b;
    lns_status s;

    if (m->dim == 0)
        return fail(err, LNS_EBADREQ,
                    "Inference-Header-Content-Length: 0 (a raw FP32 body) "
                    "needs a model with a fixed dim, and model \"%s\" takes "
                    "any N (send a JSON header with the shape)",
                    m->name);
    if (m->dim > SIZE_MAX / sizeof(float) || m->dim % groups != 0)
        return fail(err, LNS_EBADREQ,
                    "Inference-Header-Content-Length: 0: model \"%s\" "
                    "cannot take a raw body",
                    m->name);
    row_bytes = m->dim * sizeof(float);
    if (len % row_bytes != 0)
        return fail(err, LNS_EBADREQ,
                    "request body: %zu bytes of raw FP32 input "
                    "(Inference-Header-Content-Length: 0) are not whole "
                    "rows of %zu bytes (model \"%s\" has N = %zu)",
                    len, row_bytes, m->name, m->dim);
    b = len / row_bytes;
    if (b > m->max_rows)
        return fail(err, LNS_EBADREQ,
                    "request body: %zu rows of raw FP32 input is over the "
                    "limit (expected at most %zu)",
                    b, m->max_rows);
    req->dtype = OIP_DT_FP32;
    for (size_t i = 0; i < OIP_OUT_DEFAULTS; i++)
        req->outputs[i] = (oip_output)i;
    req->n_outputs = OIP_OUT_DEFAULTS;
    req->data = malloc(len);
    if (!req->data)
        return fail(err, LNS_ENOMEM, "out of memory for %zu x %zu floats",
                    b, m->dim);
    s = read_binary(body, b, m->dim, OIP_DT_FP32, req->data, err);
    if (s != LNS_OK)
        return s;
    req->n_rows = b;
    req->n_cols = m->dim;
    return LNS_OK;
}

/*
 * jansson's allocations during one decode come from a bump arena of this
 * thread, and its frees of them do nothing; the arena is reset by the next
 * decode. jansson mallocs every node, key and string and the lexer's
 * buffer: json_loadb of Triton's binary-extension header (150 bytes)
 * took 3.5 us with glibc malloc and 2.0 us from an arena (a loop over
 * that header, this VM), and the binary path serves a request in ~20 us.
 * The functions are process-wide (json_set_alloc_funcs), installed by a
 * constructor before main, so before any thread can be inside jansson:
 * outside a decode, or past the arena's end, they are malloc and free, so
 * a node from either kind of memory can be freed whenever. The rule that
 * makes it safe: no jansson value made during a decode outlives it (every
 * root is decref'd before the decode returns; the request keeps copies).
 * Under ASan the arena is poisoned between decodes, so a value that did
 * outlive one would be reported at its first use.
 */
#define JARENA_BYTES (16 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define JARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JARENA_ASAN 1
#endif
#endif
#ifdef JARENA_ASAN
#include <sanitizer/asan_interface.h>
#define JARENA_POISON(on) \
    ((on) ? ASAN_POISON_MEMORY_REGION(jarena_mem, JARENA_BYTES) \
          : ASAN_UNPOISON_MEMORY_REGION(jarena_mem, JARENA_BYTES))
#else
#define JARENA_POISON(on) ((void)0)
#endif

static _Thread_local _Alignas(16) char jarena_mem[JARENA_BYTES];
static _Thread_local size_t jarena_used;
static _Thread_local int jarena_on;

static void *jarena_malloc(size_t size)
{
    if (jarena_on) {
        size_t a = (size + 15) & ~(size_t)15;
        if (a >= size && a <= JARENA_BYTES - jarena_used) {
            void *p = jarena_mem + jarena_used;
            jarena_used += a;
            return p;
        }
    }
    return malloc(size);
}

static void jarena_free(void *p)
{
    uintptr_t u = (uintptr_t)p, base = (uintptr_t)jarena_mem;
    if (u - base < JARENA_BYTES) /* in this thread's arena (u < base wraps) */
        return;
    free(p);
}

__attribute__((constructor)) static void jarena_install(void)
{
    json_set_alloc_funcs(jarena_malloc, jarena_free);
}

static void jarena_begin(void)
{
    JARENA_POISON(0);
    jarena_used = 0;
    jarena_on = 1;
}

static void jarena_end(void)
{
    jarena_on = 0;
    JARENA_POISON(1);
}

lns_status oip__decode_infer_path(const char *body, size_t len,
                                  size_t json_len, const oip_model_info *m,
                                  oip_request *req, char *err,
                                  int force_full, int *used_fast)
{
    body_parts parts;
    size_t jl;
    lns_status s;

    memset(req, 0, sizeof *req);
    err[0] = '\0';
    if (used_fast)
        *used_fast = 0;
    if (!body || len == 0)
        return fail(err, LNS_EBADREQ,
                    "request body: empty (expected a JSON object)");
    if (json_len == 0) {
        s = decode_raw(body, len, m, req, err);
        goto out;
    }
    if (json_len != OIP_JSON_ALL && json_len > len)
        return fail(err, LNS_EBADREQ,
                    "Inference-Header-Content-Length: %zu is more than the "
                    "body's %zu bytes",
                    json_len, len);
    jl = json_len == OIP_JSON_ALL ? len : json_len;
    parts = (body_parts){json_len != OIP_JSON_ALL, body + jl, len - jl};
    jarena_begin();
    if (!force_full && decode_fast(body, jl, &parts, m, req, err, &s) == 0) {
        if (used_fast)
            *used_fast = 1;
    } else {
        oip_request_fini(req); /* the fast path may have set id, outputs */
        err[0] = '\0';
        jarena_begin(); /* the fast path's tree is gone: start again */
        s = decode_full(body, jl, &parts, m, req, err);
    }
    jarena_end();
out:
    if (s != LNS_OK)
        oip_request_fini(req);
    return s;
}

lns_status oip_decode_infer(const char *body, size_t len, size_t json_len,
                            const oip_model_info *m, oip_request *req,
                            char *err)
{
    return oip__decode_infer_path(body, len, json_len, m, req, err, 0, NULL);
}

void oip_request_fini(oip_request *req)
{
    if (!req)
        return;
    free(req->data);
    memset(req, 0, sizeof *req);
}

/* ---------------------------------------------------------------- encode */

/* A growing output buffer. After an allocation failure every append is a
 * no-op and failed stays set, so callers check once at the end. */
typedef struct buf {
    char *p;
    size_t len, cap;
    int failed;
} buf;

static int buf_reserve(buf *b, size_t extra)
{
    size_t cap;
    char *p;

    if (b->failed)
        return -1;
    if (extra <= b->cap - b->len)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    p = realloc(b->p, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void buf_put(buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void buf_puts(buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* Decimal digits of v, by hand: snprintf took ~2 % of a binary-extension
 * request's cycles in perf for the few sizes a response carries. */
static void buf_put_size(buf *b, size_t v)
{
    char tmp[24];
    char *p = tmp + sizeof tmp;

    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_put(b, p, (size_t)(tmp + sizeof tmp - p));
}

/*
 * Every float of a JSON response goes through here: count values of a
 * tensor of datatype dt, as a JSON array. FP32 and (rounded first) FP16 and
 * BF16 values print as the shortest decimal that reads back to the same
 * float32 (f32text_print_array: dragonbox, or the same digits from
 * Schubfach in AVX-512), which also reads back to the same FP16 / BF16
 * value; always with a "." or an exponent so it reads as a
 * real and "-0.0" keeps its sign in parsers that make "-0" the integer 0
 * (jansson among them). FP64 values (float32 results widened) print with
 * 17 significant digits, enough for any double to read back exactly: the
 * float32-shortest text would read back as a different double. finite in
 * dt only (finite_in).
 */
static void buf_put_array(buf *b, const float *v, size_t count, oip_dtype dt)
{
    enum { F64TEXT_MAX = 32, /* "-1.2345678901234567e-45" and ".0" */
           ROUNDED_CHUNK = 256 };
    /* Each value advances at most per + 1 bytes (with its comma); the last
     * one's writes may reach F32TEXT_MAX past its start (f32text.h). */
    size_t per = dt == OIP_DT_FP64 ? F64TEXT_MAX : F32TEXT_LEN_MAX;
    char *o;

    if (count > (SIZE_MAX - 2 - F32TEXT_MAX) / (per + 1) ||
        buf_reserve(b, count * (per + 1) + 2 + F32TEXT_MAX) != 0) {
        b->failed = 1;
        return;
    }
    o = b->p + b->len;
    *o++ = '[';
    switch (dt) {
    case OIP_DT_FP32:
        o += f32text_print_array(o, v, count);
        break;
    case OIP_DT_FP16:
    case OIP_DT_BF16:
        for (size_t i = 0; i < count; i += ROUNDED_CHUNK) {
            float r[ROUNDED_CHUNK];
            size_t m = count - i < ROUNDED_CHUNK ? count - i : ROUNDED_CHUNK;
            for (size_t j = 0; j < m; j++)
                r[j] = round_to(dt, v[i + j]);
            if (i)
                *o++ = ',';
            o += f32text_print_array(o, r, m);
        }
        break;
    default:
        for (size_t i = 0; i < count; i++) {
            int n;
            if (i)
                *o++ = ',';
            n = snprintf(o, F64TEXT_MAX, "%.17g", (double)v[i]);
            if (n < 0 || n >= F64TEXT_MAX - 2) { /* not reached */
                b->failed = 1;
                return;
            }
            if (!memchr(o, '.', (size_t)n) && !memchr(o, 'e', (size_t)n) &&
                !memchr(o, 'n', (size_t)n) && !memchr(o, 'i', (size_t)n)) {
                memcpy(o + n, ".0", 2);
                n += 2;
            }
            o += n;
        }
        break;
    }
    *o++ = ']';
    b->len = (size_t)(o - b->p);
}

/* count values of a datatype dt tensor as binary data: little-endian,
 * rounded once from float32 (FP16, BF16) or widened exactly (FP64).
 * Non-finite values are carried as IEEE values. */
static void buf_put_binary(buf *b, const float *v, size_t count,
                           oip_dtype dt)
{
    size_t size = oip_dtype_size(dt);
    char *o;

    if (count > SIZE_MAX / size || buf_reserve(b, count * size) != 0) {
        b->failed = 1;
        return;
    }
    o = b->p + b->len;
    switch (dt) {
    case OIP_DT_FP32:
        memcpy(o, v, count * sizeof(float));
        break;
    case OIP_DT_FP16:
    case OIP_DT_BF16:
        for (size_t i = 0; i < count; i++) {
            uint16_t h = dt == OIP_DT_FP16 ? half_f32_to_fp16(v[i])
                                           : half_f32_to_bf16(v[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        break;
    default:
        for (size_t i = 0; i < count; i++) {
            double d = v[i];
            memcpy(o + 8 * i, &d, 8);
        }
        break;
    }
    b->len += count * size;
}

/* Appends s as a JSON string. s is valid UTF-8 (model names and ids that
 * jansson decoded); bytes >= 0x80 pass through, controls are escaped. */
static void buf_put_jstr(buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            buf_put(b, esc, 2);
        } else if (c < 0x20) {
            buf_put(b, esc, 6);
        } else {
            buf_put(b, s, 1);
        }
    }
    buf_put(b, "\"", 1);
}

/* Whether every value is finite once in datatype dt (what JSON needs). */
static int finite_in(const float *v, size_t count, oip_dtype dt)
{
    for (size_t i = 0; i < count; i++)
        if (!isfinite(round_to(dt, v[i])))
            return 0;
    return 1;
}

/* One output tensor of a response. */
typedef struct out_tensor {
    const float *v;
    size_t count, d1; /* d1: second dimension, 0 for rank 1 */
    oip_dtype dt;
} out_tensor;

lns_status oip_encode_infer(const oip_model_info *m, const oip_request *req,
                            const oip_result *res, char **out,
                            size_t *out_len, size_t *json_len)
{
    buf b = {0};
    size_t rows = req->n_rows, cols = req->n_cols;
    size_t groups = m->groups ? m->groups : 1;
    size_t text = 0, bin = 0, jlen;
    out_tensor t[OIP_OUT_COUNT];
    lns_status s = LNS_OK;

    *out = NULL;
    *out_len = 0;
    if (json_len)
        *json_len = 0;
    if (req->n_outputs > OIP_OUT_COUNT)
        return LNS_EINTERNAL;
    for (size_t i = 0; i < req->n_outputs; i++) {
        switch (req->outputs[i]) {
        case OIP_OUT_OUTPUT:
            t[i] = (out_tensor){res->y, rows * cols, cols, req->dtype};
            break;
        case OIP_OUT_MEAN:
            t[i] = (out_tensor){res->mean, rows * groups, groups,
                                OIP_DT_FP32};
            break;
        case OIP_OUT_RSTD:
            t[i] = (out_tensor){res->rstd, rows * groups, groups,
                                OIP_DT_FP32};
            break;
        case OIP_OUT_RADIUS:
            t[i] = (out_tensor){res->radius, rows, 0, OIP_DT_FP32};
            break;
        case OIP_OUT_DEPTH:
            t[i] = (out_tensor){res->depth, rows, 0, OIP_DT_FP32};
            break;
        case OIP_OUT_CONDITION:
            t[i] = (out_tensor){res->condition, rows, 0, OIP_DT_FP32};
            break;
        case OIP_OUT_PLANE_RESIDUAL:
            t[i] = (out_tensor){res->plane_residual, rows * groups, groups,
                                OIP_DT_FP32};
            break;
        case OIP_OUT_AXES: /* [B, G * K]: group by group */
            t[i] = (out_tensor){res->axes, rows * groups * req->axes_k,
                                groups * req->axes_k, OIP_DT_FP32};
            break;
        case OIP_OUT_JACOBIAN_FRO:
            t[i] = (out_tensor){res->jacobian_fro, rows, 0, OIP_DT_FP32};
            break;
        case OIP_OUT_NONLINEARITY:
            t[i] = (out_tensor){res->nonlinearity, rows, 0, OIP_DT_FP32};
            break;
        default:
            return LNS_EINTERNAL;
        }
        if (!t[i].v || oip_dtype_size(t[i].dt) == 0)
            return LNS_EINTERNAL;
        if (req->binary[i]) {
            bin += t[i].count * oip_dtype_size(t[i].dt);
        } else {
            if (!finite_in(t[i].v, t[i].count, t[i].dt))
                return LNS_EBADREQ;
            text += t[i].count;
        }
    }
    /* Typical values print in 10 to 15 bytes: one reservation up front
     * usually saves every realloc. */
    if (buf_reserve(&b, 256 + strlen(m->name) + 6 * OIP_ID_MAX + bin +
                            (text < SIZE_MAX / 16 ? text * 16 : 0)) != 0) {
        s = LNS_ENOMEM;
        goto cleanup;
    }
    buf_puts(&b, "{\"model_name\":");
    buf_put_jstr(&b, m->name);
    buf_puts(&b, ",\"model_version\":\"1\"");
    if (req->has_id) {
        buf_puts(&b, ",\"id\":");
        buf_put_jstr(&b, req->id);
    }
    buf_puts(&b, ",\"outputs\":[");
    for (size_t i = 0; i < req->n_outputs; i++) {
        if (i)
            buf_put(&b, ",", 1);
        buf_puts(&b, "{\"name\":\"");
        buf_puts(&b, output_names[req->outputs[i]]);
        buf_puts(&b, "\",\"datatype\":\"");
        buf_puts(&b, oip_dtype_name(t[i].dt));
        buf_puts(&b, "\",\"shape\":[");
        buf_put_size(&b, rows);
        if (t[i].d1) {
            buf_put(&b, ",", 1);
            buf_put_size(&b, t[i].d1);
        }
        if (req->binary[i]) {
            buf_puts(&b, "],\"parameters\":{\"binary_data_size\":");
            buf_put_size(&b, t[i].count * oip_dtype_size(t[i].dt));
            buf_puts(&b, "}}");
        } else {
            buf_puts(&b, "],\"data\":");
            buf_put_array(&b, t[i].v, t[i].count, t[i].dt);
            buf_put(&b, "}", 1);
        }
    }
    buf_puts(&b, "]}");
    jlen = b.len;
    for (size_t i = 0; i < req->n_outputs; i++)
        if (req->binary[i])
            buf_put_binary(&b, t[i].v, t[i].count, t[i].dt);
    if (b.failed) {
        s = LNS_ENOMEM;
        goto cleanup;
    }
    *out = b.p;
    *out_len = b.len;
    if (json_len)
        *json_len = jlen;
    b.p = NULL;

cleanup:
    free(b.p);
    return s;
}

/* Serializes j compactly and takes ownership of it. NULL if j is NULL or
 * on allocation failure. */
static char *dump(json_t *j, size_t *out_len)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

    json_decref(j);
    if (s && out_len)
        *out_len = strlen(s);
    return s;
}

char *oip_encode_error(const char *msg, size_t *out_len)
{
    json_t *str = json_string(msg ? msg : "");
    char *copy;

    if (!str && msg) {
        /* Not UTF-8: keep what is ASCII so the client still gets a reason. */
        copy = strdup(msg);
        if (!copy)
            return NULL;
        for (char *p = copy; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
        str = json_string(copy);
        free(copy);
    }
    if (!str)
        return NULL;
    return dump(json_pack("{s:o}", "error", str), out_len);
}

char *oip_encode_server_metadata(const char *version, size_t *out_len)
{
    /* Extensions are advertised only once complete: perf_analyzer trusts
     * the list (DESIGN section 8) and reads /stats with no presence
     * checks. statistics: every field of Triton's statistics extension is
     * served (server/metrics.h, metrics_render_triton_stats), checked
     * field by field in tests/integration/test_server.py. */
    return dump(json_pack("{s:s, s:s, s:[s,s]}", "name", "lnserve", "version",
                          version ? version : "", "extensions",
                          "binary_tensor_data", "statistics"),
                out_len);
}

/* {"name", "datatype": "FP32", "shape": [-1] (rank 1) or [-1, d]}; d is -1
 * for a dimension that depends on the request. */
static json_t *tensor_meta(const char *name, int rank, long long d)
{
    if (rank == 1)
        return json_pack("{s:s, s:s, s:[I]}", "name", name, "datatype",
                         "FP32", "shape", (json_int_t)-1);
    return json_pack("{s:s, s:s, s:[I,I]}", "name", name, "datatype", "FP32",
                     "shape", (json_int_t)-1, (json_int_t)d);
}

char *oip_encode_model_metadata(const oip_model_info *m, size_t *out_len)
{
    long long n = m->dim > 0 ? (long long)m->dim : -1;
    long long g = m->groups ? (long long)m->groups : 1;

    /* "o" steals each reference, also when json_pack fails, so nothing
     * leaks if one tensor_meta() returned NULL (json_pack then fails). */
    return dump(json_pack("{s:s, s:[s], s:s, s:[o], s:[o,o,o,o]}", "name",
                          m->name, "versions", "1", "platform", "lnserve",
                          "inputs", tensor_meta("input", 2, n), "outputs",
                          tensor_meta("output", 2, n),
                          tensor_meta("mean", 2, g),
                          tensor_meta("rstd", 2, g),
                          tensor_meta("radius", 1, 0)),
                out_len);
}
