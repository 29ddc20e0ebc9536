/*
 * oip.h -- Open Inference Protocol v2 (KServe v2 / Triton REST) JSON codec
 * for lnserve's models: decode an infer request into rows, encode the
 * infer response and the metadata documents, encode errors.
 *
 * Supports the binary tensor data extension as Triton defines it
 * (Inference-Header-Content-Length, parameters.binary_data_size on the
 * input, parameters.binary_data / binary_data_output on outputs) and the
 * datatypes FP32, FP16, BF16 and FP64 for the input and "output".
 *
 * Pure functions: no sockets, no threads, no globals; safe from any thread.
 * Decoding uses jansson for the envelope. Every error message names the
 * field (as a JSON path such as "inputs[0].shape") and what was expected.
 * Depends on core/ (ln.h) and jansson.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "../core/ln.h"
#include "status.h"

/* Output tensors a request may ask for. */
typedef enum oip_output {
    OIP_OUT_OUTPUT = 0, /* [B, N] normalized rows */
    OIP_OUT_MEAN,       /* [B, G] */
    OIP_OUT_RSTD,       /* [B, G] */
    OIP_OUT_RADIUS,     /* [B] */
    /* opt-in (core/diag.h); the ones above are the default set */
    OIP_OUT_DEPTH,          /* [B] 1 - radius without cancellation */
    OIP_OUT_CONDITION,      /* [B] sqrt(1 + m^2 / v), worst group */
    OIP_OUT_PLANE_RESIDUAL, /* [B, G] layernorm with nonzero gains */
    OIP_OUT_AXES,           /* [B, K] K = parameters.axes */
    OIP_OUT_JACOBIAN_FRO,   /* [B] |dy/dx|_F */
    OIP_OUT_NONLINEARITY,   /* [B] |Hessian|_F over groups, layernorm */
    OIP_OUT_COUNT
} oip_output;

/* Outputs returned when a request names none: output, mean, rstd, radius. */
#define OIP_OUT_DEFAULTS 4

/* K for the axes output when the request's parameters.axes is absent. */
#define OIP_AXES_DEFAULT 8

/* Name of output o ("output", "mean", ...). */
const char *oip_output_name(oip_output o);

/*
 * Datatypes of the input "input" and the output "output". The kernel
 * computes in float32 (core/ln.h): FP16 and BF16 widen to float32 exactly
 * (MATH.md section 6) and "output" is rounded once, to nearest even, from
 * the float32 result into the input's datatype (proto/half.h). FP64 inputs
 * are rounded to float32 before the kernel sees them, so an FP64 request
 * gets float32 accuracy, not float64: its FP64 "output" is the float32
 * result widened exactly. The diagnostics (mean, rstd, radius) are FP32
 * whatever the input's datatype.
 */
typedef enum oip_dtype {
    OIP_DT_FP32 = 0,
    OIP_DT_FP16,
    OIP_DT_BF16,
    OIP_DT_FP64,
    OIP_DT_COUNT
} oip_dtype;

/* "FP32", "FP16", "BF16", "FP64"; "unknown" out of range. */
const char *oip_dtype_name(oip_dtype d);

/* Bytes per element on the wire: 4, 2, 2, 8 (0 out of range). */
size_t oip_dtype_size(oip_dtype d);

/* oip_decode_infer's json_len when the request has no
 * Inference-Header-Content-Length header: the whole body is JSON. */
#define OIP_JSON_ALL ((size_t)-1)

/* What the decoder checks a request against. */
typedef struct oip_model_info {
    const char *name; /* model name, echoed in responses */
    ln_kind kind;
    size_t dim;       /* N the model requires; 0 = any */
    size_t groups;    /* G; must divide N */
    size_t max_rows;  /* limit on B */
    size_t max_n;     /* limit on N when dim == 0 */
    int has_plane;    /* plane_residual available (layernorm, nonzero gains) */
    size_t max_axes;  /* axes output: K at most this; 0 = not available */
} oip_model_info;

#define OIP_ID_MAX 256
#define OIP_ERR_MAX 256

/*
 * A decoded infer request. Owns data (malloc'd); release with
 * oip_request_fini. After oip_decode_infer returns LNS_OK:
 * n_rows >= 1, n_cols >= 1, n_rows * n_cols floats in data, all finite.
 */
typedef struct oip_request {
    char id[OIP_ID_MAX + 1]; /* request "id", echoed; valid when has_id */
    int has_id;
    size_t n_rows; /* B */
    size_t n_cols; /* N */
    float *data;   /* [B * N], row-major, widened or rounded to float32 */
    oip_dtype dtype; /* the input's datatype; "output" is returned in it */
    /* Outputs to return, in the order requested (default: output, mean,
     * rstd, radius). Each appears at most once. binary[i] says whether
     * outputs[i] goes back as binary data (parameters.binary_data, or the
     * request's parameters.binary_data_output when the output does not
     * say). */
    oip_output outputs[OIP_OUT_COUNT];
    size_t axes_k; /* K of the axes output, when requested (else 0) */
    unsigned char binary[OIP_OUT_COUNT];
    size_t n_outputs;
} oip_request;

/*
 * Decodes a POST /v2/models/{m}/infer body of len bytes. json_len is the
 * value of the request's Inference-Header-Content-Length header, or
 * OIP_JSON_ALL when it has none:
 *   - OIP_JSON_ALL, or json_len == len (what perf_analyzer's client sends
 *     for a pure JSON body): the body is one JSON document;
 *   - 0 < json_len < len: the first json_len bytes are the JSON document,
 *     the rest the binary data of the input, which must then say
 *     parameters.binary_data_size = B * N * (bytes per element) and carry
 *     no "data"; the bytes are little-endian, row-major, no padding;
 *   - json_len == 0: the whole body is the raw little-endian FP32 bytes of
 *     the one input. Only for a model with a fixed dim N: B = len / (4 N),
 *     and len must be a positive multiple of 4 N. Default outputs, as JSON.
 * The JSON document: exactly one input, named "input", datatype "FP32",
 * "FP16", "BF16" or "FP64", shape [B, N] (rank 2: the batch dimension is
 * always present, as Triton's max_batch_size > 0 models expect), values in
 * "data" (flat or nested to the shape) or in the binary part. A JSON
 * number in an FP16 or BF16 tensor is read as the correctly rounded
 * float32 of its decimal, then rounded to the datatype (so a decimal
 * within 2^-24 relative of an FP16 midpoint may round twice; values a
 * client printed from FP16 data are exact); in an FP64 tensor it is read
 * straight to float32. Unknown "parameters" keys are ignored.
 * Rejects, with LNS_EBADREQ and a message in err (NUL-terminated, at most
 * OIP_ERR_MAX bytes incl. NUL) that names the field: malformed JSON, a
 * missing or wrong-typed field, a wrong input name, a shape that does not
 * match the data length or the model's dim, N not divisible by groups, an
 * unknown or unsupported datatype, empty rows, B over max_rows, N over
 * max_n, an unknown output name, json_len over len, a binary_data_size that
 * is not B * N * size, binary bytes that are not exactly binary_data_size,
 * binary_data_size without the header, "data" and binary_data_size
 * together, and any value that is not finite in the datatype, or (FP64)
 * not finite once rounded to float32 (the message names row and column).
 * Every size is checked against the body before anything is allocated.
 * On error req holds nothing to free.
 */
lns_status oip_decode_infer(const char *body, size_t len, size_t json_len,
                            const oip_model_info *m, oip_request *req,
                            char *err);

void oip_request_fini(oip_request *req);

/* The computed results for one request; arrays as described in ln.h. */
typedef struct oip_result {
    const float *y;      /* [B * N] */
    const float *mean;   /* [B * G] */
    const float *rstd;   /* [B * G] */
    const float *radius; /* [B] */
    const float *depth;          /* [B], or NULL when not requested */
    const float *condition;      /* [B] */
    const float *plane_residual; /* [B * G] */
    const float *axes;           /* [B * G * axes_k], group by group */
    const float *jacobian_fro;   /* [B] */
    const float *nonlinearity;   /* [B] */
} oip_result;

/*
 * Encodes the infer response: {"model_name", "model_version", "id" (if the
 * request had one), "outputs": [{"name", "datatype", "shape", "data" or
 * "parameters": {"binary_data_size"}}...]} with the requested outputs in
 * order; "output" in req->dtype, the diagnostics in FP32. JSON floats are
 * printed so that they parse back to the same value (FP64: the float32
 * result widened, printed with 17 digits). Binary outputs follow the JSON
 * document, in output order, little-endian.
 * On LNS_OK *out is a malloc'd buffer (caller frees) of *out_len bytes, not
 * NUL-terminated, and *json_len (if json_len is not NULL) the length of its
 * JSON document: *json_len < *out_len exactly when binary data follows, and
 * then the response needs Inference-Header-Content-Length: *json_len.
 * LNS_EBADREQ when a value of a JSON output is not finite once in its
 * datatype (a float32 overflow caused by a large gain or bias, or an
 * "output" past 65504 in FP16): JSON cannot carry it; the caller words the
 * error. A binary output carries such a value as IEEE +-inf (or NaN), as
 * Triton would: the client asked for raw IEEE data.
 */
lns_status oip_encode_infer(const oip_model_info *m, const oip_request *req,
                            const oip_result *res, char **out,
                            size_t *out_len, size_t *json_len);

/* {"error": msg}, properly escaped. malloc'd; NULL on allocation failure. */
char *oip_encode_error(const char *msg, size_t *out_len);

/* GET /v2: {"name": "lnserve", "version": version, "extensions":
 * ["binary_tensor_data"]}. */
char *oip_encode_server_metadata(const char *version, size_t *out_len);

/* GET /v2/models/{m}: name, versions, platform, inputs and outputs with
 * datatype and shape (-1 for the batch dimension and for any N). OIP
 * metadata has one datatype per tensor: "input" and "output" say FP32 (what
 * the kernel computes in), though FP16, BF16 and FP64 are accepted too, as
 * the README's API section says. */
char *oip_encode_model_metadata(const oip_model_info *m, size_t *out_len);
