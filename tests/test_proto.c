/*
 * test_proto.c -- unit tests for proto/oip.c and proto/f32text: good
 * documents, every class of bad document (each message must name the
 * field), float round trips through encode and decode, f32text against
 * glibc's correctly rounded strtof, the fast decode path against the full
 * jansson decode on generated and mutated documents, and a mutation fuzz
 * that must never crash (meant to run under VARIANT=asan as well).
 *
 * Random tests use one seed, printed at start; LNSERVE_TEST_SEED=N replays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../proto/f32text.h"
#include "../proto/half.h"
#include "../proto/oip.h"
#include "../proto/oip_internal.h"

static uint64_t rng_state;

/* splitmix64: small, good enough, same sequence on every platform. */
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t rng_below(size_t n)
{
    return n ? (size_t)(rng_next() % n) : 0;
}

static const oip_model_info any_model = {
    .name = "layernorm", .kind = LN_KIND_LAYERNORM, .dim = 0, .groups = 1,
    .max_rows = 64, .max_n = 4096,
};

static const oip_model_info ln8 = {
    .name = "ln8_affine", .kind = LN_KIND_LAYERNORM, .dim = 8, .groups = 2,
    .max_rows = 64, .max_n = 4096,
};

static lns_status decode(const char *doc, const oip_model_info *m,
                         oip_request *req, char *err)
{
    return oip_decode_infer(doc, strlen(doc), OIP_JSON_ALL, m, req, err);
}

/* ------------------------------------------------------------ good docs */

static void test_flat(void **state)
{
    oip_request req;
    char err[OIP_ERR_MAX];
    const char *doc = "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
                      "\"shape\":[2,3],\"data\":[1,2.5,-3,4e0,5,6]}]}";

    assert_int_equal(decode(doc, &any_model, &req, err), LNS_OK);
    assert_int_equal(req.n_rows, 2);
    assert_int_equal(req.n_cols, 3);
    assert_false(req.has_id);
    assert_true(req.data[1] == 2.5f);
    assert_true(req.data[2] == -3.0f);
    assert_true(req.data[5] == 6.0f);
    /* Defaults: every output, in the documented order. */
    assert_int_equal(req.n_outputs, 4);
    assert_int_equal(req.outputs[0], OIP_OUT_OUTPUT);
    assert_int_equal(req.outputs[1], OIP_OUT_MEAN);
    assert_int_equal(req.outputs[2], OIP_OUT_RSTD);
    assert_int_equal(req.outputs[3], OIP_OUT_RADIUS);
    oip_request_fini(&req);
    assert_null(req.data);
}

static void test_nested_id_outputs(void **state)
{
    oip_request req;
    char err[OIP_ERR_MAX];
    const char *doc =
        "{\"id\":\"req-7\",\"parameters\":{\"whatever\":1},"
        "\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
        "\"shape\":[2,8],\"parameters\":{},\"data\":[[1,2,3,4,5,6,7,8],"
        "[8,7,6,5,4,3,2,1.5]]}],"
        "\"outputs\":[{\"name\":\"radius\"},{\"name\":\"output\","
        "\"parameters\":{\"binary_data\":false}}]}";

    assert_int_equal(decode(doc, &ln8, &req, err), LNS_OK);
    assert_true(req.has_id);
    assert_string_equal(req.id, "req-7");
    assert_int_equal(req.n_rows, 2);
    assert_int_equal(req.n_cols, 8);
    assert_true(req.data[7] == 8.0f);
    assert_true(req.data[15] == 1.5f);
    assert_int_equal(req.n_outputs, 2);
    assert_int_equal(req.outputs[0], OIP_OUT_RADIUS);
    assert_int_equal(req.outputs[1], OIP_OUT_OUTPUT);
    oip_request_fini(&req);
}

static void test_empty_outputs_means_default(void **state)
{
    oip_request req;
    char err[OIP_ERR_MAX];
    const char *doc = "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
                      "\"shape\":[1,1],\"data\":[[0]]}],\"outputs\":[]}";

    assert_int_equal(decode(doc, &any_model, &req, err), LNS_OK);
    assert_int_equal(req.n_outputs, OIP_OUT_DEFAULTS);
    oip_request_fini(&req);
}

static void test_output_names(void **state)
{
    assert_string_equal(oip_output_name(OIP_OUT_OUTPUT), "output");
    assert_string_equal(oip_output_name(OIP_OUT_MEAN), "mean");
    assert_string_equal(oip_output_name(OIP_OUT_RSTD), "rstd");
    assert_string_equal(oip_output_name(OIP_OUT_RADIUS), "radius");
    assert_string_equal(oip_output_name(OIP_OUT_COUNT), "unknown");
}

/* ------------------------------------------------------------- bad docs */

#define IN(fields) "{\"inputs\":[{" fields "}]}"
#define OK_IN "\"name\":\"input\",\"datatype\":\"FP32\""
#define OK64 "\"name\":\"input\",\"datatype\":\"FP64\""

static const struct bad_case {
    const char *doc;
    int use_ln8; /* model: 0 = any N, 1 = ln8 (dim 8, groups 2) */
    const char *want; /* substring the message must contain */
} bad_cases[] = {
    {"", 0, "request body: empty"},
    {"{", 0, "invalid JSON at line 1, column 1"},
    {"{\"inputs\":[],}", 0, "invalid JSON at line 1"},
    {"{\"a\":1,\"a\":2}", 0, "invalid JSON"},
    {"[1,2]", 0, "request body: expected an object, got an array"},
    {"{}", 0, "inputs: missing"},
    {"{\"inputs\":{}}", 0, "inputs: got an object"},
    {"{\"inputs\":[]}", 0, "inputs: 0 tensors"},
    {"{\"inputs\":[1]}", 0, "inputs[0]: expected an object, got an integer"},
    {"{\"inputs\":[{},{}]}", 0, "inputs: 2 tensors"},
    {IN("\"datatype\":\"FP32\""), 0, "inputs[0].name: missing"},
    {IN("\"name\":3"), 0, "inputs[0].name: got an integer"},
    {IN("\"name\":\"x\""), 0, "inputs[0].name: unknown input \"x\""},
    {IN("\"name\":\"input\""), 0, "inputs[0].datatype: missing"},
    {IN("\"name\":\"input\",\"datatype\":32"), 0,
     "inputs[0].datatype: expected a string"},
    {IN("\"name\":\"input\",\"datatype\":\"FP16\""), 0,
     "inputs[0].shape: missing"},
    {IN("\"name\":\"input\",\"datatype\":\"fp16\""), 0,
     "inputs[0].datatype: unknown datatype \"fp16\""},
    {IN("\"name\":\"input\",\"datatype\":\"INT32\""), 0,
     "inputs[0].datatype: INT32 is not a floating-point type"},
    {IN("\"name\":\"input\",\"datatype\":\"float\""), 0,
     "inputs[0].datatype: unknown datatype \"float\" (expected one of BOOL"},
    {IN(OK_IN), 0, "inputs[0].shape: missing"},
    {IN(OK_IN ",\"shape\":3"), 0, "inputs[0].shape: expected an array"},
    {IN(OK_IN ",\"shape\":[3]"), 0, "inputs[0].shape: expected rank 2"},
    {IN(OK_IN ",\"shape\":[1,2,3]"), 0, "got rank 3"},
    {IN(OK_IN ",\"shape\":[0,2]"), 0, "inputs[0].shape[0]: expected an "
                                      "integer >= 1, got 0"},
    {IN(OK_IN ",\"shape\":[1,-2]"), 0, "inputs[0].shape[1]: expected an "
                                       "integer >= 1, got -2"},
    {IN(OK_IN ",\"shape\":[1,2.0]"), 0, "inputs[0].shape[1]: expected an "
                                        "integer >= 1, got a real"},
    {IN(OK_IN ",\"shape\":[\"1\",2]"), 0, "inputs[0].shape[0]: expected"},
    {IN(OK_IN ",\"shape\":[65,2]"), 0, "inputs[0].shape[0]: batch of 65 "
                                       "rows is over the limit"},
    {IN(OK_IN ",\"shape\":[1,4097]"), 0, "inputs[0].shape[1]: row length "
                                         "4097 is over the limit"},
    {IN(OK_IN ",\"shape\":[1,16]"), 1, "inputs[0].shape[1]: model "
                                       "\"ln8_affine\" has N = 8, got 16"},
    {IN(OK_IN ",\"shape\":[1,9223372036854775807]"), 1,
     "inputs[0].shape[1]: model"},
    {IN(OK_IN ",\"shape\":[1,2]"), 0, "inputs[0].data: missing"},
    {IN(OK_IN ",\"shape\":[1,2],\"data\":{}"), 0,
     "inputs[0].data: expected an array"},
    {IN(OK_IN ",\"shape\":[1,2],\"data\":[]"), 0, "inputs[0].data: empty"},
    {IN(OK_IN ",\"shape\":[1,2],\"data\":[[]]"), 0,
     "inputs[0].data[0]: empty row"},
    {IN(OK_IN ",\"shape\":[1,2],\"data\":[1,2,3]"), 0,
     "inputs[0].data: 3 values do not match shape [1, 2] (expected 2)"},
    {IN(OK_IN ",\"shape\":[2,2],\"data\":[[1,2]]"), 0,
     "inputs[0].data: 1 rows do not match shape [2, 2]"},
    {IN(OK_IN ",\"shape\":[2,2],\"data\":[[1,2],[3]]"), 0,
     "inputs[0].data[1]: 1 values do not match"},
    {IN(OK_IN ",\"shape\":[2,2],\"data\":[[1,2],3]"), 0,
     "inputs[0].data[1]: expected an array of 2 numbers"},
    {IN(OK_IN ",\"shape\":[2,2],\"data\":[1,2,[3],4]"), 0,
     "inputs[0].data[2]: expected a number, got an array"},
    {IN(OK_IN ",\"shape\":[2,2],\"data\":[[1,2],[3,\"4\"]]"), 0,
     "inputs[0].data[1][1]: expected a number, got a string"},
    {IN(OK_IN ",\"shape\":[1,2],\"data\":[null,1]"), 0,
     "inputs[0].data[0]: expected a number, got null"},
    {IN(OK_IN ",\"shape\":[1,2],\"data\":[true,1]"), 0,
     "inputs[0].data[0]: expected a number, got true"},
    {IN(OK_IN ",\"shape\":[2,3],\"data\":[1,2,3,4,5,1e39]"), 0,
     "inputs[0].data: value at row 1, column 2 is not finite in FP32"},
    {IN(OK_IN ",\"shape\":[1,2],\"data\":[-3.5e38,0]"), 0,
     "value at row 0, column 0 is not finite in FP32"},
    {IN(OK_IN ",\"shape\":[1,2],\"data\":[1e999,0]"), 0,
     "invalid JSON at line 1"},
    {IN(OK_IN ",\"shape\":[1,2],\"data\":[1,2],\"parameters\":[]"), 0,
     "inputs[0].parameters: expected an object"},
    {IN(OK_IN ",\"shape\":[1,2],\"data\":[1,2],\"parameters\":"
              "{\"binary_data_size\":8}"),
     0, "inputs[0].parameters.binary_data_size: binary data needs the "
        "Inference-Header-Content-Length header"},
    {IN(OK_IN ",\"shape\":[1,6],\"data\":[1,2,3,4,5,6]"), 1,
     "inputs[0].shape[1]: model"},
    {"{\"id\":5," IN(OK_IN ",\"shape\":[1,1],\"data\":[1]") "}", 0,
     "invalid JSON"},
};

static const struct bad_case bad_envelope[] = {
    {"{\"id\":5,\"inputs\":[]}", 0, "id: expected a string, got an integer"},
    {"{\"parameters\":1,\"inputs\":[]}", 0,
     "parameters: expected an object, got an integer"},
    {"{\"parameters\":{\"binary_data_output\":true},\"inputs\":[]}", 0,
     "inputs: 0 tensors"},
    {"{\"parameters\":{\"binary_data_output\":1},\"inputs\":[]}", 0,
     "parameters.binary_data_output: expected a boolean"},
};

#define GOOD_INPUT "\"inputs\":[{" OK_IN ",\"shape\":[1,4],\"data\":[1,2,3,4]}]"

static const struct bad_case bad_outputs[] = {
    {"{" GOOD_INPUT ",\"outputs\":{}}", 0, "outputs: expected an array"},
    {"{" GOOD_INPUT ",\"outputs\":[\"mean\"]}", 0,
     "outputs[0]: expected an object"},
    {"{" GOOD_INPUT ",\"outputs\":[{}]}", 0, "outputs[0].name: missing"},
    {"{" GOOD_INPUT ",\"outputs\":[{\"name\":1}]}", 0,
     "outputs[0].name: expected a string"},
    {"{" GOOD_INPUT ",\"outputs\":[{\"name\":\"mean\"},{\"name\":\"var\"}]}",
     0, "outputs[1].name: unknown output \"var\" (expected one of output, "
        "mean, rstd, radius, depth, condition, plane_residual, axes, "
        "jacobian_fro, nonlinearity)"},
    {"{" GOOD_INPUT ",\"outputs\":[{\"name\":\"plane_residual\"}]}", 0,
     "outputs[0].name: plane_residual needs a layernorm model whose gains"},
    {"{" GOOD_INPUT ",\"outputs\":[{\"name\":\"axes\"}]}", 0,
     "outputs: axes needs a layernorm model with a fixed dim"},
    {"{" GOOD_INPUT ",\"outputs\":[{\"name\":\"mean\"},{\"name\":\"rstd\"},"
     "{\"name\":\"mean\"}]}",
     0, "outputs[2].name: \"mean\" is requested twice"},
    {"{" GOOD_INPUT ",\"outputs\":[{\"name\":\"mean\",\"parameters\":"
     "{\"binary_data\":\"yes\"}}]}",
     0, "outputs[0].parameters.binary_data: expected a boolean, got a "
        "string"},
    {"{" GOOD_INPUT ",\"outputs\":[{\"name\":\"mean\",\"parameters\":7}]}",
     0, "outputs[0].parameters: expected an object"},
};

static void check_bad(const struct bad_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        oip_request req;
        char err[OIP_ERR_MAX];
        lns_status s;

        memset(err, 'x', sizeof err);
        s = decode(cases[i].doc, cases[i].use_ln8 ? &ln8 : &any_model, &req,
                   err);
        if (s != LNS_EBADREQ || !strstr(err, cases[i].want)) {
            print_error("doc: %s\nwant: %s\ngot (%d): %s\n", cases[i].doc,
                        cases[i].want, (int)s, s == LNS_OK ? "" : err);
            fail();
        }
        assert_true(memchr(err, '\0', sizeof err) != NULL);
        assert_null(req.data);
        assert_int_equal(req.n_rows, 0);
    }
}

static void test_bad_docs(void **state)
{
    check_bad(bad_cases, sizeof bad_cases / sizeof *bad_cases);
    check_bad(bad_envelope, sizeof bad_envelope / sizeof *bad_envelope);
    check_bad(bad_outputs, sizeof bad_outputs / sizeof *bad_outputs);
}

static void test_groups_must_divide(void **state)
{
    oip_model_info m = any_model;
    oip_request req;
    char err[OIP_ERR_MAX];

    m.groups = 4;
    assert_int_equal(
        decode(IN(OK_IN ",\"shape\":[1,6],\"data\":[1,2,3,4,5,6]"), &m,
               &req, err),
        LNS_EBADREQ);
    assert_non_null(strstr(err, "inputs[0].shape[1]: N = 6 is not divisible "
                                "by the model's 4 groups"));
}

static void test_long_id_and_strings(void **state)
{
    oip_request req;
    char err[OIP_ERR_MAX];
    char doc[2048];
    char id[OIP_ID_MAX + 2];

    /* Exactly OIP_ID_MAX bytes is fine; one more is not. */
    memset(id, 'a', OIP_ID_MAX);
    id[OIP_ID_MAX] = '\0';
    snprintf(doc, sizeof doc, "{\"id\":\"%s\"," GOOD_INPUT "}", id);
    assert_int_equal(decode(doc, &any_model, &req, err), LNS_OK);
    assert_string_equal(req.id, id);
    oip_request_fini(&req);
    id[OIP_ID_MAX] = 'a';
    id[OIP_ID_MAX + 1] = '\0';
    snprintf(doc, sizeof doc, "{\"id\":\"%s\"," GOOD_INPUT "}", id);
    assert_int_equal(decode(doc, &any_model, &req, err), LNS_EBADREQ);
    assert_non_null(strstr(err, "id: 257 bytes long"));

    /* A long, non-ASCII input name is cut and made ASCII in the message. */
    snprintf(doc, sizeof doc,
             "{\"inputs\":[{\"name\":\"%0200d\\u00e9\\u0001\"}]}", 0);
    assert_int_equal(decode(doc, &any_model, &req, err), LNS_EBADREQ);
    assert_non_null(strstr(err, "inputs[0].name: unknown input \"000"));
    assert_non_null(strstr(err, "...\""));
    for (const char *p = err; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    assert_true(strlen(err) < OIP_ERR_MAX);
}

/* -------------------------------------------------------------- encode */

/* Parses an encoded response and returns outputs[i] of it (borrowed). */
static const json_t *response_output(const json_t *root, size_t i,
                                     const char *name)
{
    const json_t *o = json_array_get(json_object_get(root, "outputs"), i);

    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "name")), name);
    assert_string_equal(json_string_value(json_object_get(o, "datatype")),
                        "FP32");
    return o;
}

static void assert_shape(const json_t *o, size_t rank, size_t d0, size_t d1)
{
    const json_t *shape = json_object_get(o, "shape");

    assert_int_equal(json_array_size(shape), rank);
    assert_int_equal(json_integer_value(json_array_get(shape, 0)), d0);
    if (rank == 2)
        assert_int_equal(json_integer_value(json_array_get(shape, 1)), d1);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;

    memcpy(&f, &u, sizeof f);
    return f;
}

/* The float32 a parsed JSON number denotes (integers included). */
static float json_f32(const json_t *v)
{
    assert_true(json_is_number(v));
    return (float)json_number_value(v);
}

/* A float32 that is finite: the special values first, then random bits. */
static float test_value(size_t i)
{
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, /* +-0 */
        0x00000001u, 0x80000001u, /* smallest subnormals */
        0x007fffffu, 0x807fffffu, /* largest subnormals */
        0x00800000u,              /* FLT_MIN */
        0x7f7fffffu, 0xff7fffffu, /* +-FLT_MAX */
        0x3f800000u, 0x3f800001u, /* 1 and its successor */
        0x4b800000u, 0x4b800001u, /* 2^24 and beyond exact integers */
        0x3eaaaaabu,              /* 1/3 */
        0x4e6e6b28u,              /* 1e9 */
    };
    uint32_t u;

    if (i < sizeof special / sizeof *special)
        return bits_f32(special[i]);
    do {
        u = (uint32_t)rng_next();
        /* A quarter of them subnormal, where printing is hardest. */
        if (rng_below(4) == 0)
            u &= 0x807fffffu;
    } while (!isfinite(bits_f32(u)));
    return bits_f32(u);
}

static void test_encode_roundtrip(void **state)
{
    enum { B = 257, N = 64, G = 4 };
    oip_model_info m = any_model;
    oip_request req = {0};
    float *y = malloc(sizeof(float) * B * N);
    float mean[B * G], rstd[B * G], radius[B];
    oip_result res = {.y = y, .mean = mean, .rstd = rstd, .radius = radius};
    json_t *root;
    json_error_t je;
    char *out;
    size_t len;

    assert_non_null(y);
    m.groups = G;
    for (size_t i = 0; i < B * N; i++)
        y[i] = test_value(i);
    for (size_t i = 0; i < B * G; i++) {
        mean[i] = test_value(rng_below(1000));
        rstd[i] = test_value(rng_below(1000));
    }
    for (size_t i = 0; i < B; i++)
        radius[i] = test_value(i + 7);
    req.n_rows = B;
    req.n_cols = N;
    req.n_outputs = 4;
    req.outputs[0] = OIP_OUT_RSTD;
    req.outputs[1] = OIP_OUT_OUTPUT;
    req.outputs[2] = OIP_OUT_RADIUS;
    req.outputs[3] = OIP_OUT_MEAN;
    req.has_id = 1;
    strcpy(req.id, "q\"uo\\te\n\x01\xc3\xa9");

    assert_int_equal(oip_encode_infer(&m, &req, &res, &out, &len, NULL), LNS_OK);
    root = json_loadb(out, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        print_error("encoded JSON does not parse: %s\n", je.text);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "model_name")),
                        "layernorm");
    assert_string_equal(json_string_value(json_object_get(root, "id")),
                        req.id);
    assert_int_equal(json_array_size(json_object_get(root, "outputs")), 4);

    {
        const json_t *o = response_output(root, 1, "output");
        const json_t *d = json_object_get(o, "data");
        assert_shape(o, 2, B, N);
        assert_int_equal(json_array_size(d), B * N);
        for (size_t i = 0; i < B * N; i++) {
            float got = json_f32(json_array_get(d, i));
            if (f32_bits(got) != f32_bits(y[i])) {
                print_error("value %zu: sent %a (0x%08" PRIx32 "), got %a\n",
                            i, (double)y[i], f32_bits(y[i]), (double)got);
                fail();
            }
        }
    }
    {
        const json_t *o = response_output(root, 0, "rstd");
        const json_t *d = json_object_get(o, "data");
        assert_shape(o, 2, B, G);
        for (size_t i = 0; i < B * G; i++)
            assert_int_equal(f32_bits(json_f32(json_array_get(d, i))),
                             f32_bits(rstd[i]));
    }
    {
        const json_t *o = response_output(root, 3, "mean");
        const json_t *d = json_object_get(o, "data");
        assert_shape(o, 2, B, G);
        for (size_t i = 0; i < B * G; i++)
            assert_int_equal(f32_bits(json_f32(json_array_get(d, i))),
                             f32_bits(mean[i]));
    }
    {
        const json_t *o = response_output(root, 2, "radius");
        const json_t *d = json_object_get(o, "data");
        assert_shape(o, 1, B, 0);
        for (size_t i = 0; i < B; i++)
            assert_int_equal(f32_bits(json_f32(json_array_get(d, i))),
                             f32_bits(radius[i]));
    }
    json_decref(root);
    free(out);
    free(y);
}

/* Values printed by the encoder decode back to the same bits. */
static void test_decode_roundtrip(void **state)
{
    enum { N = 4096 };
    oip_model_info m = any_model;
    oip_request req = {0}, got;
    float *x = malloc(sizeof(float) * N);
    float zero[1] = {0};
    oip_result res = {.y = x, .mean = zero, .rstd = zero, .radius = zero};
    char *resp, *doc;
    size_t len;
    char err[OIP_ERR_MAX];
    const char *data;

    assert_non_null(x);
    for (size_t i = 0; i < N; i++)
        x[i] = test_value(i);
    req.n_rows = 1;
    req.n_cols = N;
    req.n_outputs = 1;
    req.outputs[0] = OIP_OUT_OUTPUT;
    assert_int_equal(oip_encode_infer(&m, &req, &res, &resp, &len, NULL), LNS_OK);
    /* Reuse the encoder's "data":[...] as the request's data. */
    data = strstr(resp, "\"data\":");
    assert_non_null(data);
    doc = malloc(len + 256);
    assert_non_null(doc);
    snprintf(doc, len + 256,
             "{\"inputs\":[{" OK_IN ",\"shape\":[1,%d],%.*s}]}", N,
             (int)(resp + len - 3 - data), data);
    assert_int_equal(decode(doc, &m, &got, err), LNS_OK);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(f32_bits(got.data[i]), f32_bits(x[i]));
    oip_request_fini(&got);
    free(doc);
    free(resp);
    free(x);
}

static void test_encode_errors(void **state)
{
    oip_request req = {0};
    float y[2] = {1.0f, INFINITY}, d[1] = {0};
    oip_result res = {.y = y, .mean = d, .rstd = d, .radius = d};
    char *out = (char *)1;
    size_t len = 5;

    req.n_rows = 1;
    req.n_cols = 2;
    req.n_outputs = 1;
    req.outputs[0] = OIP_OUT_OUTPUT;
    /* A non-finite result cannot be written in JSON. */
    assert_int_equal(oip_encode_infer(&any_model, &req, &res, &out, &len, NULL),
                     LNS_EBADREQ);
    assert_null(out);
    assert_int_equal(len, 0);
    /* A requested output without its array is a caller bug. */
    y[1] = 2.0f;
    res.y = NULL;
    assert_int_equal(oip_encode_infer(&any_model, &req, &res, &out, &len, NULL),
                     LNS_EINTERNAL);
}

static void test_encode_error_doc(void **state)
{
    size_t len;
    char *s = oip_encode_error("inputs[0].name: \"x\"\n\\ \xc3\xa9", &len);
    json_t *root;

    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    root = json_loads(s, 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "error")),
                        "inputs[0].name: \"x\"\n\\ \xc3\xa9");
    json_decref(root);
    free(s);

    /* Invalid UTF-8 still yields a valid document. */
    s = oip_encode_error("bad \xff byte", &len);
    assert_non_null(s);
    root = json_loads(s, 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "error")),
                        "bad ? byte");
    json_decref(root);
    free(s);
}

static void test_metadata(void **state)
{
    size_t len;
    char *s = oip_encode_server_metadata("0.1.0", &len);
    json_t *root;
    const json_t *o;

    assert_non_null(s);
    root = json_loads(s, 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "name")),
                        "lnserve");
    assert_string_equal(json_string_value(json_object_get(root, "version")),
                        "0.1.0");
    assert_true(json_is_array(json_object_get(root, "extensions")));
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(root, "extensions"), 0)),
                        "binary_tensor_data");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(root, "extensions"), 1)),
                        "statistics");
    assert_int_equal(json_array_size(json_object_get(root, "extensions")), 2);
    json_decref(root);
    free(s);

    s = oip_encode_model_metadata(&ln8, &len);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    root = json_loads(s, 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "name")),
                        "ln8_affine");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(root, "versions"), 0)),
                        "1");
    assert_string_equal(json_string_value(json_object_get(root, "platform")),
                        "lnserve");
    o = json_array_get(json_object_get(root, "inputs"), 0);
    assert_string_equal(json_string_value(json_object_get(o, "name")),
                        "input");
    assert_string_equal(json_string_value(json_object_get(o, "datatype")),
                        "FP32");
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(o, "shape"), 0)),
                     -1);
    assert_shape(o, 2, (size_t)-1, 8);
    assert_int_equal(json_array_size(json_object_get(root, "outputs")), 4);
    o = response_output(root, 0, "output");
    assert_shape(o, 2, (size_t)-1, 8);
    o = response_output(root, 1, "mean");
    assert_shape(o, 2, (size_t)-1, 2);
    o = response_output(root, 2, "rstd");
    assert_shape(o, 2, (size_t)-1, 2);
    o = response_output(root, 3, "radius");
    assert_shape(o, 1, (size_t)-1, 0);
    json_decref(root);
    free(s);

    /* Any N: the row dimension is -1 too. */
    s = oip_encode_model_metadata(&any_model, NULL);
    assert_non_null(s);
    root = json_loads(s, 0, NULL);
    o = json_array_get(json_object_get(root, "inputs"), 0);
    assert_shape(o, 2, (size_t)-1, (size_t)-1);
    json_decref(root);
    free(s);
}

/* ---------------------------------------------------------------- fuzz */

static const char *const fuzz_seeds[] = {
    "{\"id\":\"a\",\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
    "\"shape\":[2,4],\"data\":[[1,2,3,4],[5.5,-6e3,7,8]]}],"
    "\"outputs\":[{\"name\":\"mean\",\"parameters\":{\"binary_data\":false}},"
    "{\"name\":\"output\"}],\"parameters\":{}}",
    "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
    "\"shape\":[1,8],\"data\":[1,2,3,4,5,6,7,8]}]}",
};

/* Bytes a mutation may write: JSON's structural characters weigh most. */
static char fuzz_byte(void)
{
    static const char interesting[] = "{}[]\",:0123456789-+.eE \\tfnu\x80\xff";

    if (rng_below(4) == 0)
        return (char)rng_next();
    return interesting[rng_below(sizeof interesting - 1)];
}

static void test_fuzz(void **state)
{
    enum { ITER = 20000 };
    char buf[512];
    size_t accepted = 0;

    for (size_t it = 0; it < ITER; it++) {
        const char *seed = fuzz_seeds[rng_below(2)];
        size_t len = strlen(seed), muts = rng_below(4);
        oip_request req;
        char err[OIP_ERR_MAX];
        lns_status s;
        char *copy;

        memcpy(buf, seed, len);
        for (size_t k = 0; k < muts && len > 0; k++) {
            size_t at = rng_below(len);
            switch (rng_below(4)) {
            case 0: /* replace */
                buf[at] = fuzz_byte();
                break;
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            case 2: /* insert */
                if (len + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = fuzz_byte();
                    len++;
                }
                break;
            default: /* duplicate a slice (nesting, repeated keys) */
            {
                size_t n = rng_below(len - at) + 1;
                if (len + n < sizeof buf) {
                    memmove(buf + at + n, buf + at, len - at);
                    len += n;
                }
                break;
            }
            }
        }
        if (rng_below(3) == 0)
            len = rng_below(len + 1); /* truncate */
        /* Exactly len bytes, no NUL after them: ASan sees any overread. */
        copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, buf, len);
        s = oip_decode_infer(copy, len, OIP_JSON_ALL, rng_below(2) ? &ln8 : &any_model,
                             &req, err);
        free(copy);
        if (s == LNS_OK) {
            accepted++;
            assert_true(req.n_rows >= 1 && req.n_cols >= 1);
            assert_non_null(req.data);
            for (size_t i = 0; i < req.n_rows * req.n_cols; i++)
                assert_true(isfinite(req.data[i]));
            assert_true(req.n_outputs >= 1 &&
                        req.n_outputs <= OIP_OUT_COUNT);
            oip_request_fini(&req);
        } else {
            assert_int_equal(s, LNS_EBADREQ);
            assert_true(strlen(err) > 0 && strlen(err) < OIP_ERR_MAX);
            assert_null(req.data);
        }
    }
    print_message("fuzz: %d documents, %zu accepted\n", ITER, accepted);
    assert_true(accepted > 0);
}

/* ------------------------------------------------------------- f32text */

/* The JSON number grammar, checked independently of f32text. */
static int json_number_ok(const char *s, size_t n)
{
    size_t i = 0;

    if (i < n && s[i] == '-')
        i++;
    if (i >= n || s[i] < '0' || s[i] > '9')
        return 0;
    if (s[i++] != '0')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    if (i < n && s[i] == '.') {
        if (++i >= n || s[i] < '0' || s[i] > '9')
            return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || s[i] < '0' || s[i] > '9')
            return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    return i == n;
}

/* Significant digits of a printed number: its mantissa without leading
 * or trailing zeros. */
static int sig_digits(const char *s, size_t n)
{
    int first = -1, last = -1;

    for (size_t i = 0; i < n && s[i] != 'e'; i++)
        if (s[i] >= '1' && s[i] <= '9') {
            if (first < 0)
                first = (int)i;
            last = (int)i;
        }
    if (first < 0)
        return 0;
    /* digits from the first to the last non-zero one, the point aside */
    return last - first + 1 -
           (memchr(s + first, '.', (size_t)(last - first)) != NULL);
}

/* A float32 for the array printer: one of every kind of value its vector
 * path treats apart (zero, the 7 smallest subnormals it leaves to the
 * scalar path, other subnormals, c = 2^23 where the gap below halves, the
 * smallest normals, exact integers, powers of 10, trailing zeros), or
 * test_value's mix. */
static float array_value(void)
{
    uint32_t u;

    switch (rng_below(12)) {
    case 0:
        u = (uint32_t)rng_below(2) << 31 | (uint32_t)rng_below(16); /* 0, tiny */
        break;
    case 1:
        u = (uint32_t)rng_next() & 0x807fffffu; /* subnormal */
        break;
    case 2:
        u = (uint32_t)rng_below(255) << 23; /* powers of 2 */
        break;
    case 3:
        u = 0x00800000u + (uint32_t)rng_below(64); /* smallest normals */
        break;
    case 4: {
        float f = (float)(rng_below(2000000) - 1000000); /* integers */
        memcpy(&u, &f, sizeof u);
        break;
    }
    case 5: {
        float f = powf(10.0f, (float)((int)rng_below(77) - 45)); /* ~10^k */
        memcpy(&u, &f, sizeof u);
        u += (uint32_t)rng_below(3) - 1;
        break;
    }
    default:
        return test_value(100);
    }
    return isfinite(bits_f32(u)) ? bits_f32(u) : 1.0f;
}

/* f32text_print_array writes exactly what f32text_print does value by
 * value, with commas: every length from 0 to 300 (the vector path's
 * chunks and the scalar tail), then 4000 arrays of random length, about
 * 2.5 M values in all. tests/f32_exhaustive.c does all 2^32 patterns. */
static void test_f32text_print_array(void **state)
{
    enum { MAXN = 1200 };
    float *v = malloc(MAXN * sizeof *v);
    char *want = malloc(MAXN * (F32TEXT_LEN_MAX + 1) + F32TEXT_MAX);
    size_t total = 0;

    assert_true(v && want);
    for (size_t it = 0; it < 301 + 4000; it++) {
        size_t n = it <= 300 ? it : rng_below(MAXN + 1), ng, nw = 0;
        /* exactly the bytes the header asks for: ASan sees a write past */
        char *got = malloc(n * (F32TEXT_LEN_MAX + 1) + F32TEXT_MAX);
        assert_non_null(got);
        for (size_t i = 0; i < n; i++)
            v[i] = array_value();
        ng = f32text_print_array(got, v, n);
        for (size_t i = 0; i < n; i++) {
            if (i)
                want[nw++] = ',';
            nw += f32text_print(want + nw, v[i]);
        }
        if (ng != nw || memcmp(got, want, nw) != 0) {
            size_t at = 0;
            while (at < ng && at < nw && got[at] == want[at])
                at++;
            print_error("n=%zu: array \"%.*s\" where one by one \"%.*s\"\n", n,
                        (int)(ng - at < 40 ? ng - at : 40), got + at,
                        (int)(nw - at < 40 ? nw - at : 40), want + at);
            fail();
        }
        total += n;
        free(got);
    }
    print_message("print_array: %zu values, digits by the %s path\n", total,
                  f32text_print_array_path());
    free(v);
    free(want);
}

/* 2 million float32 patterns (specials, a quarter subnormal): every one
 * prints as a JSON real that parses back, by f32text and by strtof, to the
 * same bits, in no more significant digits than %.9g would use and no more
 * than the shortest %.Ng that round-trips. */
static void test_f32text_roundtrip(void **state)
{
    enum { COUNT = 2000000 };
    char buf[F32TEXT_MAX + 1], ref[32];

    for (size_t i = 0; i < COUNT; i++) {
        float v = test_value(i), got = 0;
        size_t n = f32text_print(buf, v);
        const char *end;
        int prec;

        assert_true(n > 0 && n <= F32TEXT_LEN_MAX);
        buf[n] = '\0';
        if (!json_number_ok(buf, n) || !strpbrk(buf, ".e")) {
            print_error("0x%08" PRIx32 " printed as \"%s\"\n", f32_bits(v),
                        buf);
            fail();
        }
        end = f32text_parse(buf, buf + n, &got);
        assert_ptr_equal(end, buf + n);
        if (f32_bits(got) != f32_bits(v) ||
            f32_bits(strtof(buf, NULL)) != f32_bits(v)) {
            print_error("0x%08" PRIx32 " printed as \"%s\" reads back as "
                        "0x%08" PRIx32 "\n",
                        f32_bits(v), buf, f32_bits(got));
            fail();
        }
        /* Shortest: no %.Ng with fewer digits round-trips. Checked on a
         * sample, snprintf being slow. */
        if (i % 16 == 0 && v != 0) {
            for (prec = 1; prec < 9; prec++) {
                snprintf(ref, sizeof ref, "%.*g", prec, (double)v);
                if (strtof(ref, NULL) == v)
                    break;
            }
            if (sig_digits(buf, n) > prec) {
                print_error("\"%s\" is not shortest (%%.%dg: %s)\n", buf,
                            prec, ref);
                fail();
            }
        }
    }
}

/* Appends a random decimal string to s (at most 64 bytes + NUL). */
static size_t random_decimal(char *s)
{
    size_t n = 0, digits = 1 + rng_below(rng_below(4) == 0 ? 30 : 10);
    int exp, dot = 0;

    if (rng_below(2))
        s[n++] = '-';
    if (rng_below(3) == 0) { /* 0.000ddd */
        s[n++] = '0';
        s[n++] = '.';
        dot = 1;
        for (size_t z = rng_below(6); z > 0; z--)
            s[n++] = '0';
    }
    s[n++] = (char)('1' + rng_below(9));
    for (size_t i = 1; i < digits; i++) {
        if (i == 1 && !dot && rng_below(2))
            s[n++] = '.';
        s[n++] = (char)('0' + rng_below(10));
    }
    if (rng_below(2)) {
        exp = (int)rng_below(100) - 60; /* around float32's range */
        n += (size_t)sprintf(s + n, "%s%d", rng_below(2) ? "e" : "E", exp);
    }
    s[n] = '\0';
    return n;
}

/* Adds (up) or takes one unit of the last mantissa digit of the positive
 * decimal s, its exponent at e: "1.25e3" -> "1.26e3" or "1.24e3". A
 * leading digit may become 0 ("0.99e3"), which is still JSON. */
static void nudge_last_digit(char *s, char *e, int up)
{
    char *d = e - 1;

    for (; d >= s && (*d == (up ? '9' : '0') || *d == '.'); d--)
        if (*d != '.')
            *d = up ? '0' : '9';
    if (d >= s)
        *d = (char)(*d + (up ? 1 : -1));
}

/* f32text_parse is the correctly rounded float32 of the decimal: against
 * glibc's strtof on random decimals and on decimals a hair above, below
 * and exactly at float32 midpoints, where rounding through double goes
 * wrong. Also the grammar: what JSON refuses, f32text refuses. */
/* f32text_parse of the n bytes at s (NUL-terminated) must read them all
 * and give strtof's float, which it returns. */
static float parse_as_strtof(const char *s, size_t n)
{
    float f;

    if (f32text_parse(s, s + n, &f) != s + n) {
        print_error("\"%s\" not read whole\n", s);
        fail();
    }
    if (f32_bits(f) != f32_bits(strtof(s, NULL))) {
        print_error("\"%s\": f32text %a, strtof %a\n", s, (double)f, (double)strtof(s, NULL));
        fail();
    }
    return f;
}

static void test_f32text_parse(void **state)
{
    enum { COUNT = 300000, MID = 20000, SHORT_MID = 30000 };
    static const char *const good[] = {"0", "-0", "0.0", "1e5", "1E+5",
                                       "1e-5", "-12.5e1", "0e0", "1e39",
                                       "-1e999", "1e-999", "123456789012"};
    static const char *const bad[] = {"", "-", "+1", ".5", "1.", "01x",
                                      "-.5", "1e", "1e+", "inf", "nan",
                                      "NaN", "-Infinity", " 1",
                                      "1.e5", "e5", "0x10"};
    char s[160];
    size_t twice_wrong = 0, short_wrong = 0;

    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        float f;
        const char *e = f32text_parse(good[i], good[i] + strlen(good[i]), &f);
        assert_ptr_equal(e, good[i] + strlen(good[i]));
        assert_int_equal(f32_bits(f), f32_bits(strtof(good[i], NULL)));
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        float f = 7.0f;
        const char *e = f32text_parse(bad[i], bad[i] + strlen(bad[i]), &f);
        /* "01x" reads as the number 0 followed by other bytes. */
        if (strcmp(bad[i], "01x") == 0 || strcmp(bad[i], "0x10") == 0) {
            assert_ptr_equal(e, bad[i] + 1);
            continue;
        }
        if (e) {
            print_error("accepted \"%s\"\n", bad[i]);
            fail();
        }
        assert_true(f == 7.0f);
    }
    /* Never reads past end. */
    {
        float f;
        assert_ptr_equal(f32text_parse("12345", "12345" + 2, &f), "12345" + 2);
        assert_true(f == 12.0f);
    }
    /* Every fraction length around the 16-byte window that f32text_parse
     * reads the digits after the point from (and the 8 and 16 within it),
     * the window wholly inside end or not: the number ends at its last
     * digit, whatever digits follow the one byte after it. */
    for (int len = 1; len <= 40; len++) {
        for (int tail = 0; tail < 3; tail++) {
            static const char *const tails[] = {"", ",", ",12345678901234567890"};
            float f;
            int n = snprintf(s, sizeof s, "%s%d.", len % 2 ? "-" : "", len % 3);
            const char *e;

            for (int d = 0; d < len; d++)
                s[n++] = (char)('1' + (d * 7 + len) % 9);
            s[n] = '\0';
            strcat(s, tails[tail]);
            e = f32text_parse(s, s + strlen(s), &f);
            assert_ptr_equal(e, s + n);
            s[n] = '\0';
            assert_int_equal(f32_bits(f), f32_bits(strtof(s, NULL)));
        }
    }
    for (size_t i = 0; i < COUNT; i++)
        parse_as_strtof(s, random_decimal(s));
    for (size_t i = 0; i < MID; i++) {
        /* m: the midpoint between v and its successor, exact in double;
         * %.80e prints it exactly (glibc), then nudge the last digit. */
        float v = test_value(i + 20), f;
        uint32_t u = f32_bits(v) & 0x7fffffffu;
        double m;
        size_t n;
        char *e;

        if (u >= 0x7f7fffffu)
            u = 0x7f7ffffeu;
        m = ((double)bits_f32(u) + (double)bits_f32(u + 1)) / 2;
        n = (size_t)snprintf(s, sizeof s, "%.80e", m);
        e = strchr(s, 'e');
        if (i % 3) /* else exactly the midpoint: ties to even */
            nudge_last_digit(s, e, i % 3 == 1);
        f = parse_as_strtof(s, n);
        if (f32_bits((float)strtod(s, NULL)) != f32_bits(f))
            twice_wrong++;
    }
    for (size_t i = 0; i < SHORT_MID; i++) {
        /* Midpoints rounded to 16 or 15 significant digits: decimals that
         * f32text_parse's double fast path (<= 2^53 in the digits,
         * |exponent| <= 22) takes, and whose double is often the midpoint
         * itself though they are not: there the double must not decide.
         * Between floats of 2^-20 .. 2^60. */
        uint32_t u = 0x35800000u + (uint32_t)rng_below(80u << 23);
        double m = ((double)bits_f32(u) + (double)bits_f32(u + 1)) / 2;
        size_t n = (size_t)snprintf(s, sizeof s, "%.*e", i % 2 ? 15 : 14, m);
        float f = parse_as_strtof(s, n);

        if (strtod(s, NULL) == m && f32_bits((float)m) != f32_bits(f))
            short_wrong++;
    }
    print_message("f32text_parse: %d random decimals, %d near-midpoints and "
                  "%d short ones match strtof; rounding through double got "
                  "%zu and %zu of the latter wrong\n",
                  COUNT, MID, SHORT_MID, twice_wrong, short_wrong);
    /* the test does reach the hard cases */
    assert_true(twice_wrong > 0 && short_wrong > 0);
}

/* ------------------------------------------------- fast path vs full */

/* A number as text for the generator: the kinds of text that stress the
 * two decoders differently. */
static size_t gen_number(char *s)
{
    /* Rare kinds rarely, so that many documents stay valid. */
    size_t kind = rng_below(6) == 0 ? rng_below(5) : 5 + rng_below(7);

    switch (kind) {
    case 0:
        return (size_t)sprintf(s, "%s", rng_below(2) ? "-0" : "0");
    case 1:
        return (size_t)sprintf(s, "%s", rng_below(2) ? "-0.0" : "0e0");
    case 2: /* big integers: jansson's integer range ends at 19 digits */
        return (size_t)sprintf(s, "%s%" PRIu64 "%u", rng_below(2) ? "-" : "",
                               (uint64_t)(rng_next() % 10000000000000000000ull),
                               (unsigned)rng_below(100));
    case 3: /* out of FP32 or double range, 1 in 10 of the rare ones */
        if (rng_below(10) == 0)
            return (size_t)sprintf(s, "%s",
                                   rng_below(2) ? "3.5e38" : "1e400");
        return (size_t)sprintf(s, "%s", "-3.4028235e38");
    case 4: /* near a float32 midpoint */
    {
        float v = test_value(rng_below(1000) + 20);
        uint32_t u = f32_bits(v) & 0x7fffffffu;
        double m;
        int n;
        if (u >= 0x7f7fffffu)
            u = 0x7f7ffffeu;
        m = ((double)bits_f32(u) + (double)bits_f32(u + 1)) / 2;
        n = sprintf(s, "%.60e", m);
        if (rng_below(2))
            nudge_last_digit(s, strchr(s, 'e'), (int)rng_below(2));
        return (size_t)n;
    }
    case 5:
    case 6:
        return f32text_print(s, test_value(rng_below(1000)));
    default:
        return random_decimal(s);
    }
}

/* Whitespace, sometimes. */
static size_t gen_ws(char *s)
{
    static const char ws[] = " \t\n\r";
    size_t n = 0;

    if (rng_below(4) == 0)
        for (size_t k = rng_below(3) + 1; k > 0; k--)
            s[n++] = ws[rng_below(4)];
    return n;
}

/* A request document, mostly valid, in the shapes clients send and some
 * they should not. Returns its length; s has room for 64 KiB. */
static size_t gen_doc(char *s)
{
    size_t b = 1 + rng_below(3), n = 1 + rng_below(8), len = 0;
    size_t db = rng_below(20) == 0 ? b + 1 : b; /* data rows vs shape */
    int nested = (int)rng_below(2);
    const char *in_key = rng_below(10) == 0 ? "\"inp\\u0075ts\"" : "\"inputs\"";
    const char *data_key = rng_below(10) == 0 ? "\"d\\u0061ta\"" : "\"data\"";

#define PUT(...) (len += (size_t)sprintf(s + len, __VA_ARGS__))
    PUT("{");
    len += gen_ws(s + len);
    if (rng_below(3) == 0)
        PUT("\"id\":\"r%u\",", (unsigned)rng_below(100));
    if (rng_below(4) == 0)
        PUT("\"parameters\":{\"x\":[1,{\"data\":[2]}]},");
    PUT("%s:[{", in_key);
    if (rng_below(2))
        PUT("%s:", data_key);
    else
        PUT("\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[%zu,%zu],"
            "%s:",
            b, n, data_key);
    len += gen_ws(s + len);
    PUT("[");
    for (size_t r = 0; r < db; r++) {
        size_t cols = n + (rng_below(40) == 0);
        if (nested)
            PUT("%s[", r ? "," : "");
        for (size_t c = 0; c < cols; c++) {
            if (c || (!nested && r))
                PUT(",");
            len += gen_ws(s + len);
            if (rng_below(400) == 0)
                PUT("%s", rng_below(2) ? "null" : "[1]");
            else
                len += gen_number(s + len);
            len += gen_ws(s + len);
        }
        if (nested)
            PUT("]");
    }
    PUT("]");
    if (strstr(s, "\"shape\"") == NULL)
        PUT(",\"name\":\"input\",\"shape\":[%zu,%zu],\"datatype\":\"FP32\"", b,
            n);
    PUT("}]");
    if (rng_below(3) == 0)
        PUT(",\"outputs\":[{\"name\":\"%s\"}]",
            rng_below(8) ? "mean" : "nope");
    len += gen_ws(s + len);
    PUT("}");
#undef PUT
    return len;
}

/* The same answer from both decoders, to the bit. */
static void check_paths_agree(const char *doc, size_t len, size_t json_len,
                              const oip_model_info *m, size_t *fast_ok)
{
    oip_request a, b;
    char ea[OIP_ERR_MAX], eb[OIP_ERR_MAX];
    lns_status sa, sb;
    int fast = 0;
    char *copy = malloc(len ? len : 1);

    assert_non_null(copy); /* exactly len bytes: ASan sees an overread */
    memcpy(copy, doc, len);
    sa = oip__decode_infer_path(copy, len, json_len, m, &a, ea, 0, &fast);
    sb = oip__decode_infer_path(copy, len, json_len, m, &b, eb, 1, NULL);
    if (sa != sb || (sa != LNS_OK && strcmp(ea, eb) != 0)) {
        print_error("doc: %.*s\nfast path %s: %d %s\nfull decode: %d %s\n",
                    (int)len, doc, fast ? "ran" : "declined", (int)sa,
                    sa ? ea : "", (int)sb, sb ? eb : "");
        fail();
    }
    if (sa == LNS_OK) {
        assert_int_equal(a.n_rows, b.n_rows);
        assert_int_equal(a.n_cols, b.n_cols);
        assert_int_equal(a.has_id, b.has_id);
        assert_string_equal(a.id, b.id);
        assert_int_equal(a.n_outputs, b.n_outputs);
        assert_memory_equal(a.outputs, b.outputs,
                            a.n_outputs * sizeof *a.outputs);
        assert_memory_equal(a.binary, b.binary, a.n_outputs);
        assert_int_equal(a.dtype, b.dtype);
        if (memcmp(a.data, b.data, a.n_rows * a.n_cols * sizeof(float))) {
            print_error("doc: %.*s\nfloats differ\n", (int)len, doc);
            fail();
        }
        *fast_ok += (size_t)fast;
    }
    oip_request_fini(&a);
    oip_request_fini(&b);
    free(copy);
}

/* The fast path and the full jansson decode on generated documents, then
 * on mutations of them: identical status, message and floats. */
static void test_fast_vs_full(void **state)
{
    enum { DOCS = 20000, MUTANTS = 20000 };
    char *doc = malloc(1 << 16);
    size_t fast_ok = 0, ok = 0, fast_mut = 0;

    assert_non_null(doc);
    for (size_t it = 0; it < DOCS + MUTANTS; it++) {
        size_t len = gen_doc(doc);
        const oip_model_info *m = rng_below(4) ? &any_model : &ln8;

        if (it >= DOCS) /* mutate: replace, delete, insert, truncate */
            for (size_t k = rng_below(3) + 1; k > 0 && len > 0; k--) {
                size_t at = rng_below(len);
                switch (rng_below(4)) {
                case 0:
                    doc[at] = fuzz_byte();
                    break;
                case 1:
                    memmove(doc + at, doc + at + 1, len - at - 1);
                    len--;
                    break;
                case 2:
                    memmove(doc + at + 1, doc + at, len - at);
                    doc[at] = fuzz_byte();
                    len++;
                    break;
                default:
                    len = at;
                    break;
                }
            }
        {
            size_t before = fast_ok;
            oip_request r;
            char e[OIP_ERR_MAX];
            check_paths_agree(doc, len, OIP_JSON_ALL, m, &fast_ok);
            if (it >= DOCS)
                fast_mut += fast_ok - before;
            if (oip_decode_infer(doc, len, OIP_JSON_ALL, m, &r, e) == LNS_OK)
                ok++;
            oip_request_fini(&r);
        }
    }
    print_message("fast vs full: %d documents, %zu accepted, %zu of them by "
                  "the fast path (%zu mutants)\n",
                  DOCS + MUTANTS, ok, fast_ok, fast_mut);
    assert_true(fast_ok > DOCS / 20);
    free(doc);
}

/* A document whose jansson tree outgrows the decode arena (proto/oip.c,
 * JARENA_BYTES = 16 KiB): 600 unknown parameters (ignored, but parsed)
 * and a nested data array of 64 x 64 values, which the full decode makes
 * into 4096 jansson reals. */
static char *big_envelope_doc(size_t *len)
{
    size_t cap = 1 << 17, k = 0;
    char *d = malloc(cap);

    assert_non_null(d);
    k += (size_t)snprintf(d + k, cap - k, "{\"parameters\":{");
    for (int i = 0; i < 600; i++)
        k += (size_t)snprintf(d + k, cap - k, "%s\"p%d\":\"%032d\"",
                              i ? "," : "", i, i);
    k += (size_t)snprintf(d + k, cap - k,
                          "},\"inputs\":[{\"name\":\"input\",\"datatype\":"
                          "\"FP32\",\"shape\":[64,64],\"data\":[");
    for (int r = 0; r < 64; r++) {
        k += (size_t)snprintf(d + k, cap - k, "%s[", r ? "," : "");
        for (int c = 0; c < 64; c++)
            k += (size_t)snprintf(d + k, cap - k, "%s%d.%d", c ? "," : "",
                                  r - 32, c);
        k += (size_t)snprintf(d + k, cap - k, "]");
    }
    k += (size_t)snprintf(d + k, cap - k, "]}]}");
    assert_true(k < cap);
    *len = k;
    return d;
}

typedef struct arena_run {
    const char *doc;
    size_t len;
    int rounds, bad;
} arena_run;

static void *arena_thread(void *arg)
{
    arena_run *a = arg;
    char small[] = "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
                   "\"shape\":[1,4],\"data\":[1,2,3,4.5]}],\"id\":\"t\"}";

    for (int i = 0; i < a->rounds; i++) {
        oip_request r;
        char e[OIP_ERR_MAX];
        int big = i % 2;
        if (oip__decode_infer_path(big ? a->doc : small,
                                   big ? a->len : strlen(small),
                                   OIP_JSON_ALL, &any_model, &r, e, i % 3 == 0,
                                   NULL) != LNS_OK) {
            a->bad++;
            continue;
        }
        if (big ? r.n_rows != 64 || r.data[64 * 63 + 63] != 31.63f
                : r.n_rows != 1 || r.data[3] != 4.5f || strcmp(r.id, "t"))
            a->bad++;
        oip_request_fini(&r);
    }
    return NULL;
}

/* jansson's values made during a decode live in a per-thread arena, and
 * values made outside one with malloc: both decoders agree past the
 * arena's end, a value made before decodes survives them and frees
 * normally, and two threads decoding at once keep to their own arenas. */
static void test_jansson_arena(void **state)
{
    size_t len, fast_ok = 0;
    char *doc = big_envelope_doc(&len);
    json_t *outside = json_pack("{s:[i,i],s:s}", "k", 1, 2, "s", "kept");
    arena_run runs[2];
    pthread_t t[2];

    assert_non_null(outside);
    check_paths_agree(doc, len, OIP_JSON_ALL, &any_model, &fast_ok);
    assert_int_equal(fast_ok, 1);
    for (int i = 0; i < 2; i++) {
        runs[i] = (arena_run){doc, len, 200, 0};
        assert_int_equal(pthread_create(&t[i], NULL, arena_thread, &runs[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(runs[i].bad, 0);
    }
    assert_int_equal(json_integer_value(json_array_get(json_object_get(outside, "k"), 1)), 2);
    assert_string_equal(json_string_value(json_object_get(outside, "s")), "kept");
    json_decref(outside);
    free(doc);
}

/* The exact cases the two decoders used to disagree on: "-0" and a
 * decimal whose double is a float32 midpoint. */
static void test_decode_exact_values(void **state)
{
    oip_request req;
    char err[OIP_ERR_MAX];
    /* 1 + 2^-24 is the midpoint of 1 and its successor; a hair above it
     * must round up, though its double is the midpoint itself and
     * (float)double rounds to even (down). */
    const char *doc = IN(OK_IN ",\"shape\":[1,4],\"data\":[-0,-0.0,"
                               "1.00000005960464477539062500000001,"
                               "1.000000059604644775390625]");
    for (int full = 0; full < 2; full++) {
        int fast = -1;
        assert_int_equal(oip__decode_infer_path(doc, strlen(doc), OIP_JSON_ALL, &any_model,
                                                &req, err, full, &fast),
                         LNS_OK);
        assert_int_equal(fast, !full);
        assert_int_equal(f32_bits(req.data[0]), 0x00000000u);
        assert_int_equal(f32_bits(req.data[1]), 0x80000000u);
        assert_int_equal(f32_bits(req.data[2]), 0x3f800001u);
        assert_int_equal(f32_bits(req.data[3]), 0x3f800000u);
        oip_request_fini(&req);
    }
}

/* Inputs tests/fuzz/fuzz_oip_decode found crashing, kept as regressions.
 * Each body is given as exactly its bytes (raw NULs included). */
static void test_fuzz_regressions(void **state)
{
    /* A raw NUL in a key matched the terminator of the key the fast path
     * looked for, and key_is() read past "inputs" / "data" (ASan:
     * global-buffer-overflow). jansson rejects the raw NUL. */
    static const char nul_in_key[] = "{\"inputs\0\0\":[{\"data\":[1]}]}";
    static const char nul_in_inner_key[] =
        "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
        "\"shape\":[1,1],\"data\0\0\":[1]}]}";
    static const struct {
        const char *body;
        size_t len;
    } cases[] = {
        {nul_in_key, sizeof nul_in_key - 1},
        {nul_in_inner_key, sizeof nul_in_inner_key - 1},
    };

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *body = malloc(cases[i].len);
        oip_request req;
        char err[OIP_ERR_MAX];

        assert_non_null(body);
        memcpy(body, cases[i].body, cases[i].len);
        for (int full = 0; full < 2; full++) {
            assert_int_equal(oip__decode_infer_path(body, cases[i].len, OIP_JSON_ALL,
                                                    &any_model, &req, err,
                                                    full, NULL),
                             LNS_EBADREQ);
            assert_null(req.data);
        }
        free(body);
    }
}


/* ------------------------------------------------ FP16 / BF16 (half.h) */

/* Independent decoders: the value of a pattern by its definition. */
static double ref_fp16(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);

    if (e == 31)
        v = m ? NAN : INFINITY;
    return (h & 0x8000) ? -v : v;
}

static double ref_bf16(uint16_t h)
{
    int e = (h >> 7) & 255, m = h & 127;
    double v = e ? ldexp(128 + m, e - 134) : ldexp(m, -133);

    if (e == 255)
        v = m ? NAN : INFINITY;
    return (h & 0x8000) ? -v : v;
}

/* Every one of the 2^16 patterns of each format widens to exactly its
 * value and narrows back to itself (NaNs: stay NaN, same sign, quiet). */
static void test_half_exhaustive(void **state)
{
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = half_fp16_to_f32(h), g = half_bf16_to_f32(h);
        double rf = ref_fp16(h), rg = ref_bf16(h);

        if (isnan(rf)) {
            assert_true(isnan(f));
            assert_int_equal(!!signbit(f), !!(h & 0x8000));
            assert_int_equal(half_f32_to_fp16(f) & 0xfe00u,
                             (h & 0x8000u) | 0x7e00u);
        } else {
            if ((double)f != rf || !!signbit(f) != !!signbit(rf)) {
                print_error("fp16 0x%04x: got %a want %a\n", (unsigned)h,
                            (double)f, rf);
                fail();
            }
            assert_int_equal(half_f32_to_fp16(f), h);
        }
        if (isnan(rg)) {
            assert_true(isnan(g));
            assert_int_equal(!!signbit(g), !!(h & 0x8000));
            assert_true(isnan(half_bf16_to_f32(half_f32_to_bf16(g))));
        } else {
            assert_true((double)g == rg && !!signbit(g) == !!signbit(rg));
            assert_int_equal(half_f32_to_bf16(g), h);
        }
    }
}

/* Reference narrowing: the nearest of the format's values (table: the
 * non-negative finite values in pattern order, which is value order),
 * ties to the even pattern, and past the last midpoint inf. Plain
 * double arithmetic on exact values. */
static uint16_t ref_narrow(const double *table, uint16_t n_finite,
                           double top, float x)
{
    double a = fabs((double)x);
    uint16_t sign = signbit(x) ? 0x8000 : 0, lo = 0, hi = n_finite;
    double vlo, vhi;

    if (isnan(x))
        return 0xffff; /* checked apart */
    /* the largest pattern with table[p] <= a, the virtual one past the
     * top (= inf's pattern, value top) when a is over the largest finite */
    while (hi - lo > 1) {
        uint16_t mid = (uint16_t)((lo + hi) / 2);
        if (table[mid] <= a)
            lo = mid;
        else
            hi = mid;
    }
    if (a >= top)
        return sign | n_finite;
    vlo = table[lo];
    vhi = lo + 1 < n_finite ? table[lo + 1] : top;
    if (a - vlo < vhi - a || (a - vlo == vhi - a && !(lo & 1)))
        return sign | lo;
    return sign | (uint16_t)(lo + 1);
}

static void check_narrow(const double *t16, const double *tb16, float x)
{
    uint16_t want16 = ref_narrow(t16, 0x7c00, 65536.0, x);
    uint16_t wantb = ref_narrow(tb16, 0x7f80, ldexp(1, 128), x);
    uint16_t got16 = half_f32_to_fp16(x), gotb = half_f32_to_bf16(x);

    if (isnan(x)) {
        assert_true(isnan(half_fp16_to_f32(got16)));
        assert_true(isnan(half_bf16_to_f32(gotb)));
        return;
    }
    if (got16 != want16 || gotb != wantb) {
        print_error("narrow %a (0x%08" PRIx32 "): fp16 got 0x%04x want "
                    "0x%04x, bf16 got 0x%04x want 0x%04x\n",
                    (double)x, f32_bits(x), (unsigned)got16,
                    (unsigned)want16, (unsigned)gotb, (unsigned)wantb);
        fail();
    }
#ifdef __FLT16_MAX__
    /* The compiler's own conversion, where it has one, agrees too. */
    {
        _Float16 c = (_Float16)x;
        uint16_t cb;
        memcpy(&cb, &c, 2);
        assert_int_equal(cb, want16);
    }
#endif
}

/* float32 -> FP16 / BF16 against ref_narrow: every midpoint between two
 * neighbours of each format and the floats either side of it, the
 * overflow edges, and 2 million random patterns. */
static void test_half_rounding(void **state)
{
    double *t16 = malloc(0x7c00 * sizeof(double));
    double *tb16 = malloc(0x7f80 * sizeof(double));
    static const float edges[] = {
        0.0f, -0.0f, 65504.0f, 65519.998f, 65520.0f, 65536.0f, 1e30f,
        INFINITY, -INFINITY, NAN, 0x1p-24f, 0x1p-25f, 0x1.8p-25f,
        0x1p-26f, 0x1p-14f, 0x1.ff8p-15f, FLT_MAX, -FLT_MAX, FLT_MIN,
        0x1p-149f, 0x1.fep127f, 0x1.ffp127f, 0x1.fefffep127f,
    };
    size_t n = 0;

    assert_non_null(t16);
    assert_non_null(tb16);
    for (uint32_t i = 0; i < 0x7c00; i++)
        t16[i] = ref_fp16((uint16_t)i);
    for (uint32_t i = 0; i < 0x7f80; i++)
        tb16[i] = ref_bf16((uint16_t)i);
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
        check_narrow(t16, tb16, edges[i]);
        check_narrow(t16, tb16, -edges[i]);
    }
    for (uint32_t i = 0; i < 0x7f80; i++) {
        /* midpoints are exact in float32 (12 and 9 significant bits) */
        for (int fmt = 0; fmt < 2; fmt++) {
            double lo, hi;
            float mid;
            if (fmt == 0 && i >= 0x7c00)
                continue;
            lo = fmt ? tb16[i] : t16[i];
            hi = fmt ? (i + 1 < 0x7f80 ? tb16[i + 1] : ldexp(1, 128))
                     : (i + 1 < 0x7c00 ? t16[i + 1] : 65536.0);
            if ((lo + hi) / 2 > FLT_MAX)
                continue;
            mid = (float)((lo + hi) / 2);
            assert_true((double)mid == (lo + hi) / 2);
            for (int sg = 0; sg < 2; sg++) {
                float m = sg ? -mid : mid;
                check_narrow(t16, tb16, m);
                check_narrow(t16, tb16, nextafterf(m, INFINITY));
                check_narrow(t16, tb16, nextafterf(m, -INFINITY));
                n += 3;
            }
        }
    }
    for (size_t i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)rng_next();
        /* half of them in FP16's range of exponents, where it matters */
        if (i & 1)
            u = (u & 0x80ffffffu) | ((uint32_t)(96 + rng_below(48)) << 23);
        check_narrow(t16, tb16, bits_f32(u));
    }
    print_message("half rounding: %zu midpoint cases, 2000000 random\n", n);
    free(t16);
    free(tb16);
}

/* -------------------------------------------- binary tensor data */

/* A JSON header then count values of dtype dt (from the floats v) in
 * buf; *json_len the header's length; returns the body's length. extra
 * goes into inputs[0] after the shape. */
static size_t binary_body(char *buf, size_t cap, size_t *json_len,
                          oip_dtype dt, size_t b, size_t n, const float *v,
                          const char *extra, const char *tail)
{
    size_t size = oip_dtype_size(dt);
    int k = snprintf(buf, cap,
                     "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"%s\","
                     "\"shape\":[%zu,%zu],\"parameters\":"
                     "{\"binary_data_size\":%zu}%s}]%s}",
                     oip_dtype_name(dt), b, n, b * n * size, extra, tail);
    char *o;

    assert_true(k > 0 && (size_t)k + b * n * size <= cap);
    *json_len = (size_t)k;
    o = buf + k;
    for (size_t i = 0; i < b * n; i++) {
        uint16_t h;
        double d = v[i];
        switch (dt) {
        case OIP_DT_FP16:
            h = half_f32_to_fp16(v[i]);
            memcpy(o + 2 * i, &h, 2);
            break;
        case OIP_DT_BF16:
            h = half_f32_to_bf16(v[i]);
            memcpy(o + 2 * i, &h, 2);
            break;
        case OIP_DT_FP64:
            memcpy(o + 8 * i, &d, 8);
            break;
        default:
            memcpy(o + 4 * i, &v[i], 4);
            break;
        }
    }
    return (size_t)k + b * n * size;
}

/* Binary inputs of every datatype decode to the values sent (FP16/BF16
 * exactly, FP64 rounded to float32), by both decoders. */
static void test_binary_inputs(void **state)
{
    enum { B = 3, N = 8 };
    float v[B * N];
    char buf[4096];
    size_t fast_ok = 0;

    for (size_t i = 0; i < B * N; i++)
        v[i] = (float)((double)(i * 37 % 101) / 7.0 - 5.0);
    v[1] = -0.0f;
    v[2] = 0x1p-20f; /* FP16 subnormal */
    for (int dt = 0; dt < OIP_DT_COUNT; dt++) {
        size_t jl, len = binary_body(buf, sizeof buf, &jl, (oip_dtype)dt, B,
                                     N, v, "", "");
        oip_request req;
        char err[OIP_ERR_MAX];

        assert_int_equal(oip_decode_infer(buf, len, jl, &ln8, &req, err),
                         LNS_OK);
        assert_int_equal(req.dtype, dt);
        assert_int_equal(req.n_rows, B);
        assert_int_equal(req.n_cols, N);
        for (size_t i = 0; i < B * N; i++) {
            float want = dt == OIP_DT_FP16
                             ? half_fp16_to_f32(half_f32_to_fp16(v[i]))
                         : dt == OIP_DT_BF16
                             ? half_bf16_to_f32(half_f32_to_bf16(v[i]))
                             : v[i];
            assert_int_equal(f32_bits(req.data[i]), f32_bits(want));
        }
        for (size_t i = 0; i < req.n_outputs; i++)
            assert_false(req.binary[i]);
        oip_request_fini(&req);
        check_paths_agree(buf, len, jl, &ln8, &fast_ok);
    }
    /* FP64 rounds to nearest float32. */
    {
        double d[2] = {0.1, 1.0 + 0x1p-24 + 0x1p-40};
        char body[512];
        int k = snprintf(body, sizeof body,
                         IN(OK64 ",\"shape\":[1,2],\"parameters\":"
                                 "{\"binary_data_size\":16}"));
        oip_request req;
        char err[OIP_ERR_MAX];
        memcpy(body + k, d, 16);
        assert_int_equal(oip_decode_infer(body, (size_t)k + 16, (size_t)k,
                                          &any_model, &req, err),
                         LNS_OK);
        assert_true(req.data[0] == 0.1f);
        assert_int_equal(f32_bits(req.data[1]), 0x3f800001u);
        oip_request_fini(&req);
    }
}

/* JSON data in FP16 / BF16 / FP64 tensors: rounded to the datatype, the
 * same by both decoders; overflow in the datatype named. */
static void test_json_dtypes(void **state)
{
    static const char *const docs[] = {
        IN("\"name\":\"input\",\"datatype\":\"FP16\",\"shape\":[1,3],"
           "\"data\":[0.1,-65504,1e-8]"),
        IN("\"name\":\"input\",\"datatype\":\"BF16\",\"shape\":[1,3],"
           "\"data\":[[0.1,3e38,-1.00390625]]"),
        IN("\"name\":\"input\",\"datatype\":\"FP64\",\"shape\":[1,3],"
           "\"data\":[0.1,1e30,-2.5]"),
    };
    oip_request req;
    char err[OIP_ERR_MAX];
    size_t fast_ok = 0;

    assert_int_equal(decode(docs[0], &any_model, &req, err), LNS_OK);
    assert_int_equal(req.dtype, OIP_DT_FP16);
    assert_true(req.data[0] == 0x1.998p-4f); /* FP16's 0.0999755859375 */
    assert_true(req.data[1] == -65504.0f);
    assert_true(req.data[2] == 0.0f);       /* under half of 2^-24 */
    oip_request_fini(&req);
    assert_int_equal(decode(docs[1], &any_model, &req, err), LNS_OK);
    assert_true(req.data[0] == 0x1.9ap-4f);
    assert_true(req.data[2] == -1.0f); /* the tie 1 + 2^-8 goes to even */
    oip_request_fini(&req);
    assert_int_equal(decode(docs[2], &any_model, &req, err), LNS_OK);
    assert_int_equal(req.dtype, OIP_DT_FP64);
    assert_true(req.data[0] == 0.1f);
    oip_request_fini(&req);
    for (size_t i = 0; i < 3; i++)
        check_paths_agree(docs[i], strlen(docs[i]), OIP_JSON_ALL,
                          &any_model, &fast_ok);
    assert_int_equal(fast_ok, 3);
}

/* Binary outputs: JSON header with binary_data_size and no data, the
 * blobs after it in output order; "output" in the input's datatype. */
static void test_binary_outputs(void **state)
{
    enum { B = 2, N = 4 };
    float y[B * N] = {1.0f, -2.5f, 0.1f, 70000.0f, 3.0f, 1e-9f, -0.0f, 5.0f};
    float mean[B] = {0.5f, -1.0f}, rstd[B] = {2.0f, 0.25f}, rad[B] = {0.9f,
                                                                      0.1f};
    oip_result res = {.y = y, .mean = mean, .rstd = rstd, .radius = rad};
    oip_request req = {0};
    char *out;
    size_t len, jl;
    json_t *root;
    const json_t *o;

    req.n_rows = B;
    req.n_cols = N;
    req.n_outputs = 3;
    req.outputs[0] = OIP_OUT_MEAN;
    req.outputs[1] = OIP_OUT_OUTPUT;
    req.outputs[2] = OIP_OUT_RADIUS;
    req.binary[0] = 1; /* mean binary, output binary, radius JSON */
    req.binary[1] = 1;
    for (int dt = 0; dt < OIP_DT_COUNT; dt++) {
        size_t size = oip_dtype_size((oip_dtype)dt);
        const char *blob;
        req.dtype = (oip_dtype)dt;
        assert_int_equal(oip_encode_infer(&any_model, &req, &res, &out, &len,
                                          &jl),
                         LNS_OK);
        assert_int_equal(len, jl + B * 4 + B * N * size);
        root = json_loadb(out, jl, JSON_REJECT_DUPLICATES, NULL);
        assert_non_null(root);
        o = json_array_get(json_object_get(root, "outputs"), 0);
        assert_string_equal(json_string_value(json_object_get(o, "datatype")),
                            "FP32");
        assert_null(json_object_get(o, "data"));
        assert_int_equal(json_integer_value(json_object_get(
                             json_object_get(o, "parameters"),
                             "binary_data_size")),
                         B * 4);
        o = json_array_get(json_object_get(root, "outputs"), 1);
        assert_string_equal(json_string_value(json_object_get(o, "datatype")),
                            oip_dtype_name((oip_dtype)dt));
        assert_shape(o, 2, B, N);
        assert_int_equal(json_integer_value(json_object_get(
                             json_object_get(o, "parameters"),
                             "binary_data_size")),
                         B * N * size);
        o = json_array_get(json_object_get(root, "outputs"), 2);
        assert_int_equal(json_array_size(json_object_get(o, "data")), B);
        blob = out + jl;
        assert_memory_equal(blob, mean, B * 4);
        blob += B * 4;
        for (size_t i = 0; i < B * N; i++) {
            uint16_t h;
            double d;
            float f;
            switch (dt) {
            case OIP_DT_FP16: /* 70000 carried as inf */
                memcpy(&h, blob + 2 * i, 2);
                assert_int_equal(h, half_f32_to_fp16(y[i]));
                break;
            case OIP_DT_BF16:
                memcpy(&h, blob + 2 * i, 2);
                assert_int_equal(h, half_f32_to_bf16(y[i]));
                break;
            case OIP_DT_FP64:
                memcpy(&d, blob + 8 * i, 8);
                assert_true(d == (double)y[i]);
                break;
            default:
                memcpy(&f, blob + 4 * i, 4);
                assert_int_equal(f32_bits(f), f32_bits(y[i]));
            }
        }
        json_decref(root);
        free(out);
    }
    /* FP16 "output" past 65504 cannot go in JSON; in FP32 it can. */
    req.binary[1] = 0;
    req.dtype = OIP_DT_FP16;
    assert_int_equal(oip_encode_infer(&any_model, &req, &res, &out, &len,
                                      &jl),
                     LNS_EBADREQ);
    assert_null(out);
    req.dtype = OIP_DT_FP32;
    assert_int_equal(oip_encode_infer(&any_model, &req, &res, &out, &len,
                                      &jl),
                     LNS_OK);
    assert_true(jl < len); /* mean is still binary */
    free(out);
    /* No binary output: the JSON is the whole response. FP64 "output"
     * prints the widened float32 exactly. */
    req.binary[0] = 0;
    req.dtype = OIP_DT_FP64;
    assert_int_equal(oip_encode_infer(&any_model, &req, &res, &out, &len,
                                      &jl),
                     LNS_OK);
    assert_int_equal(jl, len);
    root = json_loadb(out, len, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(root);
    o = json_array_get(json_object_get(root, "outputs"), 1);
    for (size_t i = 0; i < B * N; i++) {
        const json_t *x = json_array_get(json_object_get(o, "data"), i);
        assert_true(json_is_real(x));
        assert_true(json_real_value(x) == (double)y[i]);
        assert_int_equal(!!signbit(json_real_value(x)), !!signbit(y[i]));
    }
    json_decref(root);
    free(out);
}

/* Which outputs come back binary: binary_data per output, the request's
 * binary_data_output for the rest (and for the defaults). */
static void test_binary_flags(void **state)
{
    oip_request req;
    char err[OIP_ERR_MAX];

    assert_int_equal(
        decode("{\"parameters\":{\"binary_data_output\":true}," GOOD_INPUT
               ",\"outputs\":[{\"name\":\"mean\"},{\"name\":\"output\","
               "\"parameters\":{\"binary_data\":false}}]}",
               &any_model, &req, err),
        LNS_OK);
    assert_int_equal(req.n_outputs, 2);
    assert_int_equal(req.binary[0], 1);
    assert_int_equal(req.binary[1], 0);
    oip_request_fini(&req);
    assert_int_equal(
        decode("{\"parameters\":{\"binary_data_output\":true}," GOOD_INPUT
               "}",
               &any_model, &req, err),
        LNS_OK);
    for (size_t i = 0; i < OIP_OUT_DEFAULTS; i++)
        assert_int_equal(req.binary[i], 1);
    oip_request_fini(&req);
    assert_int_equal(decode("{" GOOD_INPUT ",\"outputs\":[{\"name\":\"rstd\","
                            "\"parameters\":{\"binary_data\":true}}]}",
                            &any_model, &req, err),
                     LNS_OK);
    assert_int_equal(req.binary[0], 1);
    oip_request_fini(&req);
}

/* perf_analyzer: Inference-Header-Content-Length = the body's length on a
 * pure JSON body; the fast path still answers. A raw body (header 0). */
static void test_header_json_and_raw(void **state)
{
    const char *doc = "{" GOOD_INPUT "}";
    oip_request req;
    char err[OIP_ERR_MAX];
    int fast = 0;
    float raw[16];
    char *body;

    assert_int_equal(oip__decode_infer_path(doc, strlen(doc), strlen(doc),
                                            &any_model, &req, err, 0, &fast),
                     LNS_OK);
    assert_int_equal(fast, 1);
    assert_int_equal(req.n_cols, 4);
    oip_request_fini(&req);

    for (size_t i = 0; i < 16; i++)
        raw[i] = (float)i - 7.5f;
    body = malloc(sizeof raw); /* exactly its bytes: ASan sees overreads */
    assert_non_null(body);
    memcpy(body, raw, sizeof raw);
    assert_int_equal(oip_decode_infer(body, sizeof raw, 0, &ln8, &req, err),
                     LNS_OK);
    assert_int_equal(req.n_rows, 2);
    assert_int_equal(req.n_cols, 8);
    assert_int_equal(req.dtype, OIP_DT_FP32);
    assert_int_equal(req.n_outputs, OIP_OUT_DEFAULTS);
    assert_memory_equal(req.data, raw, sizeof raw);
    oip_request_fini(&req);
    assert_int_equal(oip_decode_infer(body, sizeof raw, 0, &any_model, &req,
                                      err),
                     LNS_EBADREQ);
    assert_non_null(strstr(err, "Inference-Header-Content-Length: 0 (a raw "
                                "FP32 body) needs a model with a fixed dim"));
    assert_int_equal(oip_decode_infer(body, 36, 0, &ln8, &req, err),
                     LNS_EBADREQ);
    assert_non_null(strstr(err, "36 bytes of raw FP32 input"));
    assert_int_equal(oip_decode_infer(body, 0, 0, &ln8, &req, err),
                     LNS_EBADREQ);
    assert_non_null(strstr(err, "request body: empty"));
    raw[3] = NAN;
    memcpy(body, raw, sizeof raw);
    assert_int_equal(oip_decode_infer(body, sizeof raw, 0, &ln8, &req, err),
                     LNS_EBADREQ);
    assert_non_null(strstr(err, "value at row 0, column 3 is not finite in "
                                "FP32"));
    free(body);
}

/* Malformed binary requests: each rejected with the field named, and
 * both decoders agreeing. */
static void test_binary_bad(void **state)
{
    static const float v[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                15, 16};
    char buf[2048];
    size_t jl, len, fast_ok = 0;
    oip_request req;
    char err[OIP_ERR_MAX];

#define EXPECT_BAD(b, l, j, m, want)                                          \
    do {                                                                      \
        assert_int_equal(oip_decode_infer((b), (l), (j), (m), &req, err),     \
                         LNS_EBADREQ);                                        \
        if (!strstr(err, (want))) {                                           \
            print_error("want: %s\ngot: %s\n", (want), err);                  \
            fail();                                                           \
        }                                                                     \
        assert_null(req.data);                                                \
        check_paths_agree((b), (l), (j), (m), &fast_ok);                      \
    } while (0)

    len = binary_body(buf, sizeof buf, &jl, OIP_DT_FP32, 2, 8, v, "", "");
    /* header longer than the body */
    {
        char want[128];
        snprintf(want, sizeof want,
                 "Inference-Header-Content-Length: %zu is more than the "
                 "body's %zu bytes",
                 len + 1, len);
        EXPECT_BAD(buf, len, len + 1, &ln8, want);
    }
    /* binary bytes short or long */
    EXPECT_BAD(buf, len - 4, jl, &ln8,
               "request body: 60 bytes follow the JSON header "
               "(Inference-Header-Content-Length), expected 64");
    EXPECT_BAD(buf, len, jl - 1, &ln8, "invalid JSON");
    /* the header points inside the binary part: the JSON looks longer */
    EXPECT_BAD(buf, len, jl + 4, &ln8, "invalid JSON");
    /* binary_data_size does not match the shape */
    len = binary_body(buf, sizeof buf, &jl, OIP_DT_FP16, 2, 8, v, "", "");
    memcpy(strstr(buf, ":32}"), ":31}", 4);
    EXPECT_BAD(buf, len, jl, &ln8,
               "inputs[0].parameters.binary_data_size: 31 bytes, expected "
               "32 (shape [2, 8] of FP16, 2 bytes each)");
    /* ... not an integer, negative */
    {
        const char *d1 = "{\"inputs\":[{\"name\":\"input\",\"datatype\":"
                         "\"FP32\",\"shape\":[1,8],\"parameters\":"
                         "{\"binary_data_size\":\"32\"}}]}";
        const char *d2 = "{\"inputs\":[{\"name\":\"input\",\"datatype\":"
                         "\"FP32\",\"shape\":[1,8],\"parameters\":"
                         "{\"binary_data_size\":-32}}]}";
        EXPECT_BAD(d1, strlen(d1), strlen(d1), &ln8,
                   "inputs[0].parameters.binary_data_size: expected an "
                   "integer >= 0 (bytes), got a string");
        EXPECT_BAD(d2, strlen(d2), strlen(d2), &ln8,
                   "got a negative integer");
    }
    /* data and binary_data_size together */
    len = binary_body(buf, sizeof buf, &jl, OIP_DT_FP32, 1, 4, v,
                      ",\"data\":[1,2,3,4]", "");
    EXPECT_BAD(buf, len, jl, &any_model,
               "inputs[0].data: present together with "
               "parameters.binary_data_size");
    /* binary_data_size on a JSON-data input: the sizes say the data is
     * not there */
    {
        const char *d = IN(OK_IN ",\"shape\":[1,2],\"data\":[1,2],"
                                 "\"parameters\":{\"binary_data_size\":8}");
        EXPECT_BAD(d, strlen(d), strlen(d), &any_model,
                   "inputs[0].data: present together with "
                   "parameters.binary_data_size");
        EXPECT_BAD(d, strlen(d), OIP_JSON_ALL, &any_model,
                   "binary data needs the Inference-Header-Content-Length "
                   "header");
    }
    /* bytes after the JSON, but a JSON-data input */
    {
        char d[256];
        int k = snprintf(d, sizeof d, "{" GOOD_INPUT "}");
        memcpy(d + k, "\0\0\0\0", 4);
        EXPECT_BAD(d, (size_t)k + 4, (size_t)k, &any_model,
                   "request body: 4 bytes follow the JSON header "
                   "(Inference-Header-Content-Length), but inputs[0] has no "
                   "parameters.binary_data_size");
    }
    /* two inputs */
    {
        char d[512];
        int k = snprintf(
            d, sizeof d,
            "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\","
            "\"shape\":[1,1],\"parameters\":{\"binary_data_size\":4}},"
            "{\"name\":\"input2\",\"datatype\":\"FP32\",\"shape\":[1,1],"
            "\"parameters\":{\"binary_data_size\":4}}]}");
        memset(d + k, 0, 8);
        EXPECT_BAD(d, (size_t)k + 8, (size_t)k, &any_model,
                   "inputs: 2 tensors");
    }
    /* non-finite binary values, per datatype */
    {
        float bad[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        bad[5] = INFINITY;
        for (int dt = 0; dt < OIP_DT_COUNT; dt++) {
            len = binary_body(buf, sizeof buf, &jl, (oip_dtype)dt, 2, 4, bad,
                              "", "");
            EXPECT_BAD(buf, len, jl, &any_model,
                       "inputs[0] (binary data): value at row 1, column 1 "
                       "is not finite");
        }
        /* an FP64 value finite in FP64 but not in FP32 */
        bad[5] = 6;
        len = binary_body(buf, sizeof buf, &jl, OIP_DT_FP64, 2, 4, bad, "",
                          "");
        {
            double big = 1e300;
            memcpy(buf + jl + 8 * 6, &big, 8);
        }
        EXPECT_BAD(buf, len, jl, &any_model,
                   "value at row 1, column 2 is not finite in FP32 (lnserve "
                   "computes FP64 inputs in FP32)");
    }
    /* JSON values past a datatype's range */
    {
        const char *d1 = IN("\"name\":\"input\",\"datatype\":\"FP16\","
                            "\"shape\":[1,3],\"data\":[1,65520,2]");
        const char *d2 = IN("\"name\":\"input\",\"datatype\":\"FP16\","
                            "\"shape\":[1,3],\"data\":[70000,1e39,2]");
        const char *d3 = IN("\"name\":\"input\",\"datatype\":\"BF16\","
                            "\"shape\":[1,2],\"data\":[3.4e38,2]");
        const char *d4 = IN("\"name\":\"input\",\"datatype\":\"FP64\","
                            "\"shape\":[1,2],\"data\":[1,1e300]");
        EXPECT_BAD(d1, strlen(d1), OIP_JSON_ALL, &any_model,
                   "inputs[0].data: value at row 0, column 1 is not finite "
                   "in FP16");
        EXPECT_BAD(d2, strlen(d2), OIP_JSON_ALL, &any_model,
                   "inputs[0].data: value at row 0, column 0 is not finite "
                   "in FP16");
        EXPECT_BAD(d3, strlen(d3), OIP_JSON_ALL, &any_model,
                   "value at row 0, column 0 is not finite in BF16");
        EXPECT_BAD(d4, strlen(d4), OIP_JSON_ALL, &any_model,
                   "is not finite in FP32 (lnserve computes FP64 inputs in "
                   "FP32)");
    }
#undef EXPECT_BAD
}

/* Random binary bodies, whole and mutated, with random header values:
 * both decoders agree and nothing reads out of bounds. */
static void test_binary_fuzz(void **state)
{
    enum { ITER = 20000 };
    char buf[4096];
    float v[64];
    size_t fast_ok = 0, ok = 0;

    for (size_t it = 0; it < ITER; it++) {
        oip_dtype dt = (oip_dtype)rng_below(OIP_DT_COUNT);
        size_t b = rng_below(4) + 1, n = rng_below(8) + 1, jl, len;
        const oip_model_info *m = rng_below(2) ? &any_model : &ln8;
        oip_request req;
        char err[OIP_ERR_MAX];

        if (m == &ln8)
            n = 8;
        for (size_t i = 0; i < b * n; i++)
            v[i] = test_value(rng_below(40));
        len = binary_body(buf, sizeof buf, &jl, dt, b, n, v, "",
                          rng_below(2) ? ",\"parameters\":"
                                         "{\"binary_data_output\":true}"
                                       : "");
        for (size_t k = rng_below(3); k > 0 && len > 0; k--) {
            size_t at = rng_below(len);
            switch (rng_below(3)) {
            case 0:
                buf[at] = fuzz_byte();
                break;
            case 1:
                len = at;
                break;
            default:
                jl = rng_below(len + 2);
                break;
            }
        }
        check_paths_agree(buf, len, jl, m, &fast_ok);
        if (oip_decode_infer(buf, len, jl, m, &req, err) == LNS_OK)
            ok++;
        oip_request_fini(&req);
    }
    print_message("binary fuzz: %d bodies, %zu accepted\n", ITER, ok);
    assert_true(ok > ITER / 20);
}

int main(void)
{
    const char *env = getenv("LNSERVE_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0)
                        : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat),
        cmocka_unit_test(test_nested_id_outputs),
        cmocka_unit_test(test_empty_outputs_means_default),
        cmocka_unit_test(test_output_names),
        cmocka_unit_test(test_bad_docs),
        cmocka_unit_test(test_groups_must_divide),
        cmocka_unit_test(test_long_id_and_strings),
        cmocka_unit_test(test_encode_roundtrip),
        cmocka_unit_test(test_decode_roundtrip),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_encode_error_doc),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_f32text_roundtrip),
        cmocka_unit_test(test_f32text_print_array),
        cmocka_unit_test(test_f32text_parse),
        cmocka_unit_test(test_fast_vs_full),
        cmocka_unit_test(test_jansson_arena),
        cmocka_unit_test(test_decode_exact_values),
        cmocka_unit_test(test_fuzz_regressions),
        cmocka_unit_test(test_half_exhaustive),
        cmocka_unit_test(test_half_rounding),
        cmocka_unit_test(test_binary_inputs),
        cmocka_unit_test(test_json_dtypes),
        cmocka_unit_test(test_binary_outputs),
        cmocka_unit_test(test_binary_flags),
        cmocka_unit_test(test_header_json_and_raw),
        cmocka_unit_test(test_binary_bad),
        cmocka_unit_test(test_binary_fuzz),
    };

    printf("test_proto: seed %" PRIu64 " (LNSERVE_TEST_SEED=%" PRIu64
           " to replay)\n",
           seed, seed);
    rng_state = seed;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
