/*
 * f32text.h -- float32 <-> JSON number text, exact and fast.
 *
 * A thin C interface to two proven C++ libraries: dragonbox prints the
 * shortest decimal that reads back to the same float32; the reader gives
 * the correctly rounded float32 of a decimal (round to nearest, ties to
 * even, never double rounding), by one exact double operation where that
 * provably rounds right and by fast_float otherwise (f32text.cc). Both run
 * at tens of millions of numbers per second per core, where jansson and
 * snprintf("%.9g") manage a few million (bench/bench_codec.c).
 *
 * Pure functions: no allocation, no locale, no state but a flag set once
 * (whether the CPU has AVX-512); safe from any thread. Implemented in
 * f32text.cc (C++17, no exceptions, no RTTI).
 */
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The longest text f32text_print returns: "-1.17549435e-38" (15). */
#define F32TEXT_LEN_MAX 15

/* Bytes f32text_print may write at dst: its fixed-size stores reach past
 * the text (at most 19 bytes in all); the caller writes over the rest. */
#define F32TEXT_MAX 32

/*
 * Writes finite v (the caller checks: JSON has no NaN or infinity) into dst
 * (at least F32TEXT_MAX bytes) as a JSON number and returns its length, at
 * most F32TEXT_LEN_MAX; no NUL is written, and bytes past the length may
 * have been written too. The digits are the shortest that parse back to v's exact
 * bits. The text always reads as a real, never an integer: "1.0", "-0.0",
 * "0.5", "1.5e-7", "3.4028235e38", so that parsers which keep JSON
 * integers apart (jansson, Python) keep the value a float and -0 keeps its
 * sign. Layout follows printf's %g: plain notation for 1e-4 <= |v| < 1e9,
 * exponent notation outside it.
 */
size_t f32text_print(char *dst, float v);

/*
 * Writes count finite values as f32text_print would, separated by ','
 * (no brackets, no spaces), into dst (at least count * (F32TEXT_LEN_MAX +
 * 1) + F32TEXT_MAX bytes) and returns the length; bytes past it may have
 * been written. The same bytes as f32text_print's, value by value; with
 * AVX-512 the digits are found 8 values at a time (Schubfach), in chunks of
 * up to 128, and the last count % 8 values one by one.
 */
size_t f32text_print_array(char *dst, const float *v, size_t count);

/* Which way f32text_print_array finds digits on this CPU: "avx512" or
 * "scalar" (tests say which one they checked). */
const char *f32text_print_array_path(void);

/*
 * Reads one JSON number (RFC 8259 grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?
 * ([eE][+-]?[0-9]+)?; no leading '+', no whitespace, no "inf"/"nan")
 * starting at p, not reading at or past end. On success stores the
 * correctly rounded float32 of the decimal in *out (+-inf if it rounds past
 * FLT_MAX; "-0" gives -0.0f) and returns the end of the number; the caller
 * decides what may follow it. Returns NULL, leaving *out alone, when p does
 * not start with a JSON number.
 */
const char *f32text_parse(const char *p, const char *end, float *out);

#ifdef __cplusplus
}
#endif
