/*
 * test_lnctl.c -- unit tests of lnctl's leaf modules: the latency
 * histogram (tools/hist.c), the row formats (tools/rowio.c) and the HTTP/1.1
 * response parser and URL/request helpers (tools/httpc.c).
 *
 * Random tests print their seed; LNSERVE_TEST_SEED fixes it.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "../tools/hist.h"
#include "../tools/httpc.h"
#include "../tools/rowio.h"

static uint64_t g_seed;

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s)
{
    return ((double)(rnd(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double gauss(uint64_t *s)
{
    return sqrt(-2.0 * log(unit(s))) * cos(6.283185307179586 * unit(s));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- hist --------------------------------------------------------------- */

static void test_hist_buckets(void **state)
{
    (void)state;
    uint64_t s = g_seed;
    for (uint64_t v = 0; v < 5000; v++) {
        uint64_t lo, hi;
        size_t i = hist_index(v);
        hist_bucket_range(i, &lo, &hi);
        assert_true(lo <= v && v <= hi);
        if (v < 256)
            assert_true(lo == v && hi == v);
        if (v)
            assert_true(hist_index(v - 1) <= i);
    }
    for (int k = 0; k < 200000; k++) {
        uint64_t v = rnd(&s) >> (rnd(&s) % 64);
        size_t i = hist_index(v);
        assert_true(i < HIST_BUCKETS);
        uint64_t lo, hi;
        hist_bucket_range(i, &lo, &hi);
        assert_true(lo <= v && v <= hi);
        /* a bucket is at most 1/128 of its lower edge wide */
        assert_true((double)(hi - lo) <= (double)lo / 128.0 + 1e-9);
    }
    assert_int_equal(hist_index(UINT64_MAX), HIST_BUCKETS - 1);
}

/* Percentiles against the exact order statistic of a sorted copy. */
static void check_percentiles(const uint64_t *vals, size_t n, const char *what)
{
    hist *h = malloc(sizeof *h);
    uint64_t *sorted = malloc(n * sizeof *sorted);
    assert_non_null(h);
    assert_non_null(sorted);
    hist_reset(h);
    for (size_t i = 0; i < n; i++)
        hist_record(h, vals[i]);
    memcpy(sorted, vals, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_u64);
    const double ps[] = {0, 1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        size_t rank = (size_t)ceil(ps[k] / 100.0 * (double)n);
        uint64_t want = sorted[rank ? rank - 1 : 0];
        uint64_t got = hist_percentile(h, ps[k]);
        double rel = want ? fabs((double)got - (double)want) / (double)want : (double)got;
        if (rel > 0.01) {
            fprintf(stderr, "%s: p%g got %llu want %llu (seed %llu)\n", what, ps[k],
                    (unsigned long long)got, (unsigned long long)want,
                    (unsigned long long)g_seed);
            fail();
        }
    }
    assert_int_equal(h->count, n);
    assert_int_equal(hist_percentile(h, 100), sorted[n - 1]);
    assert_int_equal(hist_percentile(h, 0), sorted[0]);
    free(sorted);
    free(h);
}

static void test_hist_percentiles(void **state)
{
    (void)state;
    uint64_t s = g_seed ^ 1;
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof *v);
    assert_non_null(v);
    /* uniform latencies 50 us .. 5 ms in ns */
    for (size_t i = 0; i < n; i++)
        v[i] = 50000 + rnd(&s) % 4950000;
    check_percentiles(v, n, "uniform");
    /* log-normal: a heavy right tail over six decades */
    for (size_t i = 0; i < n; i++)
        v[i] = (uint64_t)(200000.0 * exp(2.0 * gauss(&s)));
    check_percentiles(v, n, "lognormal");
    /* Pareto alpha = 1.1: the tail that makes p99.9 and max matter */
    for (size_t i = 0; i < n; i++)
        v[i] = (uint64_t)(10000.0 / pow(unit(&s), 1.0 / 1.1));
    check_percentiles(v, n, "pareto");
    /* bimodal with a few huge outliers and small exact values */
    for (size_t i = 0; i < n; i++)
        v[i] = i % 1000 == 0 ? 3000000000ull + rnd(&s) % 1000000000ull
               : i % 2      ? rnd(&s) % 300
                            : 100000 + rnd(&s) % 1000;
    check_percentiles(v, n, "bimodal");
    /* few samples */
    check_percentiles(v, 7, "seven");
    free(v);
}

static void test_hist_merge_empty(void **state)
{
    (void)state;
    hist *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    hist_reset(a);
    hist_reset(b);
    assert_int_equal(hist_percentile(a, 99), 0);
    assert_true(hist_mean(a) == 0.0);
    for (uint64_t i = 1; i <= 100; i++)
        hist_record(i % 2 ? a : b, i * 1000);
    hist_merge(a, b);
    assert_int_equal(a->count, 100);
    assert_int_equal(a->min, 1000);
    assert_int_equal(a->max, 100000);
    assert_true(fabs(hist_mean(a) - 50500.0) < 1e-6);
    uint64_t p50 = hist_percentile(a, 50);
    assert_true(fabs((double)p50 - 50000.0) <= 500.0);
    free(a);
    free(b);
}

/* ---- rowio -------------------------------------------------------------- */

static float *random_rows(uint64_t *s, size_t rows, size_t cols)
{
    float *x = malloc(rows * cols * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < rows * cols; i++) {
        double scale = pow(10.0, (double)(rnd(s) % 12) - 6.0);
        x[i] = (float)(gauss(s) * scale);
    }
    x[0] = 0.0f;
    if (rows * cols > 2) {
        x[1] = -0.0f;
        x[2] = 3.4028235e38f;
    }
    return x;
}

/* Writes y with the writer of fmt into a memory stream. */
static char *write_mem(rowio_fmt fmt, const float *y, size_t rows, size_t cols, size_t *len,
                       size_t batch)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    assert_non_null(f);
    rowio_writer w;
    assert_int_equal(rowio_writer_begin(&w, f, fmt, rows, cols), 0);
    for (size_t r = 0; r < rows; r += batch) {
        size_t b = rows - r < batch ? rows - r : batch;
        rowio_out o = {.y = y + r * cols, .rows = b, .cols = cols, .groups = 1};
        assert_int_equal(rowio_writer_rows(&w, &o), 0);
    }
    assert_int_equal(rowio_writer_end(&w), 0);
    fclose(f);
    return buf;
}

static void test_rowio_roundtrip(void **state)
{
    (void)state;
    uint64_t s = g_seed ^ 2;
    const size_t shapes[][2] = {{1, 1}, {1, 768}, {7, 5}, {33, 100}, {200, 3}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        size_t rows = shapes[k][0], cols = shapes[k][1];
        float *x = random_rows(&s, rows, cols);
        rowio_fmt fmts[2] = {ROWIO_CSV, ROWIO_NPY};
        for (int f = 0; f < 2; f++) {
            size_t len;
            char *buf = write_mem(fmts[f], x, rows, cols, &len, 4);
            assert_int_equal(rowio_detect(buf, len), fmts[f]);
            rowio_mat m;
            char err[256];
            int rc = rowio_read(buf, len, fmts[f], &m, err, sizeof err);
            if (rc)
                fprintf(stderr, "%s: %s\n", rowio_fmt_name(fmts[f]), err);
            assert_int_equal(rc, 0);
            assert_int_equal(m.rows, rows);
            assert_int_equal(m.cols, cols);
            /* bit for bit: 9 significant digits read back to the same float32 */
            assert_memory_equal(m.data, x, rows * cols * sizeof(float));
            if (fmts[f] == ROWIO_NPY)
                assert_int_equal((len - rows * cols * 4) % 64, 0); /* aligned header */
            free(m.data);
            free(buf);
        }
        free(x);
    }
}

static void test_rowio_json(void **state)
{
    (void)state;
    uint64_t s = g_seed ^ 3;
    size_t rows = 9, cols = 13, G = 1;
    float *x = random_rows(&s, rows, cols);
    /* JSON-lines reader: rows as arrays, blank lines, spaces, CRLF */
    char *text = NULL;
    size_t tlen;
    FILE *f = open_memstream(&text, &tlen);
    for (size_t r = 0; r < rows; r++) {
        fputs(r % 2 ? "  [ " : "[", f);
        for (size_t i = 0; i < cols; i++)
            fprintf(f, i ? " , %.9g" : "%.9g", (double)x[r * cols + i]);
        fputs(r % 3 ? "]\n" : "]\r\n\n", f);
    }
    fclose(f);
    assert_int_equal(rowio_detect(text, tlen), ROWIO_JSON);
    rowio_mat m;
    char err[256];
    assert_int_equal(rowio_read(text, tlen, ROWIO_JSON, &m, err, sizeof err), 0);
    assert_int_equal(m.rows, rows);
    assert_int_equal(m.cols, cols);
    assert_memory_equal(m.data, x, rows * cols * sizeof(float));
    free(m.data);
    free(text);
    /* a whole matrix on one line */
    const char *nested = "[[1, 2.5, -3e-2], [4,5,6]]\n";
    assert_int_equal(rowio_read(nested, strlen(nested), ROWIO_JSON, &m, err, sizeof err), 0);
    assert_int_equal(m.rows, 2);
    assert_int_equal(m.cols, 3);
    assert_true(m.data[2] == -3e-2f && m.data[5] == 6.0f);
    free(m.data);

    /* the JSON-lines writer: one object per row that jansson reads back */
    float mean[9], rstd[9], radius[9];
    for (size_t r = 0; r < rows; r++) {
        mean[r] = (float)r;
        rstd[r] = 1.0f / (float)(r + 1);
        radius[r] = 0.5f;
    }
    char *buf = NULL;
    size_t len;
    f = open_memstream(&buf, &len);
    rowio_writer w;
    assert_int_equal(rowio_writer_begin(&w, f, ROWIO_JSON, rows, cols), 0);
    rowio_out o = {.y = x, .mean = mean, .rstd = rstd, .radius = radius, .rows = rows,
                   .cols = cols, .groups = G};
    assert_int_equal(rowio_writer_rows(&w, &o), 0);
    assert_int_equal(rowio_writer_end(&w), 0);
    fclose(f);
    char *line = buf;
    for (size_t r = 0; r < rows; r++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        json_error_t je;
        json_t *doc = json_loadb(line, (size_t)(nl - line), 0, &je);
        assert_non_null(doc);
        json_t *out = json_object_get(doc, "output");
        assert_int_equal(json_array_size(out), cols);
        for (size_t i = 0; i < cols; i++)
            assert_true((float)json_number_value(json_array_get(out, i)) == x[r * cols + i]);
        assert_true((float)json_number_value(json_array_get(json_object_get(doc, "rstd"), 0)) ==
                    rstd[r]);
        assert_true((float)json_number_value(json_object_get(doc, "radius")) == 0.5f);
        json_decref(doc);
        line = nl + 1;
    }
    assert_int_equal(*line, 0);
    free(buf);
    free(x);
}

static void expect_read_error(const char *text, size_t len, rowio_fmt fmt, const char *needle)
{
    rowio_mat m;
    char err[256] = "";
    assert_int_equal(rowio_read(text, len, fmt, &m, err, sizeof err), -1);
    if (!strstr(err, needle)) {
        fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, needle);
        fail();
    }
    assert_null(m.data);
}

/* A .npy file by hand: version, dtype and shape as given. */
static char *make_npy(int major, const char *descr, const char *shape, int fortran,
                      const void *data, size_t data_len, size_t *len)
{
    char h[256];
    int n = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
                     fortran ? "True" : "False", shape);
    size_t pre = major == 1 ? 10 : 12;
    size_t hlen = (size_t)n + 1;
    char *buf = malloc(pre + hlen + data_len);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (char)major;
    buf[7] = 0;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    if (major != 1)
        buf[10] = buf[11] = 0;
    memcpy(buf + pre, h, (size_t)n);
    buf[pre + (size_t)n] = '\n';
    memcpy(buf + pre + hlen, data, data_len);
    *len = pre + hlen + data_len;
    return buf;
}

static void test_rowio_npy_and_errors(void **state)
{
    (void)state;
    double d[6] = {1.0, 2.0, 0.1, -4.0, 1e-3, 6.0};
    size_t len;
    char *b = make_npy(2, "<f8", "(2, 3)", 0, d, sizeof d, &len);
    rowio_mat m;
    char err[256];
    assert_int_equal(rowio_detect(b, len), ROWIO_NPY);
    assert_int_equal(rowio_read(b, len, ROWIO_NPY, &m, err, sizeof err), 0);
    assert_int_equal(m.rows, 2);
    assert_int_equal(m.cols, 3);
    for (int i = 0; i < 6; i++)
        assert_true(m.data[i] == (float)d[i]);
    free(m.data);
    expect_read_error(b, len - 1, ROWIO_NPY, "data bytes");
    free(b);
    float f1[4] = {1, 2, 3, 4};
    b = make_npy(1, "<f4", "(4,)", 0, f1, sizeof f1, &len);
    assert_int_equal(rowio_read(b, len, ROWIO_NPY, &m, err, sizeof err), 0);
    assert_int_equal(m.rows, 1);
    assert_int_equal(m.cols, 4);
    free(m.data);
    free(b);
    b = make_npy(1, "<f4", "(2, 2)", 1, f1, sizeof f1, &len);
    expect_read_error(b, len, ROWIO_NPY, "Fortran");
    free(b);
    b = make_npy(1, "<i4", "(2, 2)", 0, f1, sizeof f1, &len);
    expect_read_error(b, len, ROWIO_NPY, "dtype");
    free(b);
    b = make_npy(1, "<f4", "(1, 2, 2)", 0, f1, sizeof f1, &len);
    expect_read_error(b, len, ROWIO_NPY, "3-D");
    free(b);
    float bad[2] = {1.0f, INFINITY};
    b = make_npy(1, "<f4", "(1, 2)", 0, bad, sizeof bad, &len);
    expect_read_error(b, len, ROWIO_NPY, "not finite");
    free(b);
    expect_read_error("\x93NUMPY\x01", 7, ROWIO_NPY, "magic");

    const char *t;
    t = "1,2,3\n4,5\n";
    expect_read_error(t, strlen(t), ROWIO_CSV, "line 2: 2 values, but the first row has 3");
    t = "1,2,x\n";
    expect_read_error(t, strlen(t), ROWIO_CSV, "line 1, column 3");
    t = "1,,3\n";
    expect_read_error(t, strlen(t), ROWIO_CSV, "column 2");
    t = "1,nan\n";
    expect_read_error(t, strlen(t), ROWIO_CSV, "finite");
    t = "# comment only\n\n";
    expect_read_error(t, strlen(t), ROWIO_CSV, "no rows");
    t = "[1,2]\n[1,2,3]\n";
    expect_read_error(t, strlen(t), ROWIO_JSON, "line 2");
    t = "[1,2\n";
    expect_read_error(t, strlen(t), ROWIO_JSON, "expected ',' or ']'");
    t = "[1,2] x\n";
    expect_read_error(t, strlen(t), ROWIO_JSON, "junk");
    t = "[]\n";
    expect_read_error(t, strlen(t), ROWIO_JSON, "empty row");
    t = "{\"a\":1}\n";
    expect_read_error(t, strlen(t), ROWIO_JSON, "expected a JSON array");
    /* CSV comments, spaces, CRLF and a last line without newline */
    t = "# x\r\n 1 , 2\r\n3,4";
    assert_int_equal(rowio_detect(t, strlen(t)), ROWIO_CSV);
    assert_int_equal(rowio_read(t, strlen(t), ROWIO_CSV, &m, err, sizeof err), 0);
    assert_int_equal(m.rows, 2);
    assert_true(m.data[3] == 4.0f);
    free(m.data);
    rowio_fmt fm;
    assert_int_equal(rowio_fmt_parse("jsonl", &fm), 0);
    assert_int_equal(fm, ROWIO_JSON);
    assert_int_equal(rowio_fmt_parse("xml", &fm), -1);
}

/* ---- httpc -------------------------------------------------------------- */

/* Feeds msg to a fresh parser in pieces of `step` bytes (0: all at once)
 * and returns the final result; buf gets a copy that the parser works on. */
static long feed(const char *msg, size_t len, size_t step, httpc_resp *r, char *buf)
{
    httpc_resp_init(r);
    long rc = 0;
    if (step == 0)
        step = len;
    for (size_t have = 0; have < len;) {
        size_t n = len - have < step ? len - have : step;
        memcpy(buf + have, msg + have, n);
        have += n;
        rc = httpc_parse(r, buf, have);
        if (rc != 0)
            return rc;
    }
    return rc;
}

static void test_httpc_content_length(void **state)
{
    (void)state;
    static const char msg[] = "HTTP/1.1 200 OK\r\nDate: x\r\ncontent-LENGTH:  5 \r\n"
                              "Content-Type: application/json\r\n\r\nhello";
    size_t len = sizeof msg - 1;
    char buf[512];
    httpc_resp r;
    for (size_t step = 0; step < 8; step++) {
        long rc = feed(msg, len, step, &r, buf);
        assert_int_equal(rc, (long)len);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.keep_alive, 1);
        assert_int_equal(r.body_len, 5);
        assert_memory_equal(buf + r.head_len, "hello", 5);
    }
    /* two responses back to back: the first ends where it should */
    char two[1024];
    memcpy(two, msg, len);
    memcpy(two + len, msg, len);
    httpc_resp_init(&r);
    assert_int_equal(httpc_parse(&r, two, 2 * len), (long)len);
    /* a head split right inside the blank line, then nothing more */
    httpc_resp_init(&r);
    assert_int_equal(httpc_parse(&r, buf, len - 5 - 2), 0);
    assert_int_equal(r.head_len, 0);
    /* Connection: close, HTTP/1.0, keep-alive on 1.0, 204 without a length */
    static const char c1[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: Close\r\n"
                             "Content-Length: 0\r\nRetry-After: 1\r\n\r\n";
    assert_int_equal(feed(c1, sizeof c1 - 1, 0, &r, buf), (long)(sizeof c1 - 1));
    assert_int_equal(r.status, 503);
    assert_int_equal(r.keep_alive, 0);
    static const char c2[] = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert_int_equal(feed(c2, sizeof c2 - 1, 3, &r, buf), (long)(sizeof c2 - 1));
    assert_int_equal(r.keep_alive, 0);
    assert_int_equal(r.minor, 0);
    static const char c3[] = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(feed(c3, sizeof c3 - 1, 0, &r, buf), (long)(sizeof c3 - 1));
    assert_int_equal(r.keep_alive, 1);
    static const char c4[] = "HTTP/1.1 204 No Content\r\n\r\n";
    assert_int_equal(feed(c4, sizeof c4 - 1, 0, &r, buf), (long)(sizeof c4 - 1));
    assert_int_equal(r.body_len, 0);
    /* a status line with no reason phrase */
    static const char c5[] = "HTTP/1.1 404\r\nContent-Length: 1\r\n\r\nx";
    assert_int_equal(feed(c5, sizeof c5 - 1, 0, &r, buf), (long)(sizeof c5 - 1));
    assert_int_equal(r.status, 404);
}

static void test_httpc_chunked(void **state)
{
    (void)state;
    static const char msg[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n"
                              "Content-Length: 999\r\n\r\n"
                              "5\r\nhello\r\n1;ext=1\r\n,\r\nA\r\n world!!!!\r\n0\r\n"
                              "X-Trailer: yes\r\n\r\n";
    size_t len = sizeof msg - 1;
    char buf[512];
    httpc_resp r;
    for (size_t step = 0; step < 12; step++) {
        long rc = feed(msg, len, step, &r, buf);
        assert_int_equal(rc, (long)len);
        assert_int_equal(r.chunked, 1);
        assert_int_equal(r.body_len, 16);
        assert_memory_equal(buf + r.head_len, "hello, world!!!!", 16);
    }
    /* an empty chunked body */
    static const char e[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_int_equal(feed(e, sizeof e - 1, 1, &r, buf), (long)(sizeof e - 1));
    assert_int_equal(r.body_len, 0);
    /* bad chunk framing */
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long rc = feed(bad[i], strlen(bad[i]), 0, &r, buf);
        if (rc != HTTPC_EMALFORMED) {
            fprintf(stderr, "bad chunked %zu: rc %ld\n", i, rc);
            fail();
        }
    }
}

static void test_httpc_eof_and_malformed(void **state)
{
    (void)state;
    char buf[HTTPC_HEAD_MAX + 1024];
    httpc_resp r;
    static const char eof[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it";
    size_t len = sizeof eof - 1;
    assert_int_equal(feed(eof, len, 0, &r, buf), 0);
    assert_int_equal(r.keep_alive, 0);
    assert_int_equal(httpc_parse_eof(&r, buf, len), (long)len);
    assert_int_equal(r.body_len, 9);
    /* cut short: a Content-Length body or a head that never ended */
    static const char cut[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    assert_int_equal(feed(cut, sizeof cut - 1, 0, &r, buf), 0);
    assert_int_equal(httpc_parse_eof(&r, buf, sizeof cut - 1), HTTPC_EMALFORMED);
    httpc_resp_init(&r);
    memcpy(buf, "HTTP/1.1 200", 12);
    assert_int_equal(httpc_parse_eof(&r, buf, 12), HTTPC_EMALFORMED);

    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTX/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n",
        "\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long rc = feed(bad[i], strlen(bad[i]), 0, &r, buf);
        if (rc != HTTPC_EMALFORMED) {
            fprintf(stderr, "malformed %zu parsed: rc %ld\n", i, rc);
            fail();
        }
    }
    /* headers that never end */
    size_t n = 0;
    n += (size_t)sprintf(buf, "HTTP/1.1 200 OK\r\n");
    while (n < HTTPC_HEAD_MAX + 100)
        n += (size_t)sprintf(buf + n, "X-Pad: aaaaaaaaaaaaaaaaaaaa\r\n");
    httpc_resp_init(&r);
    assert_int_equal(httpc_parse(&r, buf, n), HTTPC_ETOOBIG);
    /* the same amount, equal duplicates and a Content-Length of 0 are fine */
    static const char dup[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nz";
    assert_int_equal(feed(dup, sizeof dup - 1, 0, &r, buf), (long)(sizeof dup - 1));
}

/* Random garbage and random cuts of valid responses never crash the
 * parser nor make it claim more bytes than it was given. */
static void test_httpc_random(void **state)
{
    (void)state;
    uint64_t s = g_seed ^ 4;
    static const char base[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "4\r\nabcd\r\n0\r\n\r\n";
    char buf[256];
    for (int it = 0; it < 100000; it++) {
        size_t len = sizeof base - 1;
        memcpy(buf, base, len);
        int flips = (int)(rnd(&s) % 4);
        for (int k = 0; k < flips; k++)
            buf[rnd(&s) % len] = (char)rnd(&s);
        size_t cut = rnd(&s) % (len + 1);
        httpc_resp r;
        httpc_resp_init(&r);
        long rc = 0;
        for (size_t have = 0; have < cut && rc == 0;) {
            have += 1 + rnd(&s) % 8;
            if (have > cut)
                have = cut;
            rc = httpc_parse(&r, buf, have);
            assert_true(rc <= (long)have);
        }
    }
}

static void test_httpc_url_and_request(void **state)
{
    (void)state;
    httpc_url u;
    const char *why;
    assert_int_equal(httpc_url_parse(&u, "http://127.0.0.1:8000", &why), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "8000");
    assert_string_equal(u.prefix, "");
    assert_int_equal(httpc_url_parse(&u, "http://example.com/api/", &why), 0);
    assert_string_equal(u.port, "80");
    assert_string_equal(u.prefix, "/api");
    assert_int_equal(httpc_url_parse(&u, "http://[::1]:9/", &why), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.hostport, "[::1]:9");
    assert_int_equal(httpc_url_parse(&u, "https://x", &why), -EINVAL);
    assert_int_equal(httpc_url_parse(&u, "http://", &why), -EINVAL);
    assert_int_equal(httpc_url_parse(&u, "http://x:99999", &why), -EINVAL);
    assert_int_equal(httpc_url_parse(&u, "http://x:", &why), -EINVAL);
    assert_int_equal(httpc_url_parse(&u, "http://[::1", &why), -EINVAL);
    assert_int_equal(httpc_url_parse(&u, "127.0.0.1:8000", &why), -EINVAL);

    assert_int_equal(httpc_url_parse(&u, "http://h:1/p", &why), 0);
    size_t len;
    char *req = httpc_format_request(&u, "POST", "/v2/x", "k3y", NULL, "application/json", "{}", 2,
                                     &len);
    assert_non_null(req);
    static const char want[] = "POST /p/v2/x HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer k3y\r\n"
                               "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(req, want, len);
    free(req);
    req = httpc_format_request(&u, "GET", "/v2", NULL, NULL, NULL, NULL, 0, &len);
    assert_string_equal(req, "GET /p/v2 HTTP/1.1\r\nHost: h:1\r\n\r\n");
    free(req);
    /* extra header lines (the binary tensor extension's) go before the body's */
    req = httpc_format_request(&u, "POST", "/i", NULL, "Inference-Header-Content-Length: 2\r\n",
                               NULL, "{}xy", 4, &len);
    assert_string_equal(req, "POST /p/i HTTP/1.1\r\nHost: h:1\r\n"
                             "Inference-Header-Content-Length: 2\r\nContent-Length: 4\r\n\r\n{}xy");
    free(req);
    /* Header lines past the 2 KiB head (an over-long API key) are refused,
     * never written past it (ASan would catch the overflow this guards). */
    char key[3000];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = 0;
    assert_null(httpc_format_request(&u, "POST", "/v2/x", key, NULL, "application/json", "{}", 2,
                                     &len));
    key[1960] = 0; /* fits, but the lines after it do not */
    assert_null(httpc_format_request(&u, "POST", "/v2/x", key, "X-Extra: 1\r\n",
                                     "application/json", "{}", 2, &len));
    key[100] = 0;
    req = httpc_format_request(&u, "GET", "/v2", key, NULL, NULL, NULL, 0, &len);
    assert_non_null(req);
    assert_int_equal(len, strlen(req));
    free(req);
}

static void test_httpc_infer_header_len(void **state)
{
    (void)state;
    char ok[] = "HTTP/1.1 200 OK\r\ninference-header-content-length: 2\r\n"
                "Content-Length: 6\r\n\r\n{}abcd";
    httpc_resp r;
    httpc_resp_init(&r);
    assert_int_equal(r.infer_header_len, UINT64_MAX);
    assert_int_equal(httpc_parse(&r, ok, sizeof ok - 1), (long)(sizeof ok - 1));
    assert_int_equal(r.infer_header_len, 2);
    char bad[] = "HTTP/1.1 200 OK\r\nInference-Header-Content-Length: x\r\n"
                 "Content-Length: 0\r\n\r\n";
    httpc_resp_init(&r);
    assert_int_equal(httpc_parse(&r, bad, sizeof bad - 1), HTTPC_EMALFORMED);
}

int main(void)
{
    const char *env = getenv("LNSERVE_TEST_SEED");
    g_seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) % 100000;
    printf("test_lnctl: seed %llu (LNSERVE_TEST_SEED)\n", (unsigned long long)g_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets),
        cmocka_unit_test(test_hist_percentiles),
        cmocka_unit_test(test_hist_merge_empty),
        cmocka_unit_test(test_rowio_roundtrip),
        cmocka_unit_test(test_rowio_json),
        cmocka_unit_test(test_rowio_npy_and_errors),
        cmocka_unit_test(test_httpc_content_length),
        cmocka_unit_test(test_httpc_chunked),
        cmocka_unit_test(test_httpc_eof_and_malformed),
        cmocka_unit_test(test_httpc_random),
        cmocka_unit_test(test_httpc_url_and_request),
        cmocka_unit_test(test_httpc_infer_header_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
