/*
 * half.h -- FP16 (IEEE 754 binary16) and BF16 (bfloat16) <-> float32, in
 * portable C: no F16C, no _Float16, no compiler flags, so every x86-64 (and
 * anything else) runs the same bits.
 *
 * Widening (fp16/bf16 -> float32) is exact for every one of the 2^16
 * patterns: +-0, subnormals, normals, +-inf; a NaN stays a NaN with its
 * sign and its payload in the top mantissa bits.
 * Narrowing (float32 -> fp16/bf16) rounds once, to nearest, ties to even,
 * as IEEE 754 does with an unbounded exponent: a magnitude at or past the
 * midpoint above the largest finite value (65520 for FP16, 0x1.ffp127 for
 * BF16's 0x1.fep127) becomes +-inf; a NaN becomes a quiet NaN of the same
 * sign. tests/test_proto.c checks all 2^16 patterns of each and compares
 * the narrowing with an independent reference on random and edge values.
 *
 * Pure functions; any thread.
 */
#pragma once

#include <stdint.h>

/* Largest finite FP16, and the smallest float32 that narrows to inf. */
#define HALF_FP16_MAX 65504.0f
#define HALF_FP16_INF_FROM 65520.0f

float half_fp16_to_f32(uint16_t h);
uint16_t half_f32_to_fp16(float f);

float half_bf16_to_f32(uint16_t h);
uint16_t half_f32_to_bf16(float f);
