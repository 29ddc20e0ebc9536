/*
 * rowio.h -- rows of float32 in and out of lnctl: JSON lines, CSV and .npy.
 *
 * Readers take a whole input in memory (lnctl reads stdin to the end first:
 * a .npy header needs the row count, and so does the writer's) and return
 * a dense row-major float32 matrix. Every row must have the same length.
 *
 *   json  one JSON array of numbers per line (blank lines skipped); a line
 *         may also hold an array of such arrays
 *   csv   one row per line, numbers separated by commas (spaces around them
 *         allowed); blank lines and lines starting with '#' skipped
 *   npy   NumPy format 1.0-3.0, dtype <f4 or <f8 (float64 is rounded to
 *         float32), 2-D [rows, cols] in C order, or 1-D = one row
 *
 * Writers stream batches of results: rowio_writer_begin (which writes the
 * .npy header for the total row count), rowio_writer_rows per batch,
 * rowio_writer_end. json writes one object per row
 * {"output":[...],"mean":[...],"rstd":[...],"radius":r} (the diagnostics
 * that are present); csv and npy write the output rows only. Numbers are
 * printed with 9 significant digits, which read back to the same float32.
 *
 * No globals; the writer is plain data owned by the caller.
 */
#pragma once

#include <stddef.h>
#include <stdio.h>

typedef enum rowio_fmt { ROWIO_JSON, ROWIO_CSV, ROWIO_NPY } rowio_fmt;

/* "json"/"jsonl", "csv", "npy" -> 0 and *f; else -1. */
int rowio_fmt_parse(const char *s, rowio_fmt *f);
const char *rowio_fmt_name(rowio_fmt f);

/* NPY by its magic, JSON when the first non-blank byte is '[', else CSV. */
rowio_fmt rowio_detect(const char *buf, size_t len);

typedef struct rowio_mat {
    float *data; /* [rows * cols], malloc'd; the caller frees */
    size_t rows, cols;
} rowio_mat;

/* Reads buf[0, len) as fmt into m. 0, or -1 with "line L: reason" (or the
 * .npy header problem) in err. */
int rowio_read(const char *buf, size_t len, rowio_fmt fmt, rowio_mat *m, char *err,
               size_t err_cap);

/* One batch of results; any diagnostic pointer may be NULL. */
typedef struct rowio_out {
    const float *y;      /* [rows * cols] */
    const float *mean;   /* [rows * groups] */
    const float *rstd;   /* [rows * groups] */
    const float *radius; /* [rows] */
    size_t rows, cols, groups;
} rowio_out;

typedef struct rowio_writer {
    FILE *f;
    rowio_fmt fmt;
    size_t rows_total, cols, rows_done;
} rowio_writer;

/* 0, or -1 when writing failed (errno set). */
int rowio_writer_begin(rowio_writer *w, FILE *f, rowio_fmt fmt, size_t rows_total, size_t cols);
int rowio_writer_rows(rowio_writer *w, const rowio_out *o);
/* -1 when fewer rows than announced were written or the stream failed. */
int rowio_writer_end(rowio_writer *w);
