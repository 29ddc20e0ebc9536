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
 * The values are distinct: each timed call converts the next slice of N out
 * of a pool of 1.5 M values (wrapping), never the same N again and again.
 * Both codecs branch on the data (digit counts, layouts, dragonbox's
 * interval tests), and on one repeated array the branch predictor learns
 * every outcome: f32text's print measured ~95 M floats/s on a repeated
 * 4096 but 42-53 on distinct values, parse ~180 against 56-61, and the
 * distinct figures are the server's (a request body is new data).
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

/*
 * The pool: POOL_N values, cut into slices of n, each slice as the text of
 * its JSON array and as the one-row infer body around that array. 3 * 2^19
 * is a multiple of both 768 and 4096 and far more values than a branch
 * predictor can learn; the text (~18 MB) streams from memory in order,
 * which the prefetchers hide at these rates (~1 GB/s).
 */
#define POOL_N (3u << 19)

typedef struct {
    const float *v;   /* the slice's n values */
    const char *body; /* the infer body; the array is text .. text + len */
    size_t body_len;
    const char *text;
    size_t len;
} slice;

typedef struct {
    float *v;
    char *buf;
    slice *s;
    size_t n, n_slices, next;
    char *out; /* print's output, n * 32 bytes, reused */
} pool;

static const oip_model_info model = {
    .name = "layernorm", .kind = LN_KIND_LAYERNORM, .dim = 0, .groups = 1,
    .max_rows = 64, .max_n = 4096,
};

/* The body of one method: converts one slice's n values once. */
typedef void (*method_fn)(const slice *s, size_t n, char *out);

static void parse_f32text(const slice *s, size_t n, char *out)
{
    const char *p = s->text + 1, *end = s->text + s->len;
    float acc = 0, f;

    for (size_t i = 0; i < n; i++) {
        p = f32text_parse(p, end, &f);
        acc += f;
        p++; /* ',' or ']' */
    }
    sink = acc;
}

static void parse_jansson(const slice *s, size_t n, char *out)
{
    json_t *a = json_loadb(s->text, s->len, 0, NULL);

    sink = (float)json_number_value(json_array_get(a, n - 1));
    json_decref(a);
}

/* One request decode. force_full: the jansson path, as for a body the
 * fast path does not recognise. */
static void decode_body(const slice *s, int force_full)
{
    oip_request req;
    char err[OIP_ERR_MAX];

    if (oip__decode_infer_path(s->body, s->body_len, OIP_JSON_ALL, &model, &req, err, force_full,
                               NULL) != LNS_OK) {
        fprintf(stderr, "bench_codec: decode failed: %s\n", err);
        exit(1);
    }
    sink = req.data[req.n_cols - 1];
    oip_request_fini(&req);
}

static void decode_fast(const slice *s, size_t n, char *out)
{
    decode_body(s, 0);
}

static void decode_full(const slice *s, size_t n, char *out)
{
    decode_body(s, 1);
}

/* What the server does: the whole array at once (8 values at a time with
 * AVX-512). */
static void print_f32text(const slice *s, size_t n, char *out)
{
    sink = (float)f32text_print_array(out, s->v, n);
}

/* One value at a time (dragonbox). */
static void print1_f32text(const slice *s, size_t n, char *out)
{
    char *o = out;

    for (size_t i = 0; i < n; i++) {
        o += f32text_print(o, s->v[i]);
        *o++ = ',';
    }
    sink = (float)(o - out);
}

static void print_snprintf(const slice *s, size_t n, char *out)
{
    char *o = out;

    for (size_t i = 0; i < n; i++) {
        o += snprintf(o, 32, "%.9g", (double)s->v[i]);
        *o++ = ',';
    }
    sink = (float)(o - out);
}

/* Converts the pool's next slice. */
static void run_next(method_fn fn, pool *pl)
{
    fn(&pl->s[pl->next], pl->n, pl->out);
    if (++pl->next == pl->n_slices)
        pl->next = 0;
}

/* Fills pl with slices of n out of v (POOL_N values). The request text as
 * clients send it: what %.9g prints. */
static int pool_init(pool *pl, float *v, size_t n)
{
    static const char tail[] = "}]}";
    char head[160], *o;
    size_t head_len;

    head_len = (size_t)snprintf(head, sizeof head,
                                "{\"inputs\":[{\"name\":\"input\",\"datatype\":"
                                "\"FP32\",\"shape\":[1,%zu],\"data\":",
                                n);
    pl->v = v;
    pl->n = n;
    pl->n_slices = POOL_N / n;
    pl->next = 0;
    pl->buf = malloc((size_t)POOL_N * 17 + pl->n_slices * (head_len + 8));
    pl->s = malloc(pl->n_slices * sizeof *pl->s);
    pl->out = malloc(n * 32 + 2 + F32TEXT_MAX);
    if (!pl->buf || !pl->s || !pl->out)
        return -1;
    o = pl->buf;
    for (size_t k = 0; k < pl->n_slices; k++) {
        slice *s = &pl->s[k];

        s->v = v + k * n;
        s->body = o;
        memcpy(o, head, head_len);
        o += head_len;
        s->text = o;
        *o++ = '[';
        for (size_t i = 0; i < n; i++)
            o += snprintf(o, 32, "%s%.9g", i ? "," : "", (double)s->v[i]);
        *o++ = ']';
        s->len = (size_t)(o - s->text);
        memcpy(o, tail, sizeof tail - 1);
        o += sizeof tail - 1;
        s->body_len = (size_t)(o - s->body);
    }
    return 0;
}

static void pool_fini(pool *pl)
{
    free(pl->buf);
    free(pl->s);
    free(pl->out);
}

/* Best M floats/s over 7 runs of about 50 ms each. */
static double rate(method_fn fn, pool *pl)
{
    size_t n = pl->n;
    double best = 0;
    size_t reps = 1;

    for (;;) { /* calibrate to ~50 ms */
        double t = now_s();
        for (size_t r = 0; r < reps; r++)
            run_next(fn, pl);
        if (now_s() - t > 0.05)
            break;
        reps *= 2;
    }
    for (int k = 0; k < 7; k++) {
        double t = now_s(), dt;
        for (size_t r = 0; r < reps; r++)
            run_next(fn, pl);
        dt = now_s() - t;
        if ((double)(reps * n) / dt / 1e6 > best)
            best = (double)(reps * n) / dt / 1e6;
    }
    return best;
}

int main(void)
{
    static const size_t sizes[] = {768, 4096};
    float *v = malloc((size_t)POOL_N * sizeof *v);

    if (!v)
        return 1;
    for (size_t i = 0; i < POOL_N; i++)
        v[i] = gauss();
    printf("float codec, one core, M floats/s (best of 7), %u distinct values in slices of N\n",
           POOL_N);
    printf("%-6s %-6s %12s %22s %8s\n", "N", "op", "f32text", "jansson / snprintf", "ratio");
    printf("(decode: oip_decode_infer's fast path / its full jansson decode;\n"
           " print: f32text_print_array, as the server prints; print1: f32text_print per value)\n");
    for (size_t si = 0; si < 2; si++) {
        size_t n = sizes[si];
        pool pl;
        double a, b;

        if (pool_init(&pl, v, n) != 0)
            return 1;
        a = rate(parse_f32text, &pl);
        b = rate(parse_jansson, &pl);
        printf("%-6zu %-6s %12.1f %22.1f %7.1fx\n", n, "parse", a, b, a / b);
        a = rate(decode_fast, &pl);
        b = rate(decode_full, &pl);
        printf("%-6zu %-6s %12.1f %22.1f %7.1fx\n", n, "decode", a, b, a / b);
        a = rate(print_f32text, &pl);
        b = rate(print_snprintf, &pl);
        printf("%-6zu %-6s %12.1f %22.1f %7.1fx\n", n, "print", a, b, a / b);
        a = rate(print1_f32text, &pl);
        printf("%-6zu %-6s %12.1f %22.1f %7.1fx\n", n, "print1", a, b, a / b);
        pool_fini(&pl);
    }
    free(v);
    return 0;
}
