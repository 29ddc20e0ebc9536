/*
 * bench_dnnl.c -- lnserve's default kernel against oneDNN's layer
 * normalization (Debian's libdnnl, oneDNN 2.6 C API) and a memcpy of the
 * same bytes, in one process, repetitions interleaved (peers.h); then each
 * one's accuracy on the row families against a float64 reference.
 *
 * Shapes and data are bench_kernel.c's: 768 x 64 and 4096 x 64 (in cache),
 * 4096 x 4096 (out of cache); gain and bias on, eps 1e-5, one thread. GB/s
 * counts row bytes read + written (2 * rows * N * 4). oneDNN runs as
 * forward inference with dnnl_use_scale | dnnl_use_shift on an f32 "ab"
 * (row-major) tensor; the primitive and its memory objects are made once
 * per shape, outside the timing, as a server would.
 *
 * Threads: Debian builds oneDNN 2.6 on OpenMP (DNNL_CPU_RUNTIME is
 * DNNL_RUNTIME_OMP in dnnl_config.h; libdnnl.so.2 links libgomp), so one
 * thread is omp_set_num_threads(1) on the thread that executes; checked
 * with omp_get_max_threads and printed.
 *
 * Built only by `make bench` / `make bench-peers` (links -ldnnl), never by
 * `make all` or `make test`.
 *
 * Usage: bench_dnnl  (no arguments)
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "../core/ln.h"
#include "peers.h"

#define DNNL_CHECK(call)                                                                           \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) {                                                                 \
            fprintf(stderr, "bench_dnnl: %s failed: status %d\n", #call, (int)st_);                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* One oneDNN layer normalization bound to its buffers. */
typedef struct dnnl_ln {
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_memory_t mem[5]; /* src, dst, scale, shift, scratchpad */
    dnnl_exec_arg_t args[5];
    int n_args;
    void *scratch;
    char impl[64];
} dnnl_ln;

static void dnnl_ln_init(dnnl_ln *c, dnnl_engine_t eng, size_t n, size_t rows, const float *x,
                         float *y, const float *gain, const float *bias)
{
    dnnl_memory_desc_t data_md, ss_md;
    dnnl_dims_t data_dims = {(dnnl_dim_t)rows, (dnnl_dim_t)n};
    dnnl_dims_t ss_dims = {(dnnl_dim_t)n};
    dnnl_layer_normalization_desc_t desc;
    dnnl_primitive_desc_t pd;
    const dnnl_memory_desc_t *sp_md;
    const char *impl = "?";
    size_t sp_bytes;

    memset(c, 0, sizeof(*c));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&data_md, 2, data_dims, dnnl_f32, dnnl_ab));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&ss_md, 1, ss_dims, dnnl_f32, dnnl_a));
    DNNL_CHECK(dnnl_layer_normalization_forward_desc_init(
        &desc, dnnl_forward_inference, &data_md, NULL, PEERS_EPS, dnnl_use_scale | dnnl_use_shift));
    DNNL_CHECK(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL));
    DNNL_CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    snprintf(c->impl, sizeof(c->impl), "%s", impl);
    sp_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    sp_bytes = sp_md ? dnnl_memory_desc_get_size(sp_md) : 0;

    /* oneDNN takes handles as void *; it only reads src, scale and shift. */
    DNNL_CHECK(dnnl_memory_create(&c->mem[0], &data_md, eng, (void *)x));
    DNNL_CHECK(dnnl_memory_create(&c->mem[1], &data_md, eng, y));
    DNNL_CHECK(dnnl_memory_create(&c->mem[2], &ss_md, eng, (void *)gain));
    DNNL_CHECK(dnnl_memory_create(&c->mem[3], &ss_md, eng, (void *)bias));
    c->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, c->mem[0]};
    c->args[1] = (dnnl_exec_arg_t){DNNL_ARG_DST, c->mem[1]};
    c->args[2] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, c->mem[2]};
    c->args[3] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, c->mem[3]};
    c->n_args = 4;
    if (sp_bytes > 0) {
        c->scratch = aligned_alloc(64, (sp_bytes + 63) / 64 * 64);
        if (!c->scratch) {
            fprintf(stderr, "bench_dnnl: out of memory\n");
            exit(1);
        }
        memset(c->scratch, 0, sp_bytes);
        DNNL_CHECK(dnnl_memory_create(&c->mem[4], sp_md, eng, c->scratch));
        c->args[4] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, c->mem[4]};
        c->n_args = 5;
    }
    DNNL_CHECK(dnnl_primitive_create(&c->prim, pd));
    DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    DNNL_CHECK(dnnl_stream_create(&c->stream, eng, dnnl_stream_default_flags));
}

static void dnnl_ln_fini(dnnl_ln *c)
{
    int i;

    DNNL_CHECK(dnnl_stream_destroy(c->stream));
    DNNL_CHECK(dnnl_primitive_destroy(c->prim));
    for (i = 0; i < c->n_args; i++)
        DNNL_CHECK(dnnl_memory_destroy(c->mem[i]));
    free(c->scratch);
}

static void dnnl_ln_call(void *ctx)
{
    dnnl_ln *c = ctx;

    DNNL_CHECK(dnnl_primitive_execute(c->prim, c->stream, c->n_args, c->args));
    DNNL_CHECK(dnnl_stream_wait(c->stream));
}

/* memcpy or lnserve's default kernel on the shape's buffers. */
typedef struct own_call {
    int what;
    size_t n, rows;
    const float *x;
    float *y;
    const float *gain, *bias;
} own_call;

static void own_call_run(void *ctx)
{
    const own_call *c = ctx;

    peers_ln(c->what, c->n, c->rows, c->x, c->y, c->gain, c->bias);
}

static void bench_speed(dnnl_engine_t eng, const char *kname)
{
    static const struct {
        size_t n, rows;
    } shapes[] = {{768, 64}, {4096, 64}, {4096, 4096}};
    const size_t max_elems = 4096 * 4096;
    float *x = peers_alloc_floats(max_elems), *y = peers_alloc_floats(max_elems);
    float *g = peers_alloc_floats(4096), *b = peers_alloc_floats(4096);
    char own_name[32];
    size_t s, k;

    peers_fill_bench(x, max_elems);
    peers_fill_affine(g, b, 4096);
    snprintf(own_name, sizeof(own_name), "lnserve %s", kname);
    printf("%-11s %-14s %10s %12s %8s %10s %11s\n", "shape", "impl", "us/call", "rows/s", "GB/s",
           "vs memcpy", "vs lnserve");
    for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        const size_t n = shapes[s].n, rows = shapes[s].rows;
        const double bytes = 2.0 * (double)(n * rows) * sizeof(float);
        own_call copy = {PEERS_MEMCPY, n, rows, x, y, g, b};
        own_call own = {PEERS_DEFAULT, n, rows, x, y, g, b};
        dnnl_ln dn;
        const peers_call_fn calls[3] = {own_call_run, own_call_run, dnnl_ln_call};
        void *ctxs[3];
        const char *names[3] = {"memcpy", own_name, "onednn"};
        double sec[3];
        char label[24];

        dnnl_ln_init(&dn, eng, n, rows, x, y, g, b);
        ctxs[0] = &copy;
        ctxs[1] = &own;
        ctxs[2] = &dn;
        peers_time_rr(calls, ctxs, 3, sec);
        snprintf(label, sizeof(label), "%zux%zu", n, rows);
        for (k = 0; k < 3; k++)
            printf("%-11s %-14s %10.2f %12.0f %8.2f %9.1f%% %10.2fx\n", label, names[k],
                   sec[k] * 1e6, (double)rows / sec[k], bytes / sec[k] * 1e-9,
                   sec[0] / sec[k] * 100.0, sec[1] / sec[k]);
        if (s == 0)
            printf("%-11s (oneDNN implementation: %s)\n", "", dn.impl);
        dnnl_ln_fini(&dn);
    }
    free(x);
    free(y);
    free(g);
    free(b);
}

/* Max ulp error per family over N = 768 and 4096, PEERS_ACC_ROWS rows each. */
static void bench_accuracy(dnnl_engine_t eng, const char *kname)
{
    static const size_t ns[] = {768, 4096};
    const size_t max_elems = 4096 * PEERS_ACC_ROWS;
    float *x = peers_alloc_floats(max_elems), *y = peers_alloc_floats(max_elems);
    float *g = peers_alloc_floats(4096), *b = peers_alloc_floats(4096);
    double *want = malloc(max_elems * sizeof(double));
    char own_name[32];
    int f;

    if (!want) {
        fprintf(stderr, "bench_dnnl: out of memory\n");
        exit(1);
    }
    peers_fill_affine(g, b, 4096);
    snprintf(own_name, sizeof(own_name), "lnserve %s", kname);
    printf("\naccuracy: max |y - y64| in ulp of max(1, |y64|), y64 the float64 result; "
           "N = 768 and 4096, %d rows each, eps 1e-5, gain and bias on\n",
           PEERS_ACC_ROWS);
    printf("%-18s %14s %12s %12s %16s\n", "family", own_name, "lnserve ref", "onednn",
           "onednn relative");
    for (f = 0; f < PEERS_N_FAMILIES; f++) {
        double err[3] = {0.0, 0.0, 0.0}, rel = 0.0;
        size_t i;

        for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
            const size_t n = ns[i], count = n * PEERS_ACC_ROWS;
            dnnl_ln dn;

            peers_fill_family(f, PEERS_ACC_SEED + n, x, n, PEERS_ACC_ROWS);
            peers_ref64(n, PEERS_ACC_ROWS, x, g, b, PEERS_EPS, want);
            peers_ln(PEERS_DEFAULT, n, PEERS_ACC_ROWS, x, y, g, b);
            err[0] = fmax(err[0], peers_max_ulp(y, want, count));
            peers_ln(PEERS_REF, n, PEERS_ACC_ROWS, x, y, g, b);
            err[1] = fmax(err[1], peers_max_ulp(y, want, count));
            dnnl_ln_init(&dn, eng, n, PEERS_ACC_ROWS, x, y, g, b);
            dnnl_ln_call(&dn);
            dnnl_ln_fini(&dn);
            err[2] = fmax(err[2], peers_max_ulp(y, want, count));
            rel = fmax(rel, peers_max_rel(y, want, count));
        }
        printf("%-18s %14.3g %12.3g %12.3g %16.2g\n", peers_family_name(f), err[0], err[1], err[2],
               rel);
    }
    free(want);
    free(x);
    free(y);
    free(g);
    free(b);
}

int main(void)
{
    const dnnl_version_t *v = dnnl_version();
    const char *kname = peers_init();
    dnnl_engine_t eng;

    omp_set_num_threads(1);
    DNNL_CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    printf("bench_dnnl: oneDNN %d.%d.%d (OpenMP threads: %d); lnserve default kernel %s; "
           "gain and bias on; GB/s counts row bytes read + written; median of %d "
           "interleaved reps\n",
           v->major, v->minor, v->patch, omp_get_max_threads(), kname, PEERS_REPS);
    bench_speed(eng, kname);
    bench_accuracy(eng, kname);
    DNNL_CHECK(dnnl_engine_destroy(eng));
    return 0;
}
