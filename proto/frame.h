/*
 * frame.h -- codec of lnserve's binary protocol, version 1 (the spec is
 * frame.md beside this file): an incremental frame scanner, decoders for
 * the request and response bodies, and encoders for both directions (the
 * server and tools/lnbin.h use the same code).
 *
 * Pure functions: no sockets, no threads, no globals, no allocation; safe
 * from any thread. Decoders borrow: the pointers they return point into
 * the caller's buffer and are valid only while it is. Encoders write into
 * a buffer the caller sized with the matching *_bytes() function.
 * Multi-byte fields are little-endian on the wire whatever the host.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define FRAME_MAGIC 0x42534E4Cu /* the bytes "LNSB" */
#define FRAME_VERSION 1
#define FRAME_HEADER_BYTES 24
#define FRAME_STATUS_BYTES 4        /* status u16, msg_len u16 */
#define FRAME_INFER_FIXED_BYTES 16  /* rows, cols, payload_len, dtype, mask, name_len */
#define FRAME_INFER_RESP_FIXED_BYTES 16
#define FRAME_META_REQ_FIXED_BYTES 4
#define FRAME_META_RESP_BYTES 24
#define FRAME_MSG_MAX 256 /* message buffer, NUL included: at most 255 on the wire */
#define FRAME_NAME_MAX 63 /* the largest max_name_bytes (config.h: CONFIG_NAME_MAX - 1) */

typedef enum frame_opcode {
    FRAME_OP_PING = 0x01,
    FRAME_OP_METADATA = 0x02,
    FRAME_OP_INFER = 0x03,
    FRAME_OP_RESPONSE = 0x80, /* bit set on every response */
    FRAME_OP_PONG = 0x81,
    FRAME_OP_METADATA_RESP = 0x82,
    FRAME_OP_INFER_RESP = 0x83,
    FRAME_OP_ERROR = 0xFF,
} frame_opcode;

#define FRAME_FLAG_CLOSE 0x0001u
#define FRAME_FLAGS_KNOWN FRAME_FLAG_CLOSE

typedef enum frame_dtype {
    FRAME_DTYPE_FP32 = 1,
    FRAME_DTYPE_FP16 = 2, /* reserved */
    FRAME_DTYPE_BF16 = 3, /* reserved */
    FRAME_DTYPE_FP64 = 4, /* reserved */
} frame_dtype;

/* Output mask bits, in the order results travel. */
#define FRAME_OUT_OUTPUT 0x01u
#define FRAME_OUT_MEAN 0x02u
#define FRAME_OUT_RSTD 0x04u
#define FRAME_OUT_RADIUS 0x08u
#define FRAME_OUT_ALL 0x0Fu

/* What a peer accepts. Every length is checked against these before the
 * caller could allocate anything for it. */
typedef struct frame_limits {
    size_t max_frame_bytes;  /* header included; >= FRAME_HEADER_BYTES */
    uint32_t max_rows;       /* >= 1 */
    uint32_t max_cols;       /* >= 1 */
    uint32_t max_name_bytes; /* 1..FRAME_NAME_MAX */
} frame_limits;

typedef struct frame_header {
    uint8_t version;
    uint8_t opcode;
    uint16_t flags;
    uint32_t body_len;
    uint64_t id;
} frame_header;

/* frame_scan results besides the negative errors below. */
#define FRAME_NEED_MORE 0
#define FRAME_READY 1

/* Header errors: the stream cannot be re-synchronized (frame.md 6). */
typedef enum frame_err {
    FRAME_EMAGIC = -1,    /* the first 4 bytes are not "LNSB" */
    FRAME_EVERSION = -2,  /* not version 1 */
    FRAME_ERESERVED = -3, /* the reserved header field is not 0 */
    FRAME_ETOOBIG = -4,   /* header + body_len over max_frame_bytes */
} frame_err;

/*
 * Looks at the bytes buf[0..len) that start a frame. Returns
 *   FRAME_NEED_MORE  fewer than a whole frame; *frame_bytes = the frame's
 *                    size once the header is complete (and *h is filled),
 *                    else 0;
 *   FRAME_READY      a whole frame is there: *h filled, *frame_bytes = K,
 *                    the body is buf[FRAME_HEADER_BYTES..K);
 *   a frame_err      as soon as the bytes present show it (a wrong magic
 *                    byte is reported at the first wrong byte). When the
 *                    header was complete, *h is filled (its id may be used
 *                    in the ERROR frame).
 * Opcode and flags are not judged here: a frame with an unknown opcode is
 * still a frame, and can be skipped.
 */
int frame_scan(const void *buf, size_t len, const frame_limits *lim, frame_header *h,
               size_t *frame_bytes);

/* "bad magic", ...: static text for a frame_err. */
const char *frame_strerror(int err);

/* ---- requests ------------------------------------------------------------ */

/* Size in bytes of one element of dtype; 0 for an unknown code. */
size_t frame_dtype_bytes(unsigned dtype);

/* "FP32", ...; "unknown" otherwise. */
const char *frame_dtype_name(unsigned dtype);

typedef struct frame_infer {
    const char *name; /* borrowed, not NUL-terminated */
    size_t name_len;
    uint8_t dtype; /* a known frame_dtype, maybe a reserved one */
    uint8_t mask;  /* non-zero, known bits only */
    uint32_t rows, cols;
    const uint8_t *payload; /* borrowed, unaligned */
    size_t payload_len;     /* rows * cols * frame_dtype_bytes(dtype) */
} frame_infer;

/*
 * Decodes an INFER body (frame.md 4.1) against lim. LNS_OK, or
 * LNS_EBADREQ with a message naming the field in msg (FRAME_MSG_MAX
 * bytes, NUL-terminated). Checks the fixed fields before any length is
 * used, and rows * cols * size in 64 bits.
 */
lns_status frame_decode_infer(const uint8_t *body, size_t body_len, const frame_limits *lim,
                              frame_infer *out, char *msg);

/*
 * Copies the payload of an FP32 request into dst (rows * cols floats, any
 * alignment), checking that every value is finite. LNS_OK; LNS_EBADREQ
 * with the row and column of the first non-finite value in msg; or
 * LNS_ENOTIMPL for a dtype other than FP32 (reserved in version 1).
 */
lns_status frame_infer_copy_f32(const frame_infer *in, float *dst, char *msg);

/* Decodes a METADATA body (frame.md 4.3): *name borrowed. */
lns_status frame_decode_metadata(const uint8_t *body, size_t body_len, const frame_limits *lim,
                                 const char **name, size_t *name_len, char *msg);

/* Writes a 24-byte header. */
void frame_encode_header(uint8_t *dst, unsigned opcode, unsigned flags, uint32_t body_len,
                         uint64_t id);

/* Whole INFER frame size; 0 when it cannot be represented (a length over
 * 32 bits, name over FRAME_NAME_MAX, unknown dtype). */
size_t frame_infer_request_bytes(size_t name_len, unsigned dtype, uint32_t rows, uint32_t cols);

/* Writes an INFER frame of frame_infer_request_bytes() bytes; payload is
 * rows * cols values of dtype, already little-endian. Returns its size. */
size_t frame_encode_infer_request(uint8_t *dst, uint64_t id, unsigned flags, const char *name,
                                  size_t name_len, unsigned dtype, unsigned mask, uint32_t rows,
                                  uint32_t cols, const void *payload);

/* METADATA request: FRAME_HEADER_BYTES + 4 + name_len bytes (name_len
 * <= FRAME_NAME_MAX). PING: FRAME_HEADER_BYTES. Each returns its size. */
size_t frame_encode_metadata_request(uint8_t *dst, uint64_t id, const char *name,
                                     size_t name_len);
size_t frame_encode_ping(uint8_t *dst, uint64_t id);

/* ---- responses ----------------------------------------------------------- */

/* A status-only response (PONG, or any error): size for a message of
 * msg_len bytes (cut to FRAME_MSG_MAX - 1). */
size_t frame_status_bytes(size_t msg_len);

/* Writes a status-only response: st, and msg (NULL or "" for none; cut to
 * FRAME_MSG_MAX - 1 bytes) unless st is LNS_OK. Returns its size. */
size_t frame_encode_status(uint8_t *dst, unsigned opcode, unsigned flags, uint64_t id,
                           lns_status st, const char *msg);

typedef struct frame_infer_result {
    uint32_t rows, cols, groups;
    uint8_t mask;
    const float *y;      /* [rows * cols] when mask has OUTPUT */
    const float *mean;   /* [rows * groups] when mask has MEAN */
    const float *rstd;   /* [rows * groups] when mask has RSTD */
    const float *radius; /* [rows] when mask has RADIUS */
} frame_infer_result;

/* Size of an OK INFER_RESP frame for an FP32 request; 0 when over 32 bits. */
size_t frame_infer_response_bytes(uint32_t rows, uint32_t cols, uint32_t groups, unsigned mask);

/* Writes an OK INFER_RESP frame (FP32 output). Returns its size. */
size_t frame_encode_infer_response(uint8_t *dst, unsigned flags, uint64_t id,
                                   const frame_infer_result *r);

typedef struct frame_model_meta {
    uint8_t kind;   /* 0 layernorm, 1 rmsnorm */
    uint8_t dtypes; /* bit 1 << (code - 1) per dtype computed */
    uint32_t dim, groups, max_rows, max_cols;
    float eps;
} frame_model_meta;

/* Writes an OK METADATA_RESP frame: FRAME_HEADER_BYTES + 4 +
 * FRAME_META_RESP_BYTES bytes. Returns its size. */
size_t frame_encode_metadata_response(uint8_t *dst, unsigned flags, uint64_t id,
                                      const frame_model_meta *m);

/* A decoded response (the client's side). Pointers borrowed. */
typedef struct frame_response {
    lns_status status;  /* from the wire code; LNS_EINTERNAL if unknown */
    unsigned wire_status;
    const char *msg;    /* msg_len bytes, not NUL-terminated */
    size_t msg_len;
    /* INFER_RESP with status OK: */
    uint32_t rows, cols, groups;
    uint8_t dtype, mask;
    const uint8_t *output, *mean, *rstd, *radius; /* unaligned; NULL if not asked */
    /* METADATA_RESP with status OK: */
    frame_model_meta meta;
} frame_response;

/*
 * Decodes the body of a response frame with header h. LNS_OK when the
 * frame is well-formed (r->status says what the server answered), else
 * LNS_EBADREQ with the reason in msg.
 */
lns_status frame_decode_response(const frame_header *h, const uint8_t *body, size_t body_len,
                                 frame_response *r, char *msg);

/* Little-endian loads of unaligned fields, for readers of results. */
float frame_get_f32(const uint8_t *p);
