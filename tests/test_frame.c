/*
 * test_frame.c -- the binary protocol codec (proto/frame.c): round trips
 * of every frame kind, every malformed header, truncation at every byte,
 * every field check of an INFER body, the limits (at and one past), the
 * wire status table, and response decoding of hostile bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/frame.h"

static const frame_limits LIM = {
    .max_frame_bytes = 1 << 20,
    .max_rows = 100,
    .max_cols = 1000,
    .max_name_bytes = 63,
};

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void expect_contains(const char *got, const char *want)
{
    if (!strstr(got, want)) {
        print_error("message: %s\nwanted:  %s\n", got, want);
        fail();
    }
}

/* An INFER frame of rows x cols values 0.5 * i - 3, malloc'd. */
static uint8_t *make_infer(const char *name, uint32_t rows, uint32_t cols, unsigned mask,
                           size_t *len)
{
    size_t n = (size_t)rows * cols;
    float *x = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * (float)i - 3.0f;
    *len = frame_infer_request_bytes(strlen(name), FRAME_DTYPE_FP32, rows, cols);
    assert_true(*len > 0);
    uint8_t *f = malloc(*len);
    assert_non_null(f);
    size_t w = frame_encode_infer_request(f, 0x1122334455667788ull, 0, name, strlen(name),
                                          FRAME_DTYPE_FP32, mask, rows, cols, x);
    assert_int_equal(w, *len);
    free(x);
    return f;
}

static void test_infer_round_trip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = make_infer("layernorm", 3, 5, FRAME_OUT_OUTPUT | FRAME_OUT_RADIUS, &len);
    frame_header h;
    size_t k;
    assert_int_equal(frame_scan(f, len, &LIM, &h, &k), FRAME_READY);
    assert_int_equal(k, len);
    assert_int_equal(h.opcode, FRAME_OP_INFER);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.flags, 0);
    assert_true(h.id == 0x1122334455667788ull);
    assert_int_equal(h.body_len, len - FRAME_HEADER_BYTES);
    /* Little-endian on the wire, whatever the host. */
    assert_memory_equal(f, "LNSB\x01\x03\x00\x00", 8);
    assert_int_equal(f[16], 0x88);

    frame_infer fi;
    char msg[FRAME_MSG_MAX];
    assert_int_equal(frame_decode_infer(f + FRAME_HEADER_BYTES, h.body_len, &LIM, &fi, msg),
                     LNS_OK);
    assert_int_equal(fi.rows, 3);
    assert_int_equal(fi.cols, 5);
    assert_int_equal(fi.dtype, FRAME_DTYPE_FP32);
    assert_int_equal(fi.mask, FRAME_OUT_OUTPUT | FRAME_OUT_RADIUS);
    assert_int_equal(fi.name_len, 9);
    assert_memory_equal(fi.name, "layernorm", 9);
    assert_int_equal(fi.payload_len, 60);
    float x[15];
    assert_int_equal(frame_infer_copy_f32(&fi, x, msg), LNS_OK);
    for (int i = 0; i < 15; i++)
        assert_true(x[i] == 0.5f * (float)i - 3.0f);
    free(f);
}

static void test_two_frames_back_to_back(void **state)
{
    (void)state;
    uint8_t buf[2 * FRAME_HEADER_BYTES + 8];
    size_t a = frame_encode_ping(buf, 1);
    size_t b = frame_encode_metadata_request(buf + a, 2, "ln8", 3);
    frame_header h;
    size_t k;
    assert_int_equal(frame_scan(buf, a + b, &LIM, &h, &k), FRAME_READY);
    assert_int_equal(k, a);
    assert_int_equal(h.opcode, FRAME_OP_PING);
    assert_int_equal(frame_scan(buf + a, b, &LIM, &h, &k), FRAME_READY);
    assert_int_equal(h.opcode, FRAME_OP_METADATA);
    assert_true(h.id == 2);
    const char *name;
    size_t nl;
    char msg[FRAME_MSG_MAX];
    assert_int_equal(frame_decode_metadata(buf + a + FRAME_HEADER_BYTES, h.body_len, &LIM, &name,
                                           &nl, msg),
                     LNS_OK);
    assert_int_equal(nl, 3);
    assert_memory_equal(name, "ln8", 3);
}

static void test_truncation_every_byte(void **state)
{
    (void)state;
    size_t len;
    uint8_t *f = make_infer("m", 2, 3, FRAME_OUT_ALL, &len);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *p = malloc(cut ? cut : 1); /* exact size: ASan sees any over-read */
        memcpy(p, f, cut);
        frame_header h;
        size_t k = 99;
        assert_int_equal(frame_scan(p, cut, &LIM, &h, &k), FRAME_NEED_MORE);
        assert_int_equal(k, cut < FRAME_HEADER_BYTES ? 0 : len);
        /* The body decoder on every prefix of the body: never OK. */
        if (cut > FRAME_HEADER_BYTES) {
            frame_infer fi;
            char msg[FRAME_MSG_MAX];
            assert_int_equal(frame_decode_infer(p + FRAME_HEADER_BYTES, cut - FRAME_HEADER_BYTES,
                                                &LIM, &fi, msg),
                             LNS_EBADREQ);
        }
        free(p);
    }
    free(f);
}

static void test_bad_headers(void **state)
{
    (void)state;
    uint8_t f[FRAME_HEADER_BYTES];
    frame_header h;
    size_t k;
    /* A wrong magic byte is reported as soon as it arrives. */
    for (int i = 0; i < 4; i++) {
        frame_encode_ping(f, 1);
        f[i] ^= 0x20;
        for (size_t len = (size_t)i + 1; len <= sizeof f; len++)
            assert_int_equal(frame_scan(f, len, &LIM, &h, &k), FRAME_EMAGIC);
    }
    frame_encode_ping(f, 1);
    f[4] = 2;
    assert_int_equal(frame_scan(f, 5, &LIM, &h, &k), FRAME_EVERSION);
    f[4] = 0;
    assert_int_equal(frame_scan(f, sizeof f, &LIM, &h, &k), FRAME_EVERSION);
    for (int i = 12; i < 16; i++) {
        frame_encode_ping(f, 9);
        f[i] = 1;
        assert_int_equal(frame_scan(f, sizeof f, &LIM, &h, &k), FRAME_ERESERVED);
        assert_true(h.id == 9); /* usable in the ERROR frame */
    }
    /* The frame limit: exactly max is fine, one more is not. */
    frame_encode_header(f, FRAME_OP_INFER, 0, (uint32_t)(LIM.max_frame_bytes - FRAME_HEADER_BYTES),
                        3);
    assert_int_equal(frame_scan(f, sizeof f, &LIM, &h, &k), FRAME_NEED_MORE);
    assert_int_equal(k, LIM.max_frame_bytes);
    frame_encode_header(f, FRAME_OP_INFER, 0,
                        (uint32_t)(LIM.max_frame_bytes - FRAME_HEADER_BYTES + 1), 3);
    assert_int_equal(frame_scan(f, sizeof f, &LIM, &h, &k), FRAME_ETOOBIG);
    frame_encode_header(f, FRAME_OP_INFER, 0, UINT32_MAX, 3);
    assert_int_equal(frame_scan(f, sizeof f, &LIM, &h, &k), FRAME_ETOOBIG);
    /* Unknown opcodes and flags are the server's business, not the scanner's. */
    frame_encode_header(f, 0x42, 0xffff, 0, 3);
    assert_int_equal(frame_scan(f, sizeof f, &LIM, &h, &k), FRAME_READY);
    assert_int_equal(h.opcode, 0x42);
    assert_int_equal(h.flags, 0xffff);
    for (int e = FRAME_ETOOBIG; e <= FRAME_EMAGIC; e++)
        assert_true(strlen(frame_strerror(e)) > 5);
}

/* Writes the 16 fixed bytes of an INFER body. */
static void fixed(uint8_t *b, uint32_t rows, uint32_t cols, uint32_t plen, unsigned dtype,
                  unsigned mask, unsigned name_len)
{
    put32(b, rows);
    put32(b + 4, cols);
    put32(b + 8, plen);
    b[12] = (uint8_t)dtype;
    b[13] = (uint8_t)mask;
    b[14] = (uint8_t)name_len;
    b[15] = (uint8_t)(name_len >> 8);
}

static void test_infer_field_errors(void **state)
{
    (void)state;
    static uint8_t b[16 + 64 + 4096];
    char msg[FRAME_MSG_MAX];
    frame_infer fi;
    struct {
        uint32_t rows, cols, plen;
        unsigned dtype, mask, name_len;
        size_t body_len;
        const char *want;
    } cases[] = {
        {1, 2, 8, 0, 15, 1, 16 + 1 + 8, "dtype"},
        {1, 2, 8, 5, 15, 1, 16 + 1 + 8, "dtype"},
        {1, 2, 8, 1, 0, 1, 16 + 1 + 8, "mask"},
        {1, 2, 8, 1, 0x10, 1, 16 + 1 + 8, "mask"},
        {1, 2, 8, 1, 0x8f, 1, 16 + 1 + 8, "mask"},
        {1, 2, 8, 1, 15, 0, 16 + 8, "name_len"},
        {1, 2, 8, 1, 15, 64, 16 + 64 + 8, "name_len"},
        {0, 2, 0, 1, 15, 1, 16 + 1, "rows"},
        {101, 1, 404, 1, 15, 1, 16 + 1 + 404, "rows"},
        {1, 0, 0, 1, 15, 1, 16 + 1, "cols"},
        {1, 1001, 4004, 1, 15, 1, 16 + 1 + 4004, "cols"},
        {1, 2, 7, 1, 15, 1, 16 + 1 + 7, "payload_len"},
        {1, 2, 16, 1, 15, 1, 16 + 1 + 16, "payload_len"},
        {1, 2, 4, 2, 15, 1, 16 + 1 + 8, "body"},
        {1, 2, 8, 1, 15, 1, 16 + 1 + 7, "body"},
        {1, 2, 8, 1, 15, 1, 16 + 1 + 9, "body"},
        {1, 2, 8, 1, 15, 1, 15, "fixed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memset(b, 'a', sizeof b);
        fixed(b, cases[i].rows, cases[i].cols, cases[i].plen, cases[i].dtype, cases[i].mask,
              cases[i].name_len);
        assert_int_equal(frame_decode_infer(b, cases[i].body_len, &LIM, &fi, msg), LNS_EBADREQ);
        expect_contains(msg, cases[i].want);
        assert_true(strlen(msg) < FRAME_MSG_MAX);
    }
    /* At the limits: accepted. */
    frame_limits big = LIM;
    big.max_rows = big.max_cols = UINT32_MAX;
    fixed(b, 100, 10, 4000, FRAME_DTYPE_FP32, 15, 63);
    assert_int_equal(frame_decode_infer(b, 16 + 63 + 4000, &LIM, &fi, msg), LNS_OK);
    /* rows x cols x size past 32 bits must not wrap into a match. */
    fixed(b, 65536, 65536, 0, FRAME_DTYPE_FP32, 15, 1);
    assert_int_equal(frame_decode_infer(b, 16 + 1, &big, &fi, msg), LNS_EBADREQ);
    fixed(b, 0x40000000u, 4, 0, FRAME_DTYPE_FP64, 15, 1);
    assert_int_equal(frame_decode_infer(b, 16 + 1, &big, &fi, msg), LNS_EBADREQ);
    expect_contains(msg, "payload_len");
    /* Reserved dtypes decode (framing holds) but are not computed. */
    fixed(b, 1, 2, 4, FRAME_DTYPE_FP16, 15, 1);
    assert_int_equal(frame_decode_infer(b, 16 + 1 + 4, &LIM, &fi, msg), LNS_OK);
    float x[2];
    assert_int_equal(frame_infer_copy_f32(&fi, x, msg), LNS_ENOTIMPL);
    expect_contains(msg, "FP16");
    assert_int_equal(frame_dtype_bytes(FRAME_DTYPE_BF16), 2);
    assert_int_equal(frame_dtype_bytes(FRAME_DTYPE_FP64), 8);
    assert_int_equal(frame_dtype_bytes(7), 0);
}

static void test_nonfinite(void **state)
{
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6};
    uint8_t f[FRAME_HEADER_BYTES + 16 + 1 + 24];
    float vals[] = {NAN, INFINITY, -INFINITY};
    for (int v = 0; v < 3; v++) {
        x[4] = vals[v];
        frame_encode_infer_request(f, 1, 0, "m", 1, FRAME_DTYPE_FP32, 15, 2, 3, x);
        frame_infer fi;
        char msg[FRAME_MSG_MAX];
        assert_int_equal(frame_decode_infer(f + FRAME_HEADER_BYTES, sizeof f - FRAME_HEADER_BYTES,
                                            &LIM, &fi, msg),
                         LNS_OK);
        float y[6];
        assert_int_equal(frame_infer_copy_f32(&fi, y, msg), LNS_EBADREQ);
        expect_contains(msg, "row 1 column 1");
    }
}

static void test_status_and_errors(void **state)
{
    (void)state;
    for (int s = 0; s < LNS_STATUS_COUNT; s++)
        assert_int_equal(lns_status_from_wire((unsigned)lns_status_wire((lns_status)s)), s);
    assert_int_equal(lns_status_wire(LNS_OK), 0);
    assert_int_equal(lns_status_from_wire(999), LNS_EINTERNAL);

    uint8_t f[FRAME_HEADER_BYTES + FRAME_STATUS_BYTES + FRAME_MSG_MAX];
    char longmsg[600];
    memset(longmsg, 'z', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    size_t n = frame_encode_status(f, FRAME_OP_ERROR, FRAME_FLAG_CLOSE, 5, LNS_EBUSY, longmsg);
    assert_int_equal(n, frame_status_bytes(strlen(longmsg)));
    assert_int_equal(n, FRAME_HEADER_BYTES + FRAME_STATUS_BYTES + FRAME_MSG_MAX - 1);
    frame_header h;
    size_t k;
    assert_int_equal(frame_scan(f, n, &LIM, &h, &k), FRAME_READY);
    assert_int_equal(h.flags, FRAME_FLAG_CLOSE);
    frame_response r;
    char msg[FRAME_MSG_MAX];
    assert_int_equal(frame_decode_response(&h, f + FRAME_HEADER_BYTES, h.body_len, &r, msg), LNS_OK);
    assert_int_equal(r.status, LNS_EBUSY);
    assert_int_equal(r.msg_len, FRAME_MSG_MAX - 1);
    /* OK carries no message, even when given one. */
    n = frame_encode_status(f, FRAME_OP_PONG, 0, 6, LNS_OK, "ignored");
    assert_int_equal(n, FRAME_HEADER_BYTES + FRAME_STATUS_BYTES);
}

static void test_infer_response_round_trip(void **state)
{
    (void)state;
    enum { B = 3, N = 4, G = 2 };
    float y[B * N], mean[B * G], rstd[B * G], radius[B];
    for (int i = 0; i < B * N; i++)
        y[i] = (float)i + 0.25f;
    for (int i = 0; i < B * G; i++) {
        mean[i] = -(float)i;
        rstd[i] = 100.0f + (float)i;
    }
    for (int i = 0; i < B; i++)
        radius[i] = 0.5f + (float)i;
    for (unsigned mask = 1; mask <= FRAME_OUT_ALL; mask++) {
        frame_infer_result res = {B, N, G, (uint8_t)mask, y, mean, rstd, radius};
        size_t n = frame_infer_response_bytes(B, N, G, mask);
        uint8_t *f = malloc(n);
        assert_int_equal(frame_encode_infer_response(f, 0, 77, &res), n);
        frame_header h;
        size_t k;
        assert_int_equal(frame_scan(f, n, &LIM, &h, &k), FRAME_READY);
        assert_int_equal(h.opcode, FRAME_OP_INFER_RESP);
        frame_response r;
        char msg[FRAME_MSG_MAX];
        assert_int_equal(frame_decode_response(&h, f + FRAME_HEADER_BYTES, h.body_len, &r, msg),
                         LNS_OK);
        assert_int_equal(r.status, LNS_OK);
        assert_int_equal(r.rows, B);
        assert_int_equal(r.cols, N);
        assert_int_equal(r.groups, G);
        assert_int_equal(r.mask, mask);
        /* Results in mask order, packed: each present exactly when asked. */
        assert_int_equal(r.output != NULL, !!(mask & FRAME_OUT_OUTPUT));
        assert_int_equal(r.radius != NULL, !!(mask & FRAME_OUT_RADIUS));
        if (r.output)
            for (int i = 0; i < B * N; i++)
                assert_true(frame_get_f32(r.output + 4 * i) == y[i]);
        if (r.mean)
            for (int i = 0; i < B * G; i++)
                assert_true(frame_get_f32(r.mean + 4 * i) == mean[i]);
        if (r.rstd)
            for (int i = 0; i < B * G; i++)
                assert_true(frame_get_f32(r.rstd + 4 * i) == rstd[i]);
        if (r.radius)
            for (int i = 0; i < B; i++)
                assert_true(frame_get_f32(r.radius + 4 * i) == radius[i]);
        /* One byte more or less in the body: rejected. */
        assert_int_equal(frame_decode_response(&h, f + FRAME_HEADER_BYTES, h.body_len - 1, &r,
                                               msg),
                         LNS_EBADREQ);
        free(f);
    }
    assert_int_equal(frame_infer_response_bytes(65536, 65536, 1, FRAME_OUT_OUTPUT), 0);
}

static void test_metadata_response_round_trip(void **state)
{
    (void)state;
    frame_model_meta m = {1, 1, 768, 4, 65536, 768, 1e-6f};
    uint8_t f[FRAME_HEADER_BYTES + FRAME_STATUS_BYTES + FRAME_META_RESP_BYTES];
    assert_int_equal(frame_encode_metadata_response(f, 0, 4, &m), sizeof f);
    frame_header h;
    size_t k;
    assert_int_equal(frame_scan(f, sizeof f, &LIM, &h, &k), FRAME_READY);
    frame_response r;
    char msg[FRAME_MSG_MAX];
    assert_int_equal(frame_decode_response(&h, f + FRAME_HEADER_BYTES, h.body_len, &r, msg), LNS_OK);
    assert_int_equal(r.meta.kind, 1);
    assert_int_equal(r.meta.dim, 768);
    assert_int_equal(r.meta.groups, 4);
    assert_int_equal(r.meta.max_rows, 65536);
    assert_true(r.meta.eps == 1e-6f);
}

static void test_hostile_responses(void **state)
{
    (void)state;
    uint8_t b[64];
    frame_header h = {.version = 1, .opcode = FRAME_OP_INFER_RESP, .id = 1};
    frame_response r;
    char msg[FRAME_MSG_MAX];
    memset(b, 0, sizeof b);
    /* msg_len past the body */
    b[2] = 10;
    assert_int_equal(frame_decode_response(&h, b, 8, &r, msg), LNS_EBADREQ);
    /* OK infer response claiming 2^32 x 2^32 in a few bytes */
    memset(b, 0, sizeof b);
    put32(b + 4, UINT32_MAX);
    put32(b + 8, UINT32_MAX);
    put32(b + 12, 1);
    b[16] = FRAME_DTYPE_FP32;
    b[17] = FRAME_OUT_ALL;
    assert_int_equal(frame_decode_response(&h, b, 20 + 16, &r, msg), LNS_EBADREQ);
    /* a request opcode is not a response */
    h.opcode = FRAME_OP_INFER;
    assert_int_equal(frame_decode_response(&h, b, 20, &r, msg), LNS_EBADREQ);
    /* an error status with trailing bytes */
    h.opcode = FRAME_OP_INFER_RESP;
    memset(b, 0, sizeof b);
    b[0] = 1;
    b[2] = 1;
    b[4] = 'x';
    assert_int_equal(frame_decode_response(&h, b, 5, &r, msg), LNS_OK);
    assert_int_equal(r.status, LNS_EBADREQ);
    assert_int_equal(frame_decode_response(&h, b, 6, &r, msg), LNS_EBADREQ);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_infer_round_trip),
        cmocka_unit_test(test_two_frames_back_to_back),
        cmocka_unit_test(test_truncation_every_byte),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_infer_field_errors),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_status_and_errors),
        cmocka_unit_test(test_infer_response_round_trip),
        cmocka_unit_test(test_metadata_response_round_trip),
        cmocka_unit_test(test_hostile_responses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
