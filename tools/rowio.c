/* rowio.c -- see rowio.h. The .npy layout: numpy/lib/format.py. */
#include "rowio.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char NPY_MAGIC[6] = "\x93NUMPY";

int rowio_fmt_parse(const char *s, rowio_fmt *f)
{
    if (!strcmp(s, "json") || !strcmp(s, "jsonl"))
        *f = ROWIO_JSON;
    else if (!strcmp(s, "csv"))
        *f = ROWIO_CSV;
    else if (!strcmp(s, "npy"))
        *f = ROWIO_NPY;
    else
        return -1;
    return 0;
}

const char *rowio_fmt_name(rowio_fmt f)
{
    return f == ROWIO_JSON ? "json" : f == ROWIO_CSV ? "csv" : "npy";
}

rowio_fmt rowio_detect(const char *buf, size_t len)
{
    if (len >= sizeof NPY_MAGIC && !memcmp(buf, NPY_MAGIC, sizeof NPY_MAGIC))
        return ROWIO_NPY;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')
            continue;
        return buf[i] == '[' ? ROWIO_JSON : ROWIO_CSV;
    }
    return ROWIO_CSV;
}

/* A growable float array. */
typedef struct fvec {
    float *v;
    size_t n, cap;
} fvec;

static int fvec_push(fvec *a, float x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        float *nv = realloc(a->v, cap * sizeof *nv);
        if (!nv)
            return -1;
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* Reads a number at *p (not past end) into *out; strtof rounds the decimal
 * straight to float32. The text is copied out first: buf is not
 * NUL-terminated. */
static int read_num(const char **p, const char *end, float *out)
{
    char tmp[64];
    size_t n = 0;
    const char *q = *p;
    while (q < end && n < sizeof tmp - 1 &&
           (strchr("0123456789+-.eE", *q) || *q == 'n' || *q == 'a' || *q == 'i' ||
            *q == 'f' || *q == 'N' || *q == 'I' || *q == 'F'))
        tmp[n++] = *q++;
    tmp[n] = 0;
    if (n == 0)
        return -1;
    char *e;
    errno = 0;
    float v = strtof(tmp, &e);
    if (e != tmp + n || !isfinite(v))
        return -1;
    *out = v;
    *p = q;
    return 0;
}

/* Ends a row: checks its width against the first one. */
static int end_row(rowio_mat *m, size_t width, size_t line, char *err, size_t cap)
{
    if (width == 0) {
        snprintf(err, cap, "line %zu: an empty row", line);
        return -1;
    }
    if (m->rows == 0)
        m->cols = width;
    else if (width != m->cols) {
        snprintf(err, cap, "line %zu: %zu values, but the first row has %zu", line, width,
                 m->cols);
        return -1;
    }
    m->rows++;
    return 0;
}

static void skip_ws(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t' || **p == '\r'))
        (*p)++;
}

static int read_json(const char *buf, size_t len, rowio_mat *m, fvec *a, char *err, size_t cap)
{
    const char *p = buf, *end = buf + len;
    size_t line = 1;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        skip_ws(&p, le);
        if (p == le)
            goto next;
        if (*p != '[') {
            snprintf(err, cap, "line %zu: expected a JSON array", line);
            return -1;
        }
        p++;
        skip_ws(&p, le);
        int nested = p < le && *p == '[';
        for (;;) { /* one row per iteration */
            if (nested) {
                if (p >= le || *p != '[') {
                    snprintf(err, cap, "line %zu: expected '[' of a row", line);
                    return -1;
                }
                p++;
            }
            size_t width = 0;
            skip_ws(&p, le);
            if (p < le && *p == ']') {
                snprintf(err, cap, "line %zu: an empty row", line);
                return -1;
            }
            for (;;) {
                float v;
                skip_ws(&p, le);
                if (read_num(&p, le, &v)) {
                    snprintf(err, cap, "line %zu, value %zu: expected a finite number", line,
                             width + 1);
                    return -1;
                }
                if (fvec_push(a, v)) {
                    snprintf(err, cap, "out of memory");
                    return -1;
                }
                width++;
                skip_ws(&p, le);
                if (p < le && *p == ',') {
                    p++;
                    continue;
                }
                if (p < le && *p == ']') {
                    p++;
                    break;
                }
                snprintf(err, cap, "line %zu: expected ',' or ']' after value %zu", line, width);
                return -1;
            }
            if (end_row(m, width, line, err, cap))
                return -1;
            if (!nested)
                break;
            skip_ws(&p, le);
            if (p < le && *p == ',') {
                p++;
                skip_ws(&p, le);
                continue;
            }
            if (p < le && *p == ']') {
                p++;
                break;
            }
            snprintf(err, cap, "line %zu: expected ',' or ']' after a row", line);
            return -1;
        }
        skip_ws(&p, le);
        if (p != le) {
            snprintf(err, cap, "line %zu: junk after the array", line);
            return -1;
        }
    next:
        p = eol ? eol + 1 : end;
        line++;
    }
    return 0;
}

static int read_csv(const char *buf, size_t len, rowio_mat *m, fvec *a, char *err, size_t cap)
{
    const char *p = buf, *end = buf + len;
    size_t line = 1;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        skip_ws(&p, le);
        if (p == le || *p == '#')
            goto next;
        size_t width = 0;
        for (;;) {
            float v;
            skip_ws(&p, le);
            if (read_num(&p, le, &v)) {
                snprintf(err, cap, "line %zu, column %zu: expected a finite number", line,
                         width + 1);
                return -1;
            }
            if (fvec_push(a, v)) {
                snprintf(err, cap, "out of memory");
                return -1;
            }
            width++;
            skip_ws(&p, le);
            if (p == le)
                break;
            if (*p != ',') {
                snprintf(err, cap, "line %zu: expected ',' after column %zu", line, width);
                return -1;
            }
            p++;
        }
        if (end_row(m, width, line, err, cap))
            return -1;
    next:
        p = eol ? eol + 1 : end;
        line++;
    }
    return 0;
}

/* Finds 'key': in the header dict and returns what follows the colon. */
static const char *npy_key(const char *h, const char *key)
{
    const char *k = strstr(h, key);
    if (!k)
        return NULL;
    k = strchr(k + strlen(key), ':');
    if (!k)
        return NULL;
    k++;
    while (*k == ' ')
        k++;
    return k;
}

static int read_npy(const char *buf, size_t len, rowio_mat *m, char *err, size_t cap)
{
    if (len < 10 || memcmp(buf, NPY_MAGIC, 6)) {
        snprintf(err, cap, "npy: no \\x93NUMPY magic");
        return -1;
    }
    unsigned major = (unsigned char)buf[6];
    size_t hlen, hoff;
    if (major == 1) {
        hlen = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8;
        hoff = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) {
            snprintf(err, cap, "npy: truncated header");
            return -1;
        }
        hlen = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8 |
               (size_t)(unsigned char)buf[10] << 16 | (size_t)(unsigned char)buf[11] << 24;
        hoff = 12;
    } else {
        snprintf(err, cap, "npy: format version %u not supported", major);
        return -1;
    }
    if (hlen > len - hoff || hlen > 65536) {
        snprintf(err, cap, "npy: truncated header");
        return -1;
    }
    char h[65537];
    memcpy(h, buf + hoff, hlen);
    h[hlen] = 0;
    const char *d = npy_key(h, "'descr'");
    size_t esize;
    if (d && (!strncmp(d, "'<f4'", 5) || !strncmp(d, "'=f4'", 5)))
        esize = 4;
    else if (d && (!strncmp(d, "'<f8'", 5) || !strncmp(d, "'=f8'", 5)))
        esize = 8;
    else {
        snprintf(err, cap, "npy: dtype must be float32 or float64 little-endian ('<f4', '<f8')");
        return -1;
    }
    const char *fo = npy_key(h, "'fortran_order'");
    const char *sh = npy_key(h, "'shape'");
    if (!fo || !sh || *sh != '(') {
        snprintf(err, cap, "npy: header lacks fortran_order or shape");
        return -1;
    }
    size_t dims[3], nd = 0;
    const char *p = sh + 1;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == ')')
            break;
        if (*p < '0' || *p > '9' || nd == 3) {
            snprintf(err, cap, "npy: bad shape");
            return -1;
        }
        char *e;
        unsigned long long v = strtoull(p, &e, 10);
        if (v > (1ull << 40)) {
            snprintf(err, cap, "npy: shape too large");
            return -1;
        }
        dims[nd++] = (size_t)v;
        p = e;
    }
    if (nd == 1) {
        m->rows = 1;
        m->cols = dims[0];
    } else if (nd == 2) {
        m->rows = dims[0];
        m->cols = dims[1];
    } else {
        snprintf(err, cap, "npy: expected a 1-D or 2-D array, got %zu-D", nd);
        return -1;
    }
    if (!strncmp(fo, "True", 4) && m->rows > 1 && m->cols > 1) {
        snprintf(err, cap, "npy: Fortran order not supported (save with C order)");
        return -1;
    }
    if (m->rows == 0 || m->cols == 0) {
        snprintf(err, cap, "npy: empty array");
        return -1;
    }
    size_t count = m->rows * m->cols;
    size_t off = hoff + hlen;
    if (len - off < count * esize) {
        snprintf(err, cap, "npy: %zu data bytes, expected %zu", len - off, count * esize);
        return -1;
    }
    m->data = malloc(count * sizeof(float));
    if (!m->data) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        float v;
        if (esize == 4) {
            memcpy(&v, buf + off + 4 * i, 4);
        } else {
            double dv;
            memcpy(&dv, buf + off + 8 * i, 8);
            v = (float)dv;
        }
        if (!isfinite(v)) {
            snprintf(err, cap, "npy: row %zu, column %zu is not finite in float32",
                     i / m->cols + 1, i % m->cols + 1);
            free(m->data);
            m->data = NULL;
            return -1;
        }
        m->data[i] = v;
    }
    return 0;
}

int rowio_read(const char *buf, size_t len, rowio_fmt fmt, rowio_mat *m, char *err,
               size_t err_cap)
{
    memset(m, 0, sizeof *m);
    if (fmt == ROWIO_NPY)
        return read_npy(buf, len, m, err, err_cap);
    fvec a = {0};
    int rc = fmt == ROWIO_JSON ? read_json(buf, len, m, &a, err, err_cap)
                               : read_csv(buf, len, m, &a, err, err_cap);
    if (rc == 0 && m->rows == 0) {
        snprintf(err, err_cap, "no rows in the input");
        rc = -1;
    }
    if (rc) {
        free(a.v);
        memset(m, 0, sizeof *m);
        return -1;
    }
    m->data = a.v;
    return 0;
}

/* ---- writers ------------------------------------------------------------ */

int rowio_writer_begin(rowio_writer *w, FILE *f, rowio_fmt fmt, size_t rows_total, size_t cols)
{
    w->f = f;
    w->fmt = fmt;
    w->rows_total = rows_total;
    w->cols = cols;
    w->rows_done = 0;
    if (fmt != ROWIO_NPY)
        return 0;
    char h[256];
    int n = snprintf(h, sizeof h, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }",
                     rows_total, cols);
    /* pad with spaces so that magic + header ends on a 64-byte boundary */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    memset(h + n, ' ', pad);
    h[(size_t)n + pad] = '\n';
    size_t hlen = (size_t)n + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(h, 1, hlen, f) != hlen)
        return -1;
    return 0;
}

static void put_floats(FILE *f, const float *v, size_t n, const char *sep)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputs(sep, f);
        fprintf(f, "%.9g", (double)v[i]);
    }
}

int rowio_writer_rows(rowio_writer *w, const rowio_out *o)
{
    FILE *f = w->f;
    if (o->cols != w->cols)
        return -1;
    if (w->fmt == ROWIO_NPY) {
        size_t n = o->rows * o->cols;
        /* little-endian float32: the host's layout on x86-64 */
        if (fwrite(o->y, sizeof(float), n, f) != n)
            return -1;
    } else if (w->fmt == ROWIO_CSV) {
        for (size_t r = 0; r < o->rows; r++) {
            put_floats(f, o->y + r * o->cols, o->cols, ",");
            fputc('\n', f);
        }
    } else {
        for (size_t r = 0; r < o->rows; r++) {
            fputs("{\"output\":[", f);
            put_floats(f, o->y + r * o->cols, o->cols, ",");
            fputc(']', f);
            if (o->mean) {
                fputs(",\"mean\":[", f);
                put_floats(f, o->mean + r * o->groups, o->groups, ",");
                fputc(']', f);
            }
            if (o->rstd) {
                fputs(",\"rstd\":[", f);
                put_floats(f, o->rstd + r * o->groups, o->groups, ",");
                fputc(']', f);
            }
            if (o->radius)
                fprintf(f, ",\"radius\":%.9g", (double)o->radius[r]);
            fputs("}\n", f);
        }
    }
    w->rows_done += o->rows;
    return ferror(f) ? -1 : 0;
}

int rowio_writer_end(rowio_writer *w)
{
    if (fflush(w->f) || ferror(w->f))
        return -1;
    return w->rows_done == w->rows_total ? 0 : -1;
}
