/*
 * modelfile.c -- gain and bias vectors from .npy and .safetensors files
 * (see modelfile.h for the contract).
 *
 * Both loaders first *locate* the vector: read and check the header, and
 * end with a vec_loc (dtype, byte order, count, file offset) whose every
 * byte is known to lie in the file. Only then are the values read, in
 * chunks into a stack buffer, converted and checked one by one into the
 * caller's array. Formats:
 *   NPY:         numpy/lib/format.py (NEP 1), format versions 1.0-3.0.
 *   safetensors: github.com/huggingface/safetensors, safetensors/src/tensor.rs
 *                (the header limit, the dtype sizes and the rule that the
 *                tensors tile the data are taken from its validate()).
 */
#include "modelfile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* numpy's np.load refuses headers over 10000 bytes by default
 * (max_header_size); a vector's header is ~128 bytes. 1 MiB leaves room for
 * any writer without letting a 4 GiB v2 length through. */
#define NPY_HEADER_MAX (1u << 20)
/* safetensors' own MAX_HEADER_SIZE. */
#define ST_HEADER_MAX 100000000u
/* Values are read this many bytes at a time. */
#define CHUNK_BYTES 16384
/* Dimensions kept for messages; a vector needs 2. */
#define SHAPE_MAX 8
/* Smallest magnitude that rounds to infinity in float32 (FLT_MAX plus half
 * an ulp), compared as a double before the conversion, which would
 * otherwise be undefined behaviour. */
#define F32_OVERFLOW 0x1.ffffffp127

typedef enum vec_dtype { DT_F16, DT_BF16, DT_F32, DT_F64 } vec_dtype;

static const size_t dtype_size[] = {[DT_F16] = 2, [DT_BF16] = 2, [DT_F32] = 4, [DT_F64] = 8};

typedef struct shape {
    uint64_t dims[SHAPE_MAX]; /* the first min(ndim, SHAPE_MAX) */
    size_t ndim;
    uint64_t numel; /* product of all dims */
} shape;

/* Where a located vector lies in its file and how to read it. */
typedef struct vec_loc {
    vec_dtype dt;
    int big_endian;
    uint64_t numel;
    uint64_t offset; /* of the first value in the file */
} vec_loc;

/* An open file and what its messages name. */
typedef struct src {
    int fd;
    uint64_t size;
    const char *path;
    const char *tensor; /* NULL for .npy */
    char *err;
} src;

/* Copies s into out (cap bytes) with control bytes as '?', so a name from
 * a file cannot put newlines or escapes into a log line. */
static const char *printable(const char *s, char *out, size_t cap)
{
    size_t n = 0;

    for (; *s && n + 1 < cap; s++)
        out[n++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    out[n] = '\0';
    return out;
}

static int ferr(const src *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes "FILE: [tensor NAME: ]reason" into s->err and returns -1. */
static int ferr(const src *s, const char *fmt, ...)
{
    char why[MODELFILE_ERR_MAX], path[201], name[101];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    printable(s->path, path, sizeof path);
    if (s->tensor)
        snprintf(s->err, MODELFILE_ERR_MAX, "%s: tensor %s: %.190s", path,
                 printable(s->tensor, name, sizeof name), why);
    else
        snprintf(s->err, MODELFILE_ERR_MAX, "%s: %.300s", path, why);
    return -1;
}

static int src_open(src *s, const char *path, const char *tensor, char *err)
{
    struct stat st;
    char buf[128];

    s->path = path;
    s->tensor = tensor;
    s->err = err;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is then
     * refused as not a regular file. */
    s->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (s->fd < 0)
        return ferr(s, "cannot open: %s (expected a readable file)",
                    strerror_r(errno, buf, sizeof buf));
    if (fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(s->fd);
        s->fd = -1;
        return ferr(s, "not a regular file (expected a .npy or .safetensors file)");
    }
    s->size = (uint64_t)st.st_size;
    return 0;
}

static void src_close(src *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* Reads exactly len bytes at off. The callers checked off + len against
 * the size fstat gave, so a short read means the file shrank meanwhile. */
static int read_at(const src *s, void *buf, size_t len, uint64_t off)
{
    char *p = buf, tmp[128];

    while (len > 0) {
        ssize_t n = pread(s->fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ferr(s, "read failed at byte %llu: %s", (unsigned long long)off,
                        strerror_r(errno, tmp, sizeof tmp));
        if (n == 0)
            return ferr(s,
                        "file ends at byte %llu (expected %zu more bytes: truncated while "
                        "being read?)",
                        (unsigned long long)off, len);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* ------------------------------------------------------------ values */

static uint16_t ld16(const unsigned char *b, int be)
{
    return be ? (uint16_t)(b[0] << 8 | b[1]) : (uint16_t)(b[1] << 8 | b[0]);
}

static uint32_t ld32(const unsigned char *b, int be)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++)
        v |= (uint32_t)b[be ? 3 - i : i] << (8 * i);
    return v;
}

static uint64_t ld64(const unsigned char *b, int be)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v |= (uint64_t)b[be ? 7 - i : i] << (8 * i);
    return v;
}

/* IEEE binary16 -> float32, exactly (every half is a float). Portable C:
 * no F16C, no _Float16. */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    float f;

    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact since mant < 2^11 */
        f = (float)mant * 0x1p-24f;
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13); /* inf or NaN */
    else
        bits = sign | ((exp + 112) << 23) | (mant << 13); /* rebias 15 -> 127 */
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* bfloat16 is the top half of a float32. */
static float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;

    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Reads, converts and checks the located vector into out[0..numel). */
static int load_values(const src *s, const vec_loc *v, float *out)
{
    unsigned char buf[CHUNK_BYTES];
    size_t isz = dtype_size[v->dt], per = sizeof buf / isz;

    for (uint64_t i = 0; i < v->numel; i += per) {
        size_t n = v->numel - i < per ? (size_t)(v->numel - i) : per;
        if (read_at(s, buf, n * isz, v->offset + i * isz) != 0)
            return -1;
        for (size_t j = 0; j < n; j++) {
            const unsigned char *b = buf + j * isz;
            uint32_t u32;
            uint64_t u64;
            double d;
            float f;
            switch (v->dt) {
            case DT_F16:
                f = f16_to_f32(ld16(b, v->big_endian));
                break;
            case DT_BF16:
                f = bf16_to_f32(ld16(b, v->big_endian));
                break;
            case DT_F32:
                u32 = ld32(b, v->big_endian);
                memcpy(&f, &u32, sizeof f);
                break;
            default:
                u64 = ld64(b, v->big_endian);
                memcpy(&d, &u64, sizeof d);
                if (isfinite(d) && !(fabs(d) < F32_OVERFLOW))
                    return ferr(s,
                                "value %g at index %llu overflows float32 (expected "
                                "|x| <= 3.4028235e38)",
                                d, (unsigned long long)(i + j));
                f = (float)d; /* round to nearest */
                break;
            }
            if (!isfinite(f))
                return ferr(s, "value at index %llu is %s (expected finite values)",
                            (unsigned long long)(i + j),
                            isnan(f) ? "NaN"
                            : f > 0  ? "+inf"
                                     : "-inf");
            out[i + j] = f;
        }
    }
    return 0;
}

/* "(1, 16)" for .npy (python: "(16,)"), "[1, 16]" for .safetensors. */
static const char *shape_str(const shape *sh, int npy, char *out, size_t cap)
{
    size_t n = 0;

    n += (size_t)snprintf(out, cap, "%c", npy ? '(' : '[');
    for (size_t i = 0; i < sh->ndim && n < cap; i++) {
        if (i == SHAPE_MAX) {
            n += (size_t)snprintf(out + n, cap - n, ", ...");
            break;
        }
        n += (size_t)snprintf(out + n, cap - n, "%s%llu", i ? ", " : "",
                              (unsigned long long)sh->dims[i]);
    }
    if (n < cap)
        snprintf(out + n, cap - n, "%s%c", npy && sh->ndim == 1 ? "," : "", npy ? ')' : ']');
    return out;
}

/* The vector length of a shape (N,) / [N] or (1, N) / [1, N], or 0. */
static uint64_t vector_len(const shape *sh)
{
    if (sh->ndim == 1)
        return sh->dims[0];
    if (sh->ndim == 2 && sh->dims[0] == 1)
        return sh->dims[1];
    return 0;
}

/* ------------------------------------------------------------ .npy */

/* A cursor over the header, a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (16,), }
 * Only what numpy writes is read: quoted strings without escapes, True and
 * False, tuples of decimal integers. */
typedef struct pylit {
    const char *p, *end;
} pylit;

static void py_ws(pylit *t)
{
    while (t->p < t->end && (*t->p == ' ' || *t->p == '\t' || *t->p == '\n' || *t->p == '\r'))
        t->p++;
}

static int py_eat(pylit *t, char c)
{
    py_ws(t);
    if (t->p < t->end && *t->p == c) {
        t->p++;
        return 1;
    }
    return 0;
}

/* A '...' or "..." string of printable ASCII, no escapes, into out. */
static int py_str(pylit *t, char *out, size_t cap)
{
    size_t n = 0;
    char q;

    py_ws(t);
    if (t->p >= t->end || (*t->p != '\'' && *t->p != '"'))
        return -1;
    q = *t->p++;
    for (; t->p < t->end && *t->p != q; t->p++) {
        unsigned char ch = (unsigned char)*t->p;
        if (ch == '\\' || ch < 0x20 || ch >= 0x7f || n + 1 >= cap)
            return -1;
        out[n++] = (char)ch;
    }
    if (t->p >= t->end)
        return -1;
    t->p++;
    out[n] = '\0';
    return 0;
}

static int py_word(pylit *t, const char *w)
{
    size_t n = strlen(w);

    py_ws(t);
    if ((size_t)(t->end - t->p) < n || memcmp(t->p, w, n) != 0)
        return 0;
    /* "Falsey" is not False */
    if ((size_t)(t->end - t->p) > n && (t->p[n] == '_' || (t->p[n] >= '0' && t->p[n] <= '9') ||
                                        ((t->p[n] | 0x20) >= 'a' && (t->p[n] | 0x20) <= 'z')))
        return 0;
    t->p += n;
    return 1;
}

/* A decimal integer without sign or leading zeros; Python 2's numpy wrote
 * longs with an L suffix ("(16L,)"), which is accepted. */
static int py_uint(pylit *t, uint64_t *v)
{
    const char *start;

    py_ws(t);
    start = t->p;
    *v = 0;
    while (t->p < t->end && *t->p >= '0' && *t->p <= '9') {
        if (*v > (UINT64_MAX - 9) / 10)
            return -1;
        *v = *v * 10 + (uint64_t)(*t->p - '0');
        t->p++;
    }
    if (t->p == start || (*start == '0' && t->p - start > 1))
        return -1;
    if (t->p < t->end && *t->p == 'L')
        t->p++;
    return 0;
}

/* A tuple of integers: (), (16,), (1, 16), (1, 16,). "(16)" is an int in
 * Python, not a tuple, and numpy refuses it too. */
static int py_shape(pylit *t, shape *sh)
{
    uint64_t d;

    memset(sh, 0, sizeof *sh);
    sh->numel = 1;
    if (!py_eat(t, '('))
        return -1;
    if (py_eat(t, ')'))
        return 0;
    for (;;) {
        if (py_uint(t, &d) != 0)
            return -1;
        if (sh->ndim < SHAPE_MAX)
            sh->dims[sh->ndim] = d;
        sh->ndim++;
        if (__builtin_mul_overflow(sh->numel, d, &sh->numel))
            return -1;
        if (py_eat(t, ')')) {
            if (sh->ndim == 1)
                return -1;
            return 0;
        }
        if (!py_eat(t, ','))
            return -1;
        if (py_eat(t, ')'))
            return 0;
    }
}

static int npy_header(const src *s, const char *h, size_t len, vec_loc *v, shape *sh)
{
    pylit t = {h, h + len};
    char key[32], descr[32], shp[96];
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    const char *want = "'{'";

    if (memchr(h, '\0', len))
        return ferr(s, "header holds a NUL byte (expected a Python dict literal)");
    if (!py_eat(&t, '{'))
        goto bad;
    while (!py_eat(&t, '}')) {
        want = "a quoted key of at most 31 characters";
        if (py_str(&t, key, sizeof key) != 0)
            goto bad;
        want = "':'";
        if (!py_eat(&t, ':'))
            goto bad;
        if (!strcmp(key, "descr") && !have_descr) {
            want = "a dtype string such as '<f4' for 'descr'";
            if (py_str(&t, descr, sizeof descr) != 0)
                goto bad;
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order") && !have_fortran) {
            /* Either order: a (N,) or (1, N) array has the same bytes in both. */
            want = "True or False for 'fortran_order'";
            if (!py_word(&t, "True") && !py_word(&t, "False"))
                goto bad;
            have_fortran = 1;
        } else if (!strcmp(key, "shape") && !have_shape) {
            want = "a tuple of integers such as (16,) for 'shape'";
            if (py_shape(&t, sh) != 0)
                goto bad;
            have_shape = 1;
        } else if (!strcmp(key, "descr") || !strcmp(key, "fortran_order") ||
                   !strcmp(key, "shape")) {
            return ferr(s, "header: key '%s' given twice (expected each key once)", key);
        } else {
            return ferr(s,
                        "header: unknown key '%s' (expected only 'descr', 'fortran_order' "
                        "and 'shape')",
                        key);
        }
        if (py_eat(&t, ','))
            continue;
        want = "',' or '}'";
        if (!py_eat(&t, '}'))
            goto bad;
        break;
    }
    py_ws(&t);
    want = "nothing but spaces after the closing '}'";
    if (t.p != t.end)
        goto bad;
    if (!have_descr || !have_fortran || !have_shape)
        return ferr(s, "header has no '%s' (expected 'descr', 'fortran_order' and 'shape')",
                    !have_descr     ? "descr"
                    : !have_fortran ? "fortran_order"
                                    : "shape");

    if (!strcmp(descr + (descr[0] ? 1 : 0), "f2"))
        v->dt = DT_F16;
    else if (!strcmp(descr + (descr[0] ? 1 : 0), "f4"))
        v->dt = DT_F32;
    else if (!strcmp(descr + (descr[0] ? 1 : 0), "f8"))
        v->dt = DT_F64;
    else
        return ferr(s,
                    "dtype '%s' is not supported (expected '<f4', '<f8' or '<f2', or '>' "
                    "for big-endian)",
                    descr);
    if (descr[0] != '<' && descr[0] != '>')
        return ferr(s, "dtype '%s' has no byte order (expected '<' or '>', as numpy writes)",
                    descr);
    v->big_endian = descr[0] == '>';
    v->numel = vector_len(sh);
    if (v->numel == 0)
        return ferr(s, "shape %s is not a non-empty vector (expected (N,) or (1, N), N > 0)",
                    shape_str(sh, 1, shp, sizeof shp));
    return 0;
bad:
    return ferr(s,
                "header is not a dict literal this loader reads: at byte %zu, expected %s "
                "(expected {'descr': '<f4', 'fortran_order': False, 'shape': (N,)})",
                (size_t)(t.p - h), want);
}

static int npy_locate(const src *s, vec_loc *v)
{
    unsigned char pre[12];
    uint64_t hlen, hstart, bytes, avail;
    char *hdr, shp[96];
    shape sh;
    int rc;

    if (s->size < 10)
        return ferr(s, "file is %llu bytes, too short for a .npy file (expected at least 10)",
                    (unsigned long long)s->size);
    if (read_at(s, pre, 10, 0) != 0)
        return -1;
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        return ferr(s, "bad magic (expected a .npy file, starting with \\x93NUMPY)");
    if (pre[6] < 1 || pre[6] > 3 || pre[7] != 0)
        return ferr(s, "format version %u.%u is not supported (expected 1.0, 2.0 or 3.0)", pre[6],
                    pre[7]);
    if (pre[6] == 1) {
        hlen = ld16(pre + 8, 0);
        hstart = 10;
    } else {
        if (s->size < 12)
            return ferr(s,
                        "file is %llu bytes, too short for a version %u.0 .npy file "
                        "(expected at least 12)",
                        (unsigned long long)s->size, pre[6]);
        if (read_at(s, pre, 12, 0) != 0)
            return -1;
        hlen = ld32(pre + 8, 0);
        hstart = 12;
    }
    if (hlen > s->size - hstart)
        return ferr(s,
                    "header length %llu goes beyond the file's %llu bytes (expected at most "
                    "%llu: truncated file?)",
                    (unsigned long long)hlen, (unsigned long long)s->size,
                    (unsigned long long)(s->size - hstart));
    if (hlen > NPY_HEADER_MAX)
        return ferr(s, "header length %llu is too large (expected at most %u)",
                    (unsigned long long)hlen, NPY_HEADER_MAX);
    hdr = malloc(hlen + 1);
    if (!hdr)
        return ferr(s, "out of memory for a %llu-byte header", (unsigned long long)hlen);
    rc = read_at(s, hdr, hlen, hstart);
    if (rc == 0)
        rc = npy_header(s, hdr, hlen, v, &sh);
    free(hdr);
    if (rc != 0)
        return -1;
    v->offset = hstart + hlen;
    /* numel <= 2^64 / 8 is not guaranteed by the header: check the product. */
    avail = s->size - v->offset;
    if (__builtin_mul_overflow(v->numel, (uint64_t)dtype_size[v->dt], &bytes) || bytes > avail)
        return ferr(s,
                    "data is %llu bytes, but shape %s needs %llu values of %zu bytes "
                    "(expected the whole array: truncated file?)",
                    (unsigned long long)avail, shape_str(&sh, 1, shp, sizeof shp),
                    (unsigned long long)v->numel, dtype_size[v->dt]);
    if (bytes < avail)
        return ferr(s,
                    "%llu bytes follow the array's %llu (expected the array to end the "
                    "file)",
                    (unsigned long long)(avail - bytes), (unsigned long long)bytes);
    return 0;
}

/* ------------------------------------------------------------ .safetensors */

/* Every dtype the safetensors library knows, with its size in bits, so
 * the whole file is checked, not only the tensor asked for. */
static const struct {
    const char *name;
    unsigned bits;
} st_dtypes[] = {
    {"BOOL", 8},    {"U8", 8},   {"I8", 8},   {"F8_E5M2", 8}, {"F8_E4M3", 8},
    {"F8_E8M0", 8}, {"I16", 16}, {"U16", 16}, {"F16", 16},    {"BF16", 16},
    {"I32", 32},    {"U32", 32}, {"F32", 32}, {"I64", 64},    {"U64", 64},
    {"F64", 64},    {"C64", 64}, {"F4", 4},   {"F6_E2M3", 6}, {"F6_E3M2", 6},
};

typedef struct st_entry {
    const char *name; /* points into the parsed header */
    uint64_t begin, end;
} st_entry;

static int st_entry_cmp(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;

    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* A JSON integer in 0..2^63-1, or -1. */
static int json_u64(const json_t *j, uint64_t *v)
{
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return -1;
    *v = (uint64_t)json_integer_value(j);
    return 0;
}

/*
 * Checks one header entry: its keys, dtype, shape and offsets within
 * data_len bytes, and for every dtype in st_dtypes that the offsets hold
 * exactly shape x size (a dtype this code does not know passes unsized).
 * The shape goes to *sh, the dtype string (owned by val) to *dtype;
 * err_name is name made printable, for messages.
 */
static int st_entry_parse(const src *s, const char *name, const json_t *val, uint64_t data_len,
                          st_entry *e, shape *sh, const char **dtype, char *err_name)
{
    const json_t *dt, *shp, *offs, *x;
    const char *k;
    unsigned bits = 0;
    uint64_t d, nbits;
    char shs[96];

    if (!json_is_object(val))
        return ferr(s,
                    "header: tensor \"%s\": not an object (expected {\"dtype\", \"shape\", "
                    "\"data_offsets\"})",
                    err_name);
    json_object_foreach((json_t *)val, k, x)
    {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return ferr(s,
                        "header: tensor \"%s\": unknown key \"%.32s\" (expected dtype, "
                        "shape and data_offsets)",
                        err_name, k);
    }
    dt = json_object_get(val, "dtype");
    shp = json_object_get(val, "shape");
    offs = json_object_get(val, "data_offsets");
    if (!json_is_string(dt))
        return ferr(s, "header: tensor \"%s\": dtype %s (expected a string such as \"F32\")",
                    err_name, dt ? "is not a string" : "is missing");
    *dtype = json_string_value(dt);
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (!strcmp(*dtype, st_dtypes[i].name))
            bits = st_dtypes[i].bits;
    if (!json_is_array(shp))
        return ferr(s, "header: tensor \"%s\": shape %s (expected an array of integers)", err_name,
                    shp ? "is not an array" : "is missing");
    memset(sh, 0, sizeof *sh);
    sh->numel = 1;
    for (size_t i = 0; i < json_array_size(shp); i++) {
        if (json_u64(json_array_get(shp, i), &d) != 0)
            return ferr(s,
                        "header: tensor \"%s\": shape[%zu] is not an integer >= 0 "
                        "(expected an array of sizes)",
                        err_name, i);
        if (i < SHAPE_MAX)
            sh->dims[i] = d;
        if (__builtin_mul_overflow(sh->numel, d, &sh->numel))
            return ferr(s,
                        "header: tensor \"%s\": shape overflows (expected a size that "
                        "fits the file)",
                        err_name);
    }
    sh->ndim = json_array_size(shp);
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        json_u64(json_array_get(offs, 0), &e->begin) != 0 ||
        json_u64(json_array_get(offs, 1), &e->end) != 0)
        return ferr(s,
                    "header: tensor \"%s\": data_offsets %s (expected [begin, end], two "
                    "integers >= 0)",
                    err_name, offs ? "is malformed" : "is missing");
    if (e->begin > e->end || e->end > data_len)
        return ferr(s,
                    "header: tensor \"%s\": data_offsets [%llu, %llu] lie outside the "
                    "data's %llu bytes (expected begin <= end <= %llu: truncated file?)",
                    err_name, (unsigned long long)e->begin, (unsigned long long)e->end,
                    (unsigned long long)data_len, (unsigned long long)data_len);
    if (bits) {
        if (__builtin_mul_overflow(sh->numel, (uint64_t)bits, &nbits) || nbits % 8 != 0 ||
            nbits / 8 != e->end - e->begin)
            return ferr(s,
                        "header: tensor \"%s\": data_offsets [%llu, %llu] hold %llu bytes, "
                        "but shape %s of %s needs %llu (expected them equal)",
                        err_name, (unsigned long long)e->begin, (unsigned long long)e->end,
                        (unsigned long long)(e->end - e->begin), shape_str(sh, 0, shs, sizeof shs),
                        *dtype, (unsigned long long)(nbits / 8));
    }
    e->name = name;
    return 0;
}

/* "a, b, c" (the first names that fit), for "tensor not found". */
static void st_names(const st_entry *e, size_t n, char *out, size_t cap)
{
    size_t len = 0;
    char name[64];

    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        printable(e[i].name, name, sizeof name);
        if (len + strlen(name) + 8 >= cap) {
            snprintf(out + len, cap - len, ", ...");
            return;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? ", " : "", name);
    }
}

static int st_locate(const src *s, vec_loc *v)
{
    unsigned char b8[8];
    uint64_t hlen, data_len;
    char *hdr = NULL, en[72], en2[72], names[200], shs[96];
    json_t *root = NULL;
    json_error_t je;
    st_entry *ents = NULL, want = {0};
    shape sh, want_sh = {0};
    const char *key, *dtype = "", *want_dtype = "";
    const json_t *val;
    uint64_t cursor = 0;
    size_t n = 0;
    int found = 0, rc = -1;

    if (s->size < 8)
        return ferr(s,
                    "file is %llu bytes, too short for a .safetensors file (expected at "
                    "least 8)",
                    (unsigned long long)s->size);
    if (read_at(s, b8, 8, 0) != 0)
        return -1;
    hlen = ld64(b8, 0);
    if (hlen > s->size - 8)
        return ferr(s,
                    "header length %llu goes beyond the file's %llu bytes (expected at most "
                    "%llu: truncated file, or not .safetensors?)",
                    (unsigned long long)hlen, (unsigned long long)s->size,
                    (unsigned long long)(s->size - 8));
    if (hlen > ST_HEADER_MAX)
        return ferr(s, "header length %llu is too large (expected at most %u)",
                    (unsigned long long)hlen, ST_HEADER_MAX);
    if (hlen < 2)
        return ferr(s, "header length %llu is too small (expected a JSON object)",
                    (unsigned long long)hlen);
    data_len = s->size - 8 - hlen;
    hdr = malloc(hlen);
    if (!hdr)
        return ferr(s, "out of memory for a %llu-byte header", (unsigned long long)hlen);
    if (read_at(s, hdr, hlen, 8) != 0)
        goto out;
    if (hdr[0] != '{') {
        ferr(s, "header does not start with '{' (expected a JSON object)");
        goto out;
    }
    root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        ferr(s, "header is not valid JSON: %.100s at byte %d (expected a JSON object)", je.text,
             je.position);
        goto out;
    }
    if (!json_is_object(root)) {
        ferr(s, "header is not a JSON object (expected {\"NAME\": {...}, ...})");
        goto out;
    }
    ents = calloc(json_object_size(root) + 1, sizeof *ents);
    if (!ents) {
        ferr(s, "out of memory for the header's %zu entries", json_object_size(root));
        goto out;
    }
    json_object_foreach(root, key, val)
    {
        printable(key, en, sizeof en);
        if (!strcmp(key, "__metadata__")) {
            const char *mk;
            const json_t *mv;
            if (!json_is_object(val)) {
                ferr(s, "header: __metadata__ is not an object (expected string keys and "
                        "values)");
                goto out;
            }
            json_object_foreach((json_t *)val, mk, mv)
            {
                if (!json_is_string(mv)) {
                    ferr(s,
                         "header: __metadata__.%s is not a string (expected string "
                         "values)",
                         printable(mk, en, sizeof en));
                    goto out;
                }
            }
            continue;
        }
        if (st_entry_parse(s, key, val, data_len, &ents[n], &sh, &dtype, en) != 0)
            goto out;
        if (s->tensor && !strcmp(key, s->tensor)) {
            found = 1;
            want = ents[n];
            want_sh = sh;
            want_dtype = dtype;
        }
        n++;
    }
    /* The tensors tile the data: sorted by offset, each starts where the
     * one before ends, and the last ends the file (safetensors' own rule,
     * so a file it would refuse is refused here too). */
    qsort(ents, n, sizeof *ents, st_entry_cmp);
    for (size_t i = 0; i <= n; i++) {
        uint64_t begin = i < n ? ents[i].begin : data_len;
        if (begin < cursor) {
            ferr(s,
                 "header: tensors \"%s\" and \"%s\" overlap (data_offsets [%llu, %llu] and "
                 "[%llu, %llu]; expected disjoint ranges)",
                 printable(ents[i - 1].name, en, sizeof en),
                 printable(ents[i].name, en2, sizeof en2), (unsigned long long)ents[i - 1].begin,
                 (unsigned long long)ents[i - 1].end, (unsigned long long)ents[i].begin,
                 (unsigned long long)ents[i].end);
            goto out;
        }
        if (begin > cursor) {
            ferr(s,
                 "header: data bytes %llu..%llu belong to no tensor (expected the tensors "
                 "to cover the data's %llu bytes without gaps)",
                 (unsigned long long)cursor, (unsigned long long)begin,
                 (unsigned long long)data_len);
            goto out;
        }
        if (i < n)
            cursor = ents[i].end;
    }
    if (!found) {
        st_names(ents, n, names, sizeof names);
        ferr(s, "not in the file (expected one of its %zu tensors: %s)", n, n ? names : "none");
        goto out;
    }
    if (strcmp(want_dtype, "F32") && strcmp(want_dtype, "F16") && strcmp(want_dtype, "BF16") &&
        strcmp(want_dtype, "F64")) {
        ferr(s, "dtype %s is not supported (expected F32, F16, BF16 or F64)",
             printable(want_dtype, en, sizeof en));
        goto out;
    }
    v->dt = !strcmp(want_dtype, "F32")    ? DT_F32
            : !strcmp(want_dtype, "F16")  ? DT_F16
            : !strcmp(want_dtype, "BF16") ? DT_BF16
                                          : DT_F64;
    v->big_endian = 0;
    v->numel = vector_len(&want_sh);
    if (v->numel == 0) {
        ferr(s, "shape %s is not a non-empty vector (expected [N] or [1, N], N > 0)",
             shape_str(&want_sh, 0, shs, sizeof shs));
        goto out;
    }
    v->offset = 8 + hlen + want.begin;
    rc = 0;
out:
    free(ents);
    json_decref(root);
    free(hdr);
    return rc;
}

/* ------------------------------------------------------------ the API */

typedef int (*locate_fn)(const src *s, vec_loc *v);

static int probe(const char *path, const char *tensor, locate_fn locate, size_t *len, char *err)
{
    src s;
    vec_loc v;
    int rc;

    if (src_open(&s, path, tensor, err) != 0)
        return -1;
    rc = locate(&s, &v);
    if (rc == 0 && v.numel > SIZE_MAX / sizeof(float))
        rc = ferr(&s, "%llu values are too many for memory (expected fewer)",
                  (unsigned long long)v.numel);
    if (rc == 0)
        *len = (size_t)v.numel;
    src_close(&s);
    return rc;
}

static int load(const char *path, const char *tensor, locate_fn locate, size_t expected_len,
                float *out, char *err)
{
    src s;
    vec_loc v;
    int rc;

    if (src_open(&s, path, tensor, err) != 0)
        return -1;
    rc = locate(&s, &v);
    if (rc == 0 && v.numel != expected_len)
        rc =
            ferr(&s, "holds %llu values (expected %zu)", (unsigned long long)v.numel, expected_len);
    if (rc == 0)
        rc = load_values(&s, &v, out);
    src_close(&s);
    return rc;
}

int modelfile_load_npy(const char *path, size_t expected_len, float *out, char *err)
{
    return load(path, NULL, npy_locate, expected_len, out, err);
}

int modelfile_load_safetensors(const char *path, const char *tensor_name, size_t expected_len,
                               float *out, char *err)
{
    return load(path, tensor_name ? tensor_name : "", st_locate, expected_len, out, err);
}

int modelfile_probe_npy(const char *path, size_t *len, char *err)
{
    return probe(path, NULL, npy_locate, len, err);
}

int modelfile_probe_safetensors(const char *path, const char *tensor_name, size_t *len, char *err)
{
    return probe(path, tensor_name ? tensor_name : "", st_locate, len, err);
}
