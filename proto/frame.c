/*
 * frame.c -- see frame.h and frame.md. Fields are read and written byte
 * by byte (put_u32/get_u32), so the code holds on any host and never makes
 * an unaligned access; float arrays are copied with memcpy on
 * little-endian hosts (every x86-64) and element by element otherwise.
 */
#include "frame.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void put_u16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static unsigned get_u16(const uint8_t *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

float frame_get_f32(const uint8_t *p)
{
    uint32_t u = get_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put_u32(p, u);
}

/* n floats to the wire; returns the end. */
static uint8_t *put_f32s(uint8_t *p, const float *v, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, v, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++)
        put_f32(p + 4 * i, v[i]);
#endif
    return p + n * sizeof(float);
}

static lns_status bad(char *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static lns_status bad(char *msg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, FRAME_MSG_MAX, fmt, ap);
    va_end(ap);
    return LNS_EBADREQ;
}

/* ---- scanning ------------------------------------------------------------ */

int frame_scan(const void *buf, size_t len, const frame_limits *lim, frame_header *h,
               size_t *frame_bytes)
{
    static const uint8_t magic[4] = {'L', 'N', 'S', 'B'};
    const uint8_t *p = buf;
    *frame_bytes = 0;
    /* Reject at the first wrong byte: a peer speaking HTTP to this port
     * learns it from the first byte, not after 24. */
    for (size_t i = 0; i < 4 && i < len; i++)
        if (p[i] != magic[i])
            return FRAME_EMAGIC;
    if (len > 4 && p[4] != FRAME_VERSION)
        return FRAME_EVERSION;
    if (len < FRAME_HEADER_BYTES)
        return FRAME_NEED_MORE;
    h->version = p[4];
    h->opcode = p[5];
    h->flags = (uint16_t)get_u16(p + 6);
    h->body_len = get_u32(p + 8);
    h->id = get_u64(p + 16);
    if (get_u32(p + 12) != 0)
        return FRAME_ERESERVED;
    /* body_len <= 2^32 - 1: the sum cannot overflow a 64-bit size_t, and
     * on a 32-bit one the comparison is done before adding. */
    if (lim->max_frame_bytes < FRAME_HEADER_BYTES ||
        h->body_len > lim->max_frame_bytes - FRAME_HEADER_BYTES)
        return FRAME_ETOOBIG;
    *frame_bytes = FRAME_HEADER_BYTES + (size_t)h->body_len;
    return len >= *frame_bytes ? FRAME_READY : FRAME_NEED_MORE;
}

const char *frame_strerror(int err)
{
    switch (err) {
    case FRAME_EMAGIC:
        return "bad magic (expected the bytes \"LNSB\": lnserve binary protocol)";
    case FRAME_EVERSION:
        return "unsupported version (expected 1)";
    case FRAME_ERESERVED:
        return "header bytes 12..15 are reserved (expected 0)";
    case FRAME_ETOOBIG:
        return "frame over the server's limit (server.max_body_bytes)";
    }
    return "unknown frame error";
}

/* ---- requests ------------------------------------------------------------ */

size_t frame_dtype_bytes(unsigned dtype)
{
    switch (dtype) {
    case FRAME_DTYPE_FP32:
        return 4;
    case FRAME_DTYPE_FP16:
    case FRAME_DTYPE_BF16:
        return 2;
    case FRAME_DTYPE_FP64:
        return 8;
    }
    return 0;
}

const char *frame_dtype_name(unsigned dtype)
{
    switch (dtype) {
    case FRAME_DTYPE_FP32:
        return "FP32";
    case FRAME_DTYPE_FP16:
        return "FP16";
    case FRAME_DTYPE_BF16:
        return "BF16";
    case FRAME_DTYPE_FP64:
        return "FP64";
    }
    return "unknown";
}

lns_status frame_decode_infer(const uint8_t *body, size_t body_len, const frame_limits *lim,
                              frame_infer *out, char *msg)
{
    memset(out, 0, sizeof *out);
    if (body_len < FRAME_INFER_FIXED_BYTES)
        return bad(msg, "infer: body of %zu bytes is shorter than its %d fixed bytes", body_len,
                   FRAME_INFER_FIXED_BYTES);
    uint32_t rows = get_u32(body), cols = get_u32(body + 4), payload_len = get_u32(body + 8);
    unsigned dtype = body[12], mask = body[13], name_len = get_u16(body + 14);
    size_t esize = frame_dtype_bytes(dtype);
    if (esize == 0)
        return bad(msg, "infer.dtype: unknown code %u (expected 1 FP32; 2 FP16, 3 BF16, 4 FP64 "
                        "reserved)", dtype);
    if (mask == 0 || (mask & ~FRAME_OUT_ALL))
        return bad(msg, "infer.mask: 0x%02x (expected a non-zero combination of 0x01 output, "
                        "0x02 mean, 0x04 rstd, 0x08 radius)", mask);
    if (name_len == 0 || name_len > lim->max_name_bytes)
        return bad(msg, "infer.name_len: %u (expected 1..%u)", name_len, lim->max_name_bytes);
    if (rows == 0 || rows > lim->max_rows)
        return bad(msg, "infer.rows: %u (expected 1..%u, server.max_rows)", rows, lim->max_rows);
    if (cols == 0 || cols > lim->max_cols)
        return bad(msg, "infer.cols: %u (expected 1..%u, server.max_n)", cols, lim->max_cols);
    /* rows, cols < 2^32 and esize <= 8: the product fits in 67 bits, so
     * compare in two steps to stay in 64. */
    uint64_t elems = (uint64_t)rows * cols;
    if (elems > UINT32_MAX / esize || elems * esize != payload_len)
        return bad(msg, "infer.payload_len: %u bytes (expected rows x cols x %zu = %llu x %zu)",
                   payload_len, esize, (unsigned long long)elems, esize);
    if ((uint64_t)body_len != (uint64_t)FRAME_INFER_FIXED_BYTES + name_len + payload_len)
        return bad(msg, "infer: body of %zu bytes (expected 16 + name_len %u + payload_len %u)",
                   body_len, name_len, payload_len);
    out->name = (const char *)body + FRAME_INFER_FIXED_BYTES;
    out->name_len = name_len;
    out->dtype = (uint8_t)dtype;
    out->mask = (uint8_t)mask;
    out->rows = rows;
    out->cols = cols;
    out->payload = body + FRAME_INFER_FIXED_BYTES + name_len;
    out->payload_len = payload_len;
    return LNS_OK;
}

lns_status frame_infer_copy_f32(const frame_infer *in, float *dst, char *msg)
{
    if (in->dtype != FRAME_DTYPE_FP32) {
        bad(msg, "infer.dtype: %s is reserved in protocol version 1 (expected 1 FP32)",
            frame_dtype_name(in->dtype));
        return LNS_ENOTIMPL;
    }
    size_t n = (size_t)in->rows * in->cols;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, in->payload, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++)
        dst[i] = frame_get_f32(in->payload + 4 * i);
#endif
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return bad(msg, "infer.payload: row %zu column %zu is not finite", i / in->cols,
                       i % in->cols);
    return LNS_OK;
}

lns_status frame_decode_metadata(const uint8_t *body, size_t body_len, const frame_limits *lim,
                                 const char **name, size_t *name_len, char *msg)
{
    if (body_len < FRAME_META_REQ_FIXED_BYTES)
        return bad(msg, "metadata: body of %zu bytes is shorter than its 4 fixed bytes",
                   body_len);
    unsigned n = get_u16(body);
    if (get_u16(body + 2) != 0)
        return bad(msg, "metadata: bytes 2..3 are reserved (expected 0)");
    if (n == 0 || n > lim->max_name_bytes)
        return bad(msg, "metadata.name_len: %u (expected 1..%u)", n, lim->max_name_bytes);
    if (body_len != FRAME_META_REQ_FIXED_BYTES + (size_t)n)
        return bad(msg, "metadata: body of %zu bytes (expected 4 + name_len %u)", body_len, n);
    *name = (const char *)body + FRAME_META_REQ_FIXED_BYTES;
    *name_len = n;
    return LNS_OK;
}

void frame_encode_header(uint8_t *dst, unsigned opcode, unsigned flags, uint32_t body_len,
                         uint64_t id)
{
    put_u32(dst, FRAME_MAGIC);
    dst[4] = FRAME_VERSION;
    dst[5] = (uint8_t)opcode;
    put_u16(dst + 6, flags);
    put_u32(dst + 8, body_len);
    put_u32(dst + 12, 0);
    put_u64(dst + 16, id);
}

size_t frame_infer_request_bytes(size_t name_len, unsigned dtype, uint32_t rows, uint32_t cols)
{
    size_t esize = frame_dtype_bytes(dtype);
    uint64_t elems = (uint64_t)rows * cols;
    if (esize == 0 || name_len > FRAME_NAME_MAX || elems > UINT32_MAX / esize)
        return 0;
    uint64_t body = FRAME_INFER_FIXED_BYTES + name_len + elems * esize;
    if (body > UINT32_MAX)
        return 0;
    return (size_t)(FRAME_HEADER_BYTES + body);
}

size_t frame_encode_infer_request(uint8_t *dst, uint64_t id, unsigned flags, const char *name,
                                  size_t name_len, unsigned dtype, unsigned mask, uint32_t rows,
                                  uint32_t cols, const void *payload)
{
    size_t total = frame_infer_request_bytes(name_len, dtype, rows, cols);
    if (total == 0)
        return 0;
    size_t payload_len = total - FRAME_HEADER_BYTES - FRAME_INFER_FIXED_BYTES - name_len;
    frame_encode_header(dst, FRAME_OP_INFER, flags, (uint32_t)(total - FRAME_HEADER_BYTES), id);
    uint8_t *b = dst + FRAME_HEADER_BYTES;
    put_u32(b, rows);
    put_u32(b + 4, cols);
    put_u32(b + 8, (uint32_t)payload_len);
    b[12] = (uint8_t)dtype;
    b[13] = (uint8_t)mask;
    put_u16(b + 14, (unsigned)name_len);
    memcpy(b + FRAME_INFER_FIXED_BYTES, name, name_len);
    if (payload_len)
        memcpy(b + FRAME_INFER_FIXED_BYTES + name_len, payload, payload_len);
    return total;
}

size_t frame_encode_metadata_request(uint8_t *dst, uint64_t id, const char *name,
                                     size_t name_len)
{
    frame_encode_header(dst, FRAME_OP_METADATA, 0,
                        (uint32_t)(FRAME_META_REQ_FIXED_BYTES + name_len), id);
    put_u16(dst + FRAME_HEADER_BYTES, (unsigned)name_len);
    put_u16(dst + FRAME_HEADER_BYTES + 2, 0);
    memcpy(dst + FRAME_HEADER_BYTES + FRAME_META_REQ_FIXED_BYTES, name, name_len);
    return FRAME_HEADER_BYTES + FRAME_META_REQ_FIXED_BYTES + name_len;
}

size_t frame_encode_ping(uint8_t *dst, uint64_t id)
{
    frame_encode_header(dst, FRAME_OP_PING, 0, 0, id);
    return FRAME_HEADER_BYTES;
}

/* ---- responses ----------------------------------------------------------- */

size_t frame_status_bytes(size_t msg_len)
{
    if (msg_len > FRAME_MSG_MAX - 1)
        msg_len = FRAME_MSG_MAX - 1;
    return FRAME_HEADER_BYTES + FRAME_STATUS_BYTES + msg_len;
}

/* Writes the status prefix at p; returns the bytes written. */
static size_t put_status(uint8_t *p, lns_status st, const char *msg)
{
    size_t n = (st != LNS_OK && msg) ? strlen(msg) : 0;
    if (n > FRAME_MSG_MAX - 1)
        n = FRAME_MSG_MAX - 1;
    put_u16(p, (unsigned)lns_status_wire(st));
    put_u16(p + 2, (unsigned)n);
    memcpy(p + FRAME_STATUS_BYTES, msg ? msg : "", n);
    return FRAME_STATUS_BYTES + n;
}

size_t frame_encode_status(uint8_t *dst, unsigned opcode, unsigned flags, uint64_t id,
                           lns_status st, const char *msg)
{
    size_t n = put_status(dst + FRAME_HEADER_BYTES, st, msg);
    frame_encode_header(dst, opcode, flags, (uint32_t)n, id);
    return FRAME_HEADER_BYTES + n;
}

size_t frame_infer_response_bytes(uint32_t rows, uint32_t cols, uint32_t groups, unsigned mask)
{
    uint64_t n = 0;
    if (mask & FRAME_OUT_OUTPUT)
        n += (uint64_t)rows * cols;
    if (mask & FRAME_OUT_MEAN)
        n += (uint64_t)rows * groups;
    if (mask & FRAME_OUT_RSTD)
        n += (uint64_t)rows * groups;
    if (mask & FRAME_OUT_RADIUS)
        n += rows;
    uint64_t body = FRAME_STATUS_BYTES + FRAME_INFER_RESP_FIXED_BYTES + 4 * n;
    if (n > UINT32_MAX || body > UINT32_MAX)
        return 0;
    return (size_t)(FRAME_HEADER_BYTES + body);
}

size_t frame_encode_infer_response(uint8_t *dst, unsigned flags, uint64_t id,
                                   const frame_infer_result *r)
{
    size_t total = frame_infer_response_bytes(r->rows, r->cols, r->groups, r->mask);
    if (total == 0)
        return 0;
    frame_encode_header(dst, FRAME_OP_INFER_RESP, flags, (uint32_t)(total - FRAME_HEADER_BYTES),
                        id);
    uint8_t *p = dst + FRAME_HEADER_BYTES;
    p += put_status(p, LNS_OK, NULL);
    put_u32(p, r->rows);
    put_u32(p + 4, r->cols);
    put_u32(p + 8, r->groups);
    p[12] = FRAME_DTYPE_FP32;
    p[13] = r->mask;
    put_u16(p + 14, 0);
    p += FRAME_INFER_RESP_FIXED_BYTES;
    size_t bg = (size_t)r->rows * r->groups;
    if (r->mask & FRAME_OUT_OUTPUT)
        p = put_f32s(p, r->y, (size_t)r->rows * r->cols);
    if (r->mask & FRAME_OUT_MEAN)
        p = put_f32s(p, r->mean, bg);
    if (r->mask & FRAME_OUT_RSTD)
        p = put_f32s(p, r->rstd, bg);
    if (r->mask & FRAME_OUT_RADIUS)
        p = put_f32s(p, r->radius, r->rows);
    return total;
}

size_t frame_encode_metadata_response(uint8_t *dst, unsigned flags, uint64_t id,
                                      const frame_model_meta *m)
{
    uint8_t *p = dst + FRAME_HEADER_BYTES;
    p += put_status(p, LNS_OK, NULL);
    p[0] = m->kind;
    p[1] = m->dtypes;
    put_u16(p + 2, 0);
    put_u32(p + 4, m->dim);
    put_u32(p + 8, m->groups);
    put_u32(p + 12, m->max_rows);
    put_u32(p + 16, m->max_cols);
    put_f32(p + 20, m->eps);
    frame_encode_header(dst, FRAME_OP_METADATA_RESP, flags,
                        FRAME_STATUS_BYTES + FRAME_META_RESP_BYTES, id);
    return FRAME_HEADER_BYTES + FRAME_STATUS_BYTES + FRAME_META_RESP_BYTES;
}

lns_status frame_decode_response(const frame_header *h, const uint8_t *body, size_t body_len,
                                 frame_response *r, char *msg)
{
    memset(r, 0, sizeof *r);
    if (!(h->opcode & FRAME_OP_RESPONSE))
        return bad(msg, "opcode 0x%02x is not a response", h->opcode);
    if (body_len < FRAME_STATUS_BYTES)
        return bad(msg, "response: body of %zu bytes has no status", body_len);
    r->wire_status = get_u16(body);
    r->status = lns_status_from_wire(r->wire_status);
    r->msg_len = get_u16(body + 2);
    if (r->msg_len > FRAME_MSG_MAX - 1 || FRAME_STATUS_BYTES + r->msg_len > body_len)
        return bad(msg, "response: msg_len %zu does not fit", r->msg_len);
    r->msg = (const char *)body + FRAME_STATUS_BYTES;
    const uint8_t *p = body + FRAME_STATUS_BYTES + r->msg_len;
    size_t left = body_len - FRAME_STATUS_BYTES - r->msg_len;
    if (r->wire_status != 0 || h->opcode == FRAME_OP_PONG || h->opcode == FRAME_OP_ERROR) {
        if (left)
            return bad(msg, "response: %zu bytes after a status-only body", left);
        return LNS_OK;
    }
    if (r->msg_len)
        return bad(msg, "response: a message with status OK");
    if (h->opcode == FRAME_OP_METADATA_RESP) {
        if (left != FRAME_META_RESP_BYTES)
            return bad(msg, "metadata response: %zu bytes (expected 24)", left);
        r->meta.kind = p[0];
        r->meta.dtypes = p[1];
        r->meta.dim = get_u32(p + 4);
        r->meta.groups = get_u32(p + 8);
        r->meta.max_rows = get_u32(p + 12);
        r->meta.max_cols = get_u32(p + 16);
        r->meta.eps = frame_get_f32(p + 20);
        return LNS_OK;
    }
    if (h->opcode != FRAME_OP_INFER_RESP)
        return bad(msg, "unknown response opcode 0x%02x", h->opcode);
    if (left < FRAME_INFER_RESP_FIXED_BYTES)
        return bad(msg, "infer response: %zu bytes, shorter than its fixed part", left);
    r->rows = get_u32(p);
    r->cols = get_u32(p + 4);
    r->groups = get_u32(p + 8);
    r->dtype = p[12];
    r->mask = p[13];
    size_t esize = frame_dtype_bytes(r->dtype);
    if (esize == 0 || r->mask == 0 || (r->mask & ~FRAME_OUT_ALL))
        return bad(msg, "infer response: dtype %u or mask 0x%02x unknown", r->dtype, r->mask);
    p += FRAME_INFER_RESP_FIXED_BYTES;
    left -= FRAME_INFER_RESP_FIXED_BYTES;
    uint64_t need = 0, bg = (uint64_t)r->rows * r->groups;
    /* Each count below is at most left (< 2^32) before it is scaled, so
     * need cannot wrap around to a value that matches. */
    if (((r->mask & FRAME_OUT_OUTPUT) && (uint64_t)r->rows * r->cols > left) ||
        ((r->mask & (FRAME_OUT_MEAN | FRAME_OUT_RSTD)) && bg > left) ||
        ((r->mask & FRAME_OUT_RADIUS) && r->rows > left))
        return bad(msg, "infer response: %u x %u (groups %u) does not fit in %zu bytes",
                   r->rows, r->cols, r->groups, left);
    if (r->mask & FRAME_OUT_OUTPUT)
        need += (uint64_t)r->rows * r->cols * esize;
    need += 4 * (((r->mask & FRAME_OUT_MEAN) ? bg : 0) + ((r->mask & FRAME_OUT_RSTD) ? bg : 0) +
                 ((r->mask & FRAME_OUT_RADIUS) ? r->rows : 0));
    if (need != left)
        return bad(msg, "infer response: %zu result bytes (expected %llu)", left,
                   (unsigned long long)need);
    if (r->mask & FRAME_OUT_OUTPUT) {
        r->output = p;
        p += (size_t)r->rows * r->cols * esize;
    }
    if (r->mask & FRAME_OUT_MEAN) {
        r->mean = p;
        p += 4 * bg;
    }
    if (r->mask & FRAME_OUT_RSTD) {
        r->rstd = p;
        p += 4 * bg;
    }
    if (r->mask & FRAME_OUT_RADIUS)
        r->radius = p;
    return LNS_OK;
}
