/*
 * bench_codec.c -- float text codec throughput, one core: f32text (fast_float
 * and dragonbox) against what lnserve used before, jansson's json_loadb for
 * parsing a "data" array and snprintf("%.9g") for printing, on arrays of
 * N = 768 and N = 4096 float32 values like a LayerNorm's inputs and outputs.
 * Prints M floats/s per method and the ratio, and for the whole request
 * decode (oip_decode_infer on a one-row infer body: the fast path, whose
 * per-value cost is f32text_parse plus its array scan) against the full
 * jansson decode it falls back to. Each figure is the best of 7 timed runs
 * of ~50 ms: the host is shared and noisy (PERF-NOTES).
 *
 *   build/release/bench/bench_codec        (make bench runs it)
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../proto/f32text.h"
#include "../proto/oip.h"
#include "../proto/oip_internal.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* A roughly normal value (sum of uniforms), like a LayerNorm output. */
static float gauss(void)
{
    double s = 0;

    for (int i = 0; i < 4; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        s += (double)(rng >> 11) * 0x1p-53;
    }
    return (float)((s - 2.0) * 1.7);
}

static volatile float sink;

/* The body of one method: converts the n values once. */
typedef void (*method_fn)(const float *v, size_t n, const char *text, size_t text_len, char *out);

static void parse_f32text(const float *v, size_t n, const char *text, size_t len, char *out)
{
    const char *p = text + 1, *end = text + len;
    float acc = 0, f;

    for (size_t i = 0; i < n; i++) {
        p = f32text_parse(p, end, &f);
        acc += f;
        p++; /* ',' or ']' */
    }
    sink = acc;
}

static void parse_jansson(const float *v, size_t n, const char *text, size_t len, char *out)
{
    json_t *a = json_loadb(text, len, 0, NULL);

    sink = (float)json_number_value(json_array_get(a, n - 1));
    json_decref(a);
}

static const oip_model_info model = {
    .name = "layernorm", .kind = LN_KIND_LAYERNORM, .dim = 0, .groups = 1,
    .max_rows = 64, .max_n = 4096,
};

/* One request decode; text is the whole body. force_full: the jansson
 * path, as for a body the fast path does not recognise. */
static void decode_body(const char *text, size_t len, int force_full)
{
    oip_request req;
    char err[OIP_ERR_MAX];

    if (oip__decode_infer_path(text, len, OIP_JSON_ALL, &model, &req, err, force_full, NULL) !=
        LNS_OK) {
        fprintf(stderr, "bench_codec: decode failed: %s\n", err);
        exit(1);
    }
    sink = req.data[req.n_cols - 1];
    oip_request_fini(&req);
}

static void decode_fast(const float *v, size_t n, const char *text, size_t len, char *out)
{
    decode_body(text, len, 0);
}

static void decode_full(const float *v, size_t n, const char *text, size_t len, char *out)
{
    decode_body(text, len, 1);
}

static void print_f32text(const float *v, size_t n, const char *text, size_t len, char *out)
{
    char *o = out;

    for (size_t i = 0; i < n; i++) {
        o += f32text_print(o, v[i]);
        *o++ = ',';
    }
    sink = (float)(o - out);
}

static void print_snprintf(const float *v, size_t n, const char *text, size_t len, char *out)
{
    char *o = out;

    for (size_t i = 0; i < n; i++) {
        o += snprintf(o, 32, "%.9g", (double)v[i]);
        *o++ = ',';
    }
    sink = (float)(o - out);
}

/* Best M floats/s over 7 runs of about 50 ms each. */
static double rate(method_fn fn, const float *v, size_t n, const char *text, size_t len, char *out)
{
    double best = 0;
    size_t reps = 1;

    for (;;) { /* calibrate to ~50 ms */
        double t = now_s();
        for (size_t r = 0; r < reps; r++)
            fn(v, n, text, len, out);
        if (now_s() - t > 0.05)
            break;
        reps *= 2;
    }
    for (int k = 0; k < 7; k++) {
        double t = now_s(), dt;
        for (size_t r = 0; r < reps; r++)
            fn(v, n, text, len, out);
        dt = now_s() - t;
        if ((double)(reps * n) / dt / 1e6 > best)
            best = (double)(reps * n) / dt / 1e6;
    }
    return best;
}

int main(void)
{
    static const size_t sizes[] = {768, 4096};

    printf("float codec, one core, M floats/s (best of 7)\n");
    printf("%-6s %-6s %12s %22s %8s\n", "N", "op", "f32text", "jansson / snprintf", "ratio");
    printf("(decode: oip_decode_infer's fast path / its full jansson decode)\n");
    for (size_t si = 0; si < 2; si++) {
        size_t n = sizes[si], len = 0;
        float *v = malloc(n * sizeof *v);
        char *text = malloc(n * 32 + 2), *out = malloc(n * 32 + 2);
        char *body = malloc(n * 32 + 256);
        size_t body_len;
        double a, b;

        if (!v || !text || !out || !body)
            return 1;
        /* The request text as clients send it: what %.9g prints. */
        text[len++] = '[';
        for (size_t i = 0; i < n; i++) {
            v[i] = gauss();
            len += (size_t)snprintf(text + len, 32, "%s%.9g", i ? "," : "", (double)v[i]);
        }
        text[len++] = ']';
        a = rate(parse_f32text, v, n, text, len, out);
        b = rate(parse_jansson, v, n, text, len, out);
        printf("%-6zu %-6s %12.1f %22.1f %7.1fx\n", n, "parse", a, b, a / b);
        /* The infer request around the same array, [1, n] FP32. */
        body_len = (size_t)sprintf(body,
                                   "{\"inputs\":[{\"name\":\"input\",\"datatype\":"
                                   "\"FP32\",\"shape\":[1,%zu],\"data\":",
                                   n);
        memcpy(body + body_len, text, len);
        body_len += len;
        body_len += (size_t)sprintf(body + body_len, "}]}");
        a = rate(decode_fast, v, n, body, body_len, out);
        b = rate(decode_full, v, n, body, body_len, out);
        printf("%-6zu %-6s %12.1f %22.1f %7.1fx\n", n, "decode", a, b, a / b);
        a = rate(print_f32text, v, n, text, len, out);
        b = rate(print_snprintf, v, n, text, len, out);
        printf("%-6zu %-6s %12.1f %22.1f %7.1fx\n", n, "print", a, b, a / b);
        free(v);
        free(text);
        free(out);
        free(body);
    }
    return 0;
}
