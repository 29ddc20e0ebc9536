/*
 * ln_dispatch.c -- picks the kernel once at start (ln_dispatch_init) and
 * runs it (ln_rows). Compiled without -mavx2: this file must run on any
 * x86-64, it only asks the CPU what it has. The default is the widest
 * vector kernel the CPU has: AVX-512, else AVX2, else the reference. Both
 * vector kernels meet the accuracy contract (4 ulp of max(1, |y|) against
 * the correctly rounded result, tests/test_core.c); AVX-512 is faster in
 * cache and from memory (README "Measured"). LNSERVE_KERNEL overrides.
 *
 * Thread rules: ln_dispatch_init is called from main before any worker
 * starts; ln_rows and ln_kernel_name may then be called from any thread.
 * The choice is one atomic pointer, stored and loaded with relaxed order:
 * it guards no other data (the kernels are code and read-only tables), so
 * all a reader needs is an untorn value, and thread creation after init
 * already orders the store before every worker's load. Calling
 * ln_dispatch_init again re-reads the environment (the tests do this); it
 * must not race with ln_rows in production, but would not corrupt it.
 */
#include "ln.h"
#include "ln_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The reference until ln_dispatch_init picks; see the thread rules above. */
static _Atomic(ln_rows_fn) chosen_kernel = ln_rows_ref;

int ln_cpu_has_avx2(void)
{
    /*
     * libgcc's __builtin_cpu_supports reports avx2 only when XGETBV shows
     * the OS saves the YMM state, so this covers "CPU and OS" in ln.h.
     */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int ln_cpu_has_avx512(void)
{
    /* libgcc sets the avx512 bits only when XGETBV shows the OS saves the
     * opmask and ZMM state as well as YMM. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
}

int ln_dispatch_init(const char **why)
{
    const char *want = getenv("LNSERVE_KERNEL");
    ln_rows_fn fn = ln_rows_ref;
    const char *reason = NULL;
    int rc = 0;

    /* Unset or empty: the widest vector kernel the CPU has. */
    if (!want || !*want) {
        if (ln_cpu_has_avx512())
            fn = ln_rows_avx512;
        else if (ln_cpu_has_avx2())
            fn = ln_rows_avx2;
    } else if (strcmp(want, "ref") == 0) {
        fn = ln_rows_ref;
    } else if (strcmp(want, "avx2") == 0) {
        if (ln_cpu_has_avx2()) {
            fn = ln_rows_avx2;
        } else {
            reason = "LNSERVE_KERNEL=avx2 but the CPU lacks AVX2 or FMA; using ref";
            rc = -1;
        }
    } else if (strcmp(want, "avx512") == 0) {
        if (ln_cpu_has_avx512()) {
            fn = ln_rows_avx512;
        } else {
            reason = "LNSERVE_KERNEL=avx512 but the CPU lacks AVX-512 F/BW/VL or FMA; using ref";
            rc = -1;
        }
    } else {
        reason = "LNSERVE_KERNEL must be ref, avx2 or avx512; using ref";
        rc = -1;
    }
    /* Pairs with the relaxed loads in ln_rows and ln_kernel_name. */
    atomic_store_explicit(&chosen_kernel, fn, memory_order_relaxed);
    if (why)
        *why = reason;
    return rc;
}

const char *ln_kernel_name(void)
{
    /* Pairs with the relaxed store in ln_dispatch_init. */
    ln_rows_fn fn = atomic_load_explicit(&chosen_kernel, memory_order_relaxed);

    if (fn == ln_rows_avx512)
        return "avx512";
    return fn == ln_rows_avx2 ? "avx2" : "ref";
}

void ln_rows(const ln_params *p, const float *x, float *y, size_t n_rows,
             const ln_diag *d)
{
    /* Pairs with the relaxed store in ln_dispatch_init. */
    ln_rows_fn fn = atomic_load_explicit(&chosen_kernel, memory_order_relaxed);

    fn(p, x, y, n_rows, d);
}

size_t ln_nt_min_bytes(void)
{
    static _Atomic size_t cached;
    size_t v = atomic_load_explicit(&cached, memory_order_relaxed);

    if (v == 0) {
        const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);

        /* Racing first calls store the same value. An L2 under 64 KiB
         * (or none reported: glibc gives 0 or -1) counts as unknown. */
        v = l2 >= 65536 ? (size_t)l2 / 2 : (size_t)8 << 20;
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}
