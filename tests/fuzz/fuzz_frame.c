/*
 * fuzz_frame.c -- libFuzzer harness for the binary protocol codec
 * (proto/frame.c). The input is a byte stream as a connection would carry
 * it: frames are scanned one after the other (frame_scan), each body goes
 * through the decoder its opcode names, and every response opcode through
 * frame_decode_response, as a client would.
 *
 * Checked on every input, beyond what ASan and UBSan see:
 *   - frame_scan: READY only with a whole frame, K = 24 + body_len within
 *     the limit; NEED_MORE with K = 0 before 24 bytes, else K > len; the
 *     same answer for every prefix that ends before the error or frame;
 *   - an accepted INFER is within the limits, its payload inside the body,
 *     and re-encoding it gives back the exact bytes of the frame;
 *   - an accepted METADATA re-encodes to the same bytes;
 *   - every message is NUL-terminated, non-empty and printable ASCII.
 * Limits are small (64 rows, 512 cols, 64 KiB frames) so nothing large is
 * ever allocated. A failed check aborts: libFuzzer saves the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const frame_limits LIM = {
    .max_frame_bytes = 1 << 16,
    .max_rows = 64,
    .max_cols = 512,
    .max_name_bytes = 63,
};

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            fprintf(stderr, "fuzz_frame: check failed: %s (line %d)\n", #c, __LINE__);   \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static void check_msg(const char *msg)
{
    size_t n = strnlen(msg, FRAME_MSG_MAX);
    CHECK(n > 0 && n < FRAME_MSG_MAX);
    for (size_t i = 0; i < n; i++)
        CHECK(msg[i] >= 0x20 && msg[i] < 0x7f);
}

static void body(const frame_header *h, const uint8_t *frame, size_t k)
{
    const uint8_t *b = frame + FRAME_HEADER_BYTES;
    char msg[FRAME_MSG_MAX];
    if (h->opcode == FRAME_OP_INFER) {
        frame_infer fi;
        if (frame_decode_infer(b, h->body_len, &LIM, &fi, msg) != LNS_OK) {
            check_msg(msg);
            return;
        }
        CHECK(fi.rows >= 1 && fi.rows <= LIM.max_rows);
        CHECK(fi.cols >= 1 && fi.cols <= LIM.max_cols);
        CHECK(fi.name_len >= 1 && fi.name_len <= LIM.max_name_bytes);
        CHECK(fi.mask && !(fi.mask & ~FRAME_OUT_ALL));
        CHECK(fi.payload_len == (size_t)fi.rows * fi.cols * frame_dtype_bytes(fi.dtype));
        CHECK(fi.payload + fi.payload_len == frame + k);
        size_t n = frame_infer_request_bytes(fi.name_len, fi.dtype, fi.rows, fi.cols);
        CHECK(n == k);
        uint8_t *re = malloc(n);
        CHECK(re);
        frame_encode_infer_request(re, h->id, h->flags, fi.name, fi.name_len, fi.dtype, fi.mask,
                                   fi.rows, fi.cols, fi.payload);
        re[5] = h->opcode;
        CHECK(memcmp(re, frame, n) == 0);
        free(re);
        float *x = malloc((size_t)fi.rows * fi.cols * sizeof(float));
        CHECK(x);
        lns_status st = frame_infer_copy_f32(&fi, x, msg);
        if (st != LNS_OK) {
            CHECK(st == LNS_EBADREQ || (st == LNS_ENOTIMPL && fi.dtype != FRAME_DTYPE_FP32));
            check_msg(msg);
        }
        free(x);
    } else if (h->opcode == FRAME_OP_METADATA) {
        const char *name;
        size_t nl;
        if (frame_decode_metadata(b, h->body_len, &LIM, &name, &nl, msg) != LNS_OK) {
            check_msg(msg);
            return;
        }
        uint8_t re[FRAME_HEADER_BYTES + FRAME_META_REQ_FIXED_BYTES + FRAME_NAME_MAX];
        CHECK(frame_encode_metadata_request(re, h->id, name, nl) == k);
        re[6] = frame[6];
        re[7] = frame[7];
        CHECK(memcmp(re, frame, k) == 0);
    } else if (h->opcode & FRAME_OP_RESPONSE) {
        frame_response r;
        if (frame_decode_response(h, b, h->body_len, &r, msg) != LNS_OK) {
            check_msg(msg);
            return;
        }
        CHECK(r.msg + r.msg_len <= (const char *)frame + k);
        if (r.output) /* the last result ends inside the frame */
            CHECK(r.output + (size_t)r.rows * r.cols * frame_dtype_bytes(r.dtype) <= frame + k);
        if (r.radius)
            CHECK(r.radius + 4 * (size_t)r.rows <= frame + k);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        frame_header h;
        size_t k;
        int rc = frame_scan(data + off, size - off, &LIM, &h, &k);
        CHECK(rc == FRAME_NEED_MORE || rc == FRAME_READY || (rc <= FRAME_EMAGIC && rc >= FRAME_ETOOBIG));
        if (rc == FRAME_NEED_MORE) {
            CHECK(k == 0 ? size - off < FRAME_HEADER_BYTES : k > size - off);
            CHECK(k <= LIM.max_frame_bytes);
            return 0;
        }
        if (rc < 0) {
            CHECK(strlen(frame_strerror(rc)) > 0);
            return 0;
        }
        CHECK(k == FRAME_HEADER_BYTES + (size_t)h.body_len && k <= size - off);
        CHECK(k <= LIM.max_frame_bytes);
        /* Every strict prefix of a whole frame is "need more". */
        if (k > 1) {
            frame_header h2;
            size_t k2;
            CHECK(frame_scan(data + off, k - 1, &LIM, &h2, &k2) == FRAME_NEED_MORE);
        }
        uint8_t *copy = malloc(k); /* exact size: any over-read is caught */
        CHECK(copy);
        memcpy(copy, data + off, k);
        body(&h, copy, k);
        free(copy);
        off += k;
    }
    return 0;
}
